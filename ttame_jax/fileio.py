"""Atomic file writes: the one rule every writer of run files follows.

A file is written to a temporary file in the same folder, flushed to disk, then renamed
over the target, so a reader (or a process killed mid-write) sees either the old file or
the new one, never a torn one. Used for configs, checkpoints' side files, logs that are
rewritten, evaluation caches and every report.
"""

from __future__ import annotations

import json
import os
import tempfile


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, value, *, sort_keys: bool = True) -> None:
    """``value`` as indented JSON (one trailing newline), written atomically."""
    text = json.dumps(value, indent=2, sort_keys=sort_keys) + "\n"
    atomic_write_bytes(path, text.encode())
