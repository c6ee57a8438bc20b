"""ImageSource: deterministic, thread-pooled batching over an indexed image set.

An ``ImageSource`` wraps ``n`` examples that can be read by index (``read(i) -> (PIL image,
label)``) and yields batches of preprocessed images. The order of examples in an epoch is a
pure function of ``(seed, epoch)``; the random crop and flip of example ``i`` are a pure
function of ``(seed, epoch, i)``. Decoding runs in a thread pool (PIL releases the GIL while
decoding and resizing) with a bounded look-ahead of ``prefetch`` batches, and results are
consumed strictly in submission order, so thread timing never changes what comes out.

Images that fail to decode, or are too large or elongated to preprocess with bounded
memory (``preprocess.ImageSizeError``, checked before resizing), are dropped from the
stream (the next good image takes their place in the batch), counted in ``ImageSource.skipped``
and logged with the reason; a pass whose first 50 images (or all images of a smaller
source) fail raises at once, since that is a wrong path or format rather than a few bad
files.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ttame_jax.data import preprocess

log = logging.getLogger(__name__)

ReadFn = Callable[[int], tuple[Image.Image, int]]

_MAX_WARNINGS = 10  # Per source: individual log lines for the first few bad files.
_FAIL_FAST = 50  # A pass whose first this many images (or all of a smaller source) fail.


def default_num_workers() -> int:
    """Decoding threads when the config does not say: all cores, at most 32."""
    return max(1, min(32, os.cpu_count() or 1))


class ImageSource:
    """An indexed image set with deterministic batching (a ``DataSource``, data/source.py).

    Attributes:
      num_classes: number of classes (labels are in [0, num_classes), or -1 if unknown).
      class_names: tuple of class names (e.g. WordNet ids) in label order, or None.
      skipped: number of distinct examples found unreadable so far.
    """

    def __init__(
        self,
        *,
        size: int,
        read: ReadFn,
        input_size: int,
        seed: int,
        num_classes: int,
        class_names: tuple[str, ...] | None,
        describe: Callable[[int], str] = str,
        num_workers: int | None = None,
        prefetch: int = 2,
        split: str = "",
    ):
        """Creates an ImageSource.

        Args:
          size: number of examples; valid indices are 0..size-1.
          read: ``read(i) -> (PIL image, int label)``; raises a ``preprocess.DECODE_ERRORS``
            error for unreadable data. Must be thread-safe.
          input_size: S, the side of the square output images.
          seed: base seed of the shuffling and augmentation.
          num_classes: number of classes.
          class_names: class names in label order, or None.
          describe: ``describe(i) -> str`` naming example i in log lines (e.g. its path).
          num_workers: decoding threads (None: ``default_num_workers()``).
          prefetch: batches decoded ahead of the consumer.
          split: split name, for log lines.
        """
        if size <= 0:
            raise ValueError(f"a data source needs at least one example, got size={size}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        self._size = int(size)
        self._read = read
        self._describe = describe
        self.input_size = int(input_size)
        self.seed = int(seed)
        self.num_classes = int(num_classes)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.num_workers = int(num_workers) if num_workers else default_num_workers()
        self.prefetch = int(prefetch)
        self.split = split
        self._bad: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (
            f"ImageSource(split={self.split!r}, size={self._size}, num_classes={self.num_classes}, "
            f"input_size={self.input_size}, skipped={self.skipped})"
        )

    @property
    def skipped(self) -> int:
        """Number of distinct unreadable examples met so far (each counted once)."""
        with self._lock:
            return len(self._bad)

    def describe(self, index: int) -> str:
        """A human-readable name of example ``index`` (its path or record key)."""
        return self._describe(index)

    def order(self, epoch: int, shuffle: bool) -> np.ndarray:
        """The example indices of one pass, int64 (n,): a permutation seeded by (seed, epoch)."""
        if not shuffle:
            return np.arange(self._size, dtype=np.int64)
        rng = np.random.default_rng([self.seed, int(epoch), 0])
        return rng.permutation(self._size).astype(np.int64)

    def example(self, index: int, *, epoch: int = 0, augment: bool = False) -> np.ndarray:
        """Reads and preprocesses one example -> float32 (S, S, 3) in [0, 1].

        Raises:
          A ``preprocess.DECODE_ERRORS`` error if the image cannot be read.
        """
        return self._process(int(index), int(epoch), augment)[0]

    def _process(self, index: int, epoch: int, augment: bool) -> tuple[np.ndarray, int]:
        img, label = self._read(index)
        if augment:
            rng = np.random.default_rng([self.seed, epoch, 1, index])
            return preprocess.train_transform(img, self.input_size, rng), int(label)
        return preprocess.eval_transform(img, self.input_size), int(label)

    def _load(self, index: int, epoch: int, augment: bool):
        """Worker task: (image, label), or the decode error as a value (never raised)."""
        try:
            return self._process(index, epoch, augment)
        except preprocess.DECODE_ERRORS as err:
            return err

    def _note_bad(self, index: int, err: Exception) -> None:
        with self._lock:
            new = index not in self._bad
            self._bad.add(index)
            count = len(self._bad)
        if new and count <= _MAX_WARNINGS:
            log.warning(
                "data[%s]: skipping unreadable image %s (%s: %s)",
                self.split,
                self.describe(index),
                type(err).__name__,
                err,
            )

    def _stream(self, order: np.ndarray, epoch: int, augment: bool, lookahead: int):
        """Yields (index, image, label) in ``order``, skipping (and counting) bad images."""
        good, bad, first_error = 0, 0, None
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="ttame-data") as pool:
            work = lambda i: self._load(i, epoch, augment)
            indices = (int(i) for i in order)
            for index, out in _ordered_map(pool, work, indices, lookahead):
                if isinstance(out, BaseException):
                    bad += 1
                    first_error = first_error or out
                    self._note_bad(index, out)
                    if good == 0 and bad >= min(_FAIL_FAST, self._size):
                        raise RuntimeError(
                            f"data[{self.split}]: the first {bad} images of this pass could "
                            f"not be read (first error: {type(first_error).__name__}: "
                            f"{first_error}). Check that the dataset path points at image "
                            "files."
                        )
                    continue
                good += 1
                yield index, out[0], out[1]
        if bad:
            log.warning(
                "data[%s]: epoch %d: skipped %d unreadable image(s) (%d distinct in this "
                "source so far)",
                self.split,
                epoch,
                bad,
                self.skipped,
            )

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int = 0,
        shuffle: bool = False,
        augment: bool = False,
        drop_remainder: bool = False,
        start: int = 0,
        process_index: int = 0,
        process_count: int = 1,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Iterates over one pass (epoch) of the data in batches.

        Args:
          batch_size: B, examples per batch (per process when ``process_count > 1``).
          epoch: epoch number; with ``shuffle``/``augment`` it selects the permutation and
            the crops/flips, so (seed, epoch) fully determines the output.
          shuffle: permute the examples (else index order 0..n-1).
          augment: random crop + flip (train preprocessing) instead of centre crop.
          drop_remainder: drop a last, smaller batch.
          start: begin at batch ``start`` of the pass without decoding the earlier ones (for
            resuming mid-epoch); identical to skipping ``start`` batches unless unreadable
            images occurred before that point (each one shifts the later batches by one).
          process_index, process_count: multi-host loading. Global batch g is the examples
            at positions [g * B * P, (g + 1) * B * P) of the epoch order, and process p
            reads rows [p * B, (p + 1) * B) of it, so the P processes together load the
            same global batches as one process with batch B * P.

        Yields:
          dicts with "image" float32 (B, S, S, 3) in [0, 1], "label" int32 (B,) and
          "index" int64 (B,) (the example's index in this source).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= process_index < process_count:
            raise ValueError(
                f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
            )
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        order = self.order(epoch, shuffle)
        if process_count > 1:
            global_batch = batch_size * process_count
            if drop_remainder:
                order = order[: len(order) // global_batch * global_batch]
            row = np.arange(len(order)) % global_batch
            order = order[row // batch_size == process_index]
        order = order[start * batch_size :]
        lookahead = max(self.num_workers, self.prefetch * batch_size)
        images, labels, indices = [], [], []
        for index, image, label in self._stream(order, int(epoch), augment, lookahead):
            images.append(image)
            labels.append(label)
            indices.append(index)
            if len(images) == batch_size:
                yield _collate(images, labels, indices)
                images, labels, indices = [], [], []
        if images and not drop_remainder:
            yield _collate(images, labels, indices)


def _collate(images, labels, indices) -> dict[str, np.ndarray]:
    return {
        "image": np.stack(images).astype(np.float32, copy=False),
        "label": np.asarray(labels, dtype=np.int32),
        "index": np.asarray(indices, dtype=np.int64),
    }


def _ordered_map(pool: ThreadPoolExecutor, fn, items: Iterable, lookahead: int):
    """Yields (item, fn(item)) in the order of ``items``, with <= ``lookahead`` in flight.

    Results are taken in submission order, so the output never depends on which thread
    finishes first. Queued work is cancelled if the consumer stops early.
    """
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= lookahead:
                item0, fut = pending.popleft()
                yield item0, fut.result()
        while pending:
            item0, fut = pending.popleft()
            yield item0, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()
