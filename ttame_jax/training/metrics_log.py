"""Training logs: a progress bar with throughput, stdout lines and ``metrics.jsonl``.

Every logged record is one JSON object per line in ``workdir/metrics.jsonl``,
e.g. ``{"split": "train", "step": 100, "loss": 2.1, "ce": ..., "lr": ...,
"grad_norm": ..., "images_per_s": ...}`` or ``{"split": "val", "step": ...,
"epoch": 1, "loss": ..., "AD": ..., "IC": ...}``. A resumed run first drops the
records after its restored step (:func:`drop_records_after`: the interrupted run's
lines that it redoes), then appends, so each step is logged once.

The same numbers also go to TensorBoard event files in ``workdir/tensorboard/`` (tags
``train/loss``, ``train/lr``, ..., ``val/loss``, ``val/AD``, ``val/IC``; step = the global
step) through ``tensorboardX`` when it is installed (``train.tensorboard``; without the
package: one warning, metrics.jsonl stays the source of truth). A resumed run opens a new
event file with ``purge_step`` = restored step + 1, so TensorBoard discards the
interrupted run's events after the restored step, as metrics.jsonl does.
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import math
import os
import struct
import time

import numpy as np

from ttame_jax.fileio import atomic_write_bytes
from ttame_jax.progress import progress_bar, write_line

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# Record fields that are not TensorBoard scalars.
_NOT_SCALARS = ("split", "step", "epoch")

log = logging.getLogger(__name__)
_warned_no_tensorboard = False


def _summary_writer(workdir: str, initial_step: int):
    """A tensorboardX ``SummaryWriter`` of ``workdir/tensorboard`` (``None`` and one
    warning per process if tensorboardX is not installed)."""
    global _warned_no_tensorboard
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        if not _warned_no_tensorboard:
            _warned_no_tensorboard = True
            log.warning(
                "tensorboardX is not installed: no TensorBoard event files (metrics.jsonl "
                "has every record; pip install tensorboardX, or set train.tensorboard=False)"
            )
        return None
    # purge_step: TensorBoard drops the events of steps >= it written before (the
    # interrupted run's steps after the restored one).
    purge = initial_step + 1 if initial_step > 0 else None
    # tensorboardX names a file by the second and the host and opens it "wb": a unique
    # suffix keeps two writers of the same second from overwriting each other.
    suffix = f".{os.getpid()}.{time.time_ns()}"
    logdir = os.path.join(workdir, TENSORBOARD_DIR)
    return SummaryWriter(logdir, purge_step=purge, filename_suffix=suffix)


def read_tensorboard(workdir: str) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the scalars in ``workdir/tensorboard``, as
    TensorBoard shows them: event files in order of writing, and a purge (a resumed
    run's ``SessionLog.START`` at step ``s``) drops the earlier events of steps ``>= s``.
    Needs tensorboardX (its protobufs); no TensorFlow."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    files = glob.glob(os.path.join(workdir, TENSORBOARD_DIR, "events.out.tfevents.*"))
    events = [[event_pb2.Event.FromString(data) for data in _tfrecords(f)] for f in files]
    events.sort(key=lambda file: file[0].wall_time if file else 0.0)  # order of writing
    for event in itertools.chain.from_iterable(events):
        if event.HasField("session_log") and event.session_log.status == 1:  # START
            for tag, points in scalars.items():
                scalars[tag] = [p for p in points if p[0] < event.step]
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def _tfrecords(path: str):
    """The payloads of a TFRecord file (length, crc, data, crc); a torn tail is skipped."""
    with open(path, "rb") as f:
        blob = f.read()
    pos = 0
    while pos + 12 <= len(blob):
        (length,) = struct.unpack("<Q", blob[pos : pos + 8])
        if pos + 12 + length + 4 > len(blob):
            break
        yield blob[pos + 12 : pos + 12 + length]
        pos += 12 + length + 4


def _plain(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def read_records(workdir: str) -> list[dict]:
    """The records of ``workdir/metrics.jsonl`` (``[]`` if none); a torn line (a kill
    mid-write) is skipped."""
    return [r for r in _parse(_lines(workdir)) if r is not None]


def drop_records_after(workdir: str, step: int, *, write: bool = True) -> list[dict]:
    """Keeps the records of steps ``<= step`` in ``metrics.jsonl`` (with ``write``, the
    file is rewritten atomically if anything is dropped); returns them."""
    lines = _lines(workdir)
    records = _parse(lines)
    kept = [r for r in records if r is not None and not _after(r, step)]
    if write and len(kept) < len(lines):
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write_bytes(os.path.join(workdir, METRICS_FILE), text.encode())
    return kept


def _lines(workdir: str) -> list[str]:
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.readlines()


def _parse(lines: list[str]) -> list[dict | None]:
    """Each line's record, ``None`` for a line that is not a JSON object."""
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        out.append(record if isinstance(record, dict) else None)
    return out


def _after(record: dict, step: int) -> bool:
    return isinstance(record.get("step"), int) and record["step"] > step


def format_record(record: dict) -> str:
    """One human-readable line: ``train step 100 | loss 2.1 | lr 4e-05 ...``."""
    parts = [f"{record.get('split', '')} step {record.get('step')}"]
    for key, value in record.items():
        if key in ("split", "step"):
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        else:
            parts.append(f"{key} {value}")
    return " | ".join(parts)


class MetricsLogger:
    """Writes records to ``metrics.jsonl`` and stdout, and drives a tqdm bar (if installed).

    Args:
      workdir: directory of ``metrics.jsonl``.
      total_steps: length of the progress bar.
      initial_step: where the bar starts (the resumed step).
      batch_size: global batch size, for images/s.
      progress: show the progress bar.
      enabled: write anything at all (``False`` on all hosts but the first).
      tensorboard: also write TensorBoard event files (if tensorboardX is installed).
    """

    def __init__(
        self,
        workdir: str,
        *,
        total_steps: int,
        initial_step: int = 0,
        batch_size: int,
        progress: bool = True,
        enabled: bool = True,
        tensorboard: bool = False,
    ):
        self._enabled = enabled
        self._file = None
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(os.path.join(workdir, METRICS_FILE), "a")  # noqa: SIM115
            if tensorboard:
                self._tb = _summary_writer(workdir, initial_step)
        self._batch_size = batch_size
        self._bar = progress_bar(
            total=total_steps,
            initial=initial_step,
            unit="step",
            disable=not (progress and enabled),
            dynamic_ncols=True,
        )
        self._last_time = time.perf_counter()
        self._last_step = initial_step
        self._rate_time, self._rate_step = self._last_time, initial_step

    def step(self, step: int) -> float:
        """Advances the bar to ``step``; returns images/s since the previous call (the
        host's pace: with steps dispatched ahead, :meth:`rate` is the device's)."""
        now = time.perf_counter()
        done = step - self._last_step
        rate = done * self._batch_size / max(now - self._last_time, 1e-9)
        self._bar.update(done)
        self._bar.set_postfix_str(f"{rate:.1f} img/s")
        self._last_time, self._last_step = now, step
        return rate

    def rate(self, step: int) -> float:
        """Images/s from the previous call (or the start) to ``step``; call it when the
        device has finished ``step`` (after its metrics were fetched), so that the time
        counts the device's work, not only the host's dispatch of the steps."""
        now = time.perf_counter()
        rate = (step - self._rate_step) * self._batch_size / max(now - self._rate_time, 1e-9)
        self._rate_time, self._rate_step = now, step
        return rate

    def write(self, record: dict, *, echo: bool = True) -> dict:
        """Appends ``record`` (values converted to plain floats) to the file and stdout."""
        plain = {k: _plain(v) for k, v in record.items()}
        # JSON has no NaN/inf; write them as strings so the file stays valid JSON.
        plain = {
            k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in plain.items()
        }
        if self._enabled:
            self._file.write(json.dumps(plain) + "\n")
            self._file.flush()
            if self._tb is not None and isinstance(plain.get("step"), int):
                split = plain.get("split", "")
                for key, value in plain.items():
                    if key not in _NOT_SCALARS and isinstance(value, int | float):
                        self._tb.add_scalar(f"{split}/{key}", value, plain["step"])
            if echo:
                write_line(format_record(plain))
        return plain

    def note(self, text: str) -> None:
        """Prints a free-form line (start-up, resume) to stdout without breaking the bar."""
        if self._enabled:
            write_line(text)

    def close(self) -> None:
        self._bar.close()
        if self._tb is not None:
            self._tb.close()  # flushes
            self._tb = None
        if self._file is not None:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
