"""The data-source interface every split implements (ImageNet folders, TFDS, synthetic).

A source is a fixed, indexed set of examples of one split with deterministic batching:
the order of an epoch is a pure function of ``(seed, epoch)``, so a step number alone
fixes the data position (resume) and ``start=k`` skips ``k`` batches without decoding
them. Batches are dicts of NumPy arrays with at least ``image`` float32 ``(B, S, S, 3)``
in [0, 1], ``label`` int32 ``(B,)`` and ``index`` int64 ``(B,)`` (the example's index in
the split); the synthetic source adds its evidence masks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class DataSource(Protocol):
    """One split of a dataset, read in deterministic batches.

    Attributes:
      num_classes: number of classes (labels lie in [0, num_classes)).
      class_names: class names in label order, or None.
      skipped: distinct examples found unreadable so far (skipped from the stream).
    """

    num_classes: int
    class_names: tuple[str, ...] | None
    skipped: int

    def __len__(self) -> int:
        """Number of examples in the split."""
        ...

    def describe(self, index: int) -> str:
        """A name of example ``index`` for logs and fingerprints (e.g. its file path)."""
        ...

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int = 0,
        shuffle: bool = False,
        augment: bool = False,
        drop_remainder: bool = False,
        start: int = 0,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Batches of one pass (epoch), from batch ``start`` on.

        Args:
          batch_size: examples per batch (the last one may be smaller unless
            ``drop_remainder``).
          epoch: with ``shuffle``/``augment``, ``(seed, epoch)`` fixes order and augmentation.
          shuffle: a seeded permutation of the split instead of index order.
          augment: training augmentation (random crop + flip for photos, flips for synthetic).
          drop_remainder: drop a last, smaller batch.
          start: skip this many batches first, without reading them.
        """
        ...
