"""Data sources: ImageNet (image folder or TFDS) and the synthetic benchmark.

``build_source(data_cfg, split, input_size=S, seed=s)`` returns a ``Source`` (see
``ttame_jax/data/loader.py`` and docs/data.md) whose ``batches(B, epoch=, shuffle=,
augment=, drop_remainder=)`` yields {"image": float32 (B, S, S, 3) in [0, 1],
"label": int32 (B,), "index": int64 (B,)}. The ``data_cfg`` fields read here and their
defaults are in ``DEFAULTS`` (documented in docs/data.md).
"""

from __future__ import annotations

from typing import Any

from ttame_jax.data.split import SPLITS

# Every data_cfg field this package reads and its default (an absent field takes it).
DEFAULTS: dict[str, Any] = {
    "name": "synthetic",  # "imagefolder" | "imagenet_tfds" | "synthetic".
    "root": None,  # imagefolder: folder holding train_dir and val_dir.
    "train_dir": "train",  # imagefolder: train images, root/train_dir/<wnid>/*.JPEG.
    "val_dir": "val",  # imagefolder: ImageNet validation images, root/val_dir/<wnid>/*.
    "train_list": None,  # imagefolder: list file of train images (relative to train_dir).
    "val_list": None,  # imagefolder: list file of the val split (relative to val_dir).
    "test_list": None,  # imagefolder: list file of the test split (relative to val_dir).
    "tfds_name": "imagenet2012",  # imagenet_tfds: TFDS dataset name.
    "data_dir": None,  # imagenet_tfds: TFDS data dir (None: ~/tensorflow_datasets).
    "tfds_decoder": "pil",  # imagenet_tfds: "pil" (our decoder) | "tfds" (TFDS decodes).
    "val_size": 2000,  # Size of the seeded val selection from the validation set.
    "test_size": 2000,  # Size of the seeded test selection (disjoint from val).
    "split_seed": 0,  # Seed of the val/test selection (not the shuffling seed).
    "num_workers": None,  # Decoding threads (None: all cores, at most 32).
    "prefetch": 2,  # Batches decoded ahead of the training loop.
}

NAMES = ("imagefolder", "imagenet_tfds", "synthetic")


def _field(data_cfg, key: str):
    """``data_cfg.key`` for a ConfigDict, dict or attribute object; DEFAULTS if absent."""
    if isinstance(data_cfg, dict) or hasattr(data_cfg, "get"):
        value = data_cfg.get(key, DEFAULTS[key])
    else:
        value = getattr(data_cfg, key, DEFAULTS[key])
    return DEFAULTS[key] if value is None else value


def check_config(data_cfg) -> None:
    """Rejects bad ``config.data`` values without touching the disk (call it at start-up).

    Raises:
      ValueError: naming the field, the bad value and what is allowed.
    """
    name = _field(data_cfg, "name")
    if name not in NAMES:
        raise ValueError(f"unknown data.name {name!r}; expected one of {NAMES}")
    if name == "synthetic":
        return  # The synthetic dataset checks its own fields.
    for key in ("val_size", "test_size", "split_seed"):
        value = _field(data_cfg, key)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"data.{key} must be an integer >= 0, got {value!r}")
    for key, lowest in (("num_workers", 1), ("prefetch", 1)):
        value = _field(data_cfg, key)
        if value is not None and (not isinstance(value, int) or value < lowest):
            raise ValueError(f"data.{key} must be an integer >= {lowest} (or None), got {value!r}")
    if name == "imagenet_tfds":
        lists = [k for k in ("train_list", "val_list", "test_list") if _field(data_cfg, k)]
        if lists:
            raise ValueError(
                f"data.{lists[0]} is only supported with data.name='imagefolder'; with TFDS the "
                "val/test splits are the seeded selection (data.val_size/test_size/split_seed)"
            )
        decoder = _field(data_cfg, "tfds_decoder")
        if decoder not in ("pil", "tfds"):
            raise ValueError(f"data.tfds_decoder must be 'pil' or 'tfds', got {decoder!r}")


def build_source(data_cfg, split: str, *, input_size: int, seed: int):
    """Builds the ``Source`` of one split.

    Args:
      data_cfg: the ``config.data`` ConfigDict (or a dict); fields in ``DEFAULTS``.
      split: "train", "val" or "test".
      input_size: S, the side of the square images the backbone takes.
      seed: shuffling/augmentation seed; (seed, epoch) fixes each epoch's batches.

    Returns:
      A Source (``__len__``, ``num_classes``, ``class_names``, ``skipped``, ``batches``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    check_config(data_cfg)
    name = _field(data_cfg, "name")
    if name == "synthetic":
        from ttame_jax.data import synthetic

        return synthetic.build_source(data_cfg, split, input_size=input_size, seed=seed)
    holdout = {k: _field(data_cfg, k) for k in ("val_size", "test_size", "split_seed")}
    loading = {k: _field(data_cfg, k) for k in ("num_workers", "prefetch")}
    if name == "imagefolder":
        from ttame_jax.data import imagefolder

        return imagefolder.build_source(
            _field(data_cfg, "root"),
            split,
            input_size=input_size,
            seed=seed,
            **loading,
            train_dir=_field(data_cfg, "train_dir"),
            val_dir=_field(data_cfg, "val_dir"),
            train_list=_field(data_cfg, "train_list"),
            val_list=_field(data_cfg, "val_list"),
            test_list=_field(data_cfg, "test_list"),
            **holdout,
        )
    if name == "imagenet_tfds":
        from ttame_jax.data import tfds_source

        return tfds_source.build_source(
            split,
            input_size=input_size,
            seed=seed,
            name=_field(data_cfg, "tfds_name"),
            data_dir=_field(data_cfg, "data_dir"),
            **loading,
            decoder=_field(data_cfg, "tfds_decoder"),
            **holdout,
        )
    raise AssertionError(f"unreachable: data.name {name!r} passed check_config")


__all__ = ["DEFAULTS", "NAMES", "build_source", "check_config"]
