"""Per-batch results on disk, so an interrupted evaluation resumes where it stopped.

Layout (one folder per method and key)::

    workdir/cache/<method>-<key hash>/key.json        what the results depend on
    workdir/cache/<method>-<key hash>/batch_00012.npz per-image arrays of batch 12

The key holds everything that changes a method's numbers: the method name and
options, the checkpoint step, the data split (config + size + a hash of the image
list), the batch size, the number of images and the metric settings. A changed
setting therefore lands in a new folder and never mixes with old batches. Each
``.npz`` is written to a temporary file and renamed, so a crash leaves either the
whole batch or nothing; a batch file that cannot be read is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from ttame_jax.fileio import atomic_write_bytes


def key_hash(key: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of ``key`` as canonical JSON."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class BatchCache:
    """Per-batch ``{name: np.ndarray}`` results of one method under one key.

    Args:
      root: the cache folder (``workdir/cache``).
      method: method name (readable prefix of the folder name).
      key: JSON-serialisable dict of everything the results depend on.
    """

    def __init__(self, root: str, method: str, key: Mapping[str, Any]):
        self.key = dict(key)
        self.folder = os.path.join(root, f"{method}-{key_hash(self.key)}")
        os.makedirs(self.folder, exist_ok=True)
        key_path = os.path.join(self.folder, "key.json")
        if not os.path.exists(key_path):
            text = json.dumps(self.key, sort_keys=True, indent=2, default=str)
            atomic_write_bytes(key_path, (text + "\n").encode())

    def path(self, index: int) -> str:
        return os.path.join(self.folder, f"batch_{index:05d}.npz")

    def load(self, index: int) -> dict[str, np.ndarray] | None:
        """The saved arrays of batch ``index``, or ``None`` if absent or unreadable."""
        path = self.path(index)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # e.g. a file cut short by a full disk: recompute the batch

    def has(self, index: int) -> bool:
        return self.load(index) is not None

    def save(self, index: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Saves batch ``index`` atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write_bytes(self.path(index), buffer.getvalue())
