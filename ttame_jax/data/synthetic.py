"""The synthetic ground-truth benchmark as a data source.

Images are generated (see :mod:`ttame_jax.data.synthetic_scene`): clutter on a
textured background and one target object whose fill pattern is the class,
so every image comes with the exact pixels of its class evidence. A share of
the *test* images hold two targets of different classes, for counterfactual
explanations (the map for class A should cover object A, not object B).

Example ``i`` of a split is rendered from ``numpy.random.default_rng((seed,
split_code, i))``: it does not depend on the split size or the batch order, and
the three splits never share a random stream.

Batches are dicts of NumPy arrays::

    image     float32 (B, S, S, 3) in [0, 1]
    label     int32   (B,)          class of the (first) target
    index     int64   (B,)          example index in the split
    evidence  bool    (B, S, S)     pixels of the (first) target
    label2    int32   (B,)          class of the second target, -1 if none
    evidence2 bool    (B, S, S)     pixels of the second target, all False if none
"""

from __future__ import annotations

import functools

import numpy as np

from ttame_jax.data import synthetic_scene as scene_lib

CLASS_NAMES = scene_lib.CLASS_NAMES
NUM_CLASSES = scene_lib.NUM_CLASSES
# Per-channel mean / std of generated images. Every colour distribution is
# symmetric about 0.5, so the mean is 0.5; the std was measured on 2000 training
# images at 64 px (green spreads more: the colour pairs must differ in luma).
# tests/test_synthetic_data.py re-measures both. The synthetic backbones
# normalise with these rather than ImageNet's.
MEAN = (0.5, 0.5, 0.5)
STD = (0.216, 0.227, 0.216)
SPLITS = ("train", "val", "test")


class SyntheticSource:
    """One split of the synthetic benchmark (a :class:`~ttame_jax.data.source.DataSource`).

    Attributes:
      num_classes: 8.
      class_names: ``"<pattern> <shape>"``, e.g. ``"checker triangle"``.
      skipped: always 0 (nothing is read from disk).
    """

    num_classes = NUM_CLASSES
    class_names = CLASS_NAMES
    skipped = 0

    def __init__(
        self,
        split: str,
        *,
        size: int,
        num_examples: int,
        seed: int = 0,
        two_object_fraction: float = 0.0,
        num_clutter: tuple[int, int] = (2, 5),
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if num_examples < 1:
            raise ValueError(f"the {split} split needs at least one image, got {num_examples}")
        if not 0.0 <= two_object_fraction <= 1.0:
            raise ValueError(f"two_object_fraction must be in [0, 1], got {two_object_fraction}")
        if not 0 <= num_clutter[0] <= num_clutter[1]:
            raise ValueError(f"need 0 <= min_clutter <= max_clutter, got {num_clutter}")
        self.split, self.size, self.seed = split, int(size), int(seed)
        self._n = int(num_examples)
        self._two = float(two_object_fraction)
        self._clutter = (int(num_clutter[0]), int(num_clutter[1]))
        self._code = SPLITS.index(split)

    def __len__(self) -> int:
        return self._n

    def scene(self, index: int) -> scene_lib.Scene:
        """The scene of example ``index`` (deterministic)."""
        if not 0 <= index < self._n:
            raise IndexError(
                f"index {index} out of range for the {self._n}-image {self.split} split"
            )
        rng = np.random.default_rng((self.seed, self._code, int(index)))
        if rng.uniform() < self._two:
            labels = tuple(int(c) for c in rng.choice(NUM_CLASSES, 2, replace=False))
        else:
            labels = (int(rng.integers(NUM_CLASSES)),)
        return scene_lib.sample_scene(rng, self.size, labels, num_clutter=self._clutter)

    def example(self, index: int, *, with_targets: bool = True) -> dict[str, np.ndarray]:
        """One unbatched example; ``with_targets=False`` renders it without its targets
        (same pixels elsewhere, so an image of no class; labels and masks still those
        of the removed targets)."""
        scene = self.scene(index)
        image, masks = scene_lib.render(scene, with_targets=with_targets)
        if not with_targets:
            masks = np.stack([scene_lib.shape_mask(t, self.size) for t in scene.targets])
        labels = scene.labels
        two = len(labels) == 2
        return {
            "image": image,
            "label": np.int32(labels[0]),
            "index": np.int64(index),
            "evidence": masks[0],
            "label2": np.int32(labels[1] if two else -1),
            "evidence2": masks[1] if two else np.zeros_like(masks[0]),
        }

    def describe(self, index: int) -> str:
        """``synthetic:<split>:<index>``: the scene is a pure function of it and the seed."""
        return f"synthetic:{self.split}:{index}"

    def arrays(self) -> dict[str, np.ndarray]:
        """The whole split as read-only arrays (images as uint8), rendered once per
        process: the benchmark's stages each open the same splits."""
        return _rendered(self.split, self.size, self._n, self.seed, self._two, self._clutter)

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int = 0,
        shuffle: bool = False,
        augment: bool = False,
        drop_remainder: bool = False,
        start: int = 0,
    ):
        """Yields batch dicts (see the module docstring), deterministic in (seed, epoch),
        from batch ``start`` on.

        ``augment`` flips each image (and its masks) left-right and/or up-down at
        random; no class changes under flips (the stripes stay horizontal or
        vertical, shapes are drawn at random angles).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        data = self.arrays()
        rng = np.random.default_rng((self.seed, self._code, int(epoch), 1))
        order = rng.permutation(self._n) if shuffle else np.arange(self._n)
        flips = rng.integers(0, 2, (self._n, 2)).astype(bool) if augment else None
        stop = self._n - self._n % batch_size if drop_remainder else self._n
        for first in range(start * batch_size, stop, batch_size):
            idx = order[first : first + batch_size]
            batch = {k: v[idx] for k, v in data.items()}
            if flips is not None:
                for axis in (0, 1):  # 0: up-down, 1: left-right
                    f = flips[first : first + len(idx), axis]
                    for k in ("image", "evidence", "evidence2"):
                        batch[k][f] = np.flip(batch[k][f], axis=axis + 1)
            batch["image"] = batch["image"].astype(np.float32) / 255.0
            yield batch


@functools.lru_cache(maxsize=4)  # the default train split is about 80 MB
def _rendered(split, size, n, seed, two, clutter) -> dict[str, np.ndarray]:
    source = SyntheticSource(
        split, size=size, num_examples=n, seed=seed, two_object_fraction=two, num_clutter=clutter
    )
    examples = [source.example(i) for i in range(n)]
    arrays = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    for value in arrays.values():
        value.setflags(write=False)
    return arrays


def build_source(data_cfg, split: str, *, input_size: int, seed: int) -> SyntheticSource:
    """Source of ``split`` for ``config.data`` (a :class:`ttame_jax.config.DataConfig`);
    two-object images are only put into the test split."""
    return SyntheticSource(
        split,
        size=input_size,
        num_examples=getattr(data_cfg, f"{split}_size"),
        seed=seed,
        two_object_fraction=data_cfg.two_object_fraction if split == "test" else 0.0,
        num_clutter=(data_cfg.min_clutter, data_cfg.max_clutter),
    )
