"""Data sources: ImageNet (image folder or TFDS) and the synthetic benchmark.

``build_source(data_cfg, split, input_size=S, seed=s)`` returns a
:class:`~ttame_jax.data.source.DataSource` whose ``batches(B, epoch=, shuffle=, augment=,
drop_remainder=, start=)`` yields {"image": float32 (B, S, S, 3) in [0, 1], "label": int32
(B,), "index": int64 (B,)}. ``data_cfg`` is the typed ``config.data``
(:class:`ttame_jax.config.DataConfig`: fields, defaults and checks; docs/data.md).
"""

from __future__ import annotations

from ttame_jax.config import DataConfig, raise_errors
from ttame_jax.data.source import DataSource
from ttame_jax.data.split import SPLITS


def build_source(data_cfg: DataConfig, split: str, *, input_size: int, seed: int) -> DataSource:
    """Builds the source of one split.

    Args:
      data_cfg: ``config.data``.
      split: "train", "val" or "test".
      input_size: S, the side of the square images the backbone takes.
      seed: shuffling/augmentation seed; (seed, epoch) fixes each epoch's batches.

    Raises:
      ValueError: a bad split name or data config (every problem listed).
      FileNotFoundError: the dataset is missing (the message says where it was looked for).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if not isinstance(data_cfg, DataConfig):
        raise TypeError(
            f"config.data must be a ttame_jax.config.DataConfig, got {type(data_cfg).__name__}"
        )
    raise_errors(data_cfg.errors())
    d = data_cfg
    if d.name == "synthetic":
        from ttame_jax.data import synthetic

        return synthetic.build_source(d, split, input_size=input_size, seed=seed)
    holdout = {"val_size": d.val_size, "test_size": d.test_size, "split_seed": d.split_seed}
    loading = {"num_workers": d.num_workers, "prefetch": d.prefetch, "jpeg_draft": d.jpeg_draft}
    if d.name == "imagefolder":
        from ttame_jax.data import imagefolder

        return imagefolder.build_source(
            d.root,
            split,
            input_size=input_size,
            seed=seed,
            **loading,
            train_dir=d.train_dir,
            val_dir=d.val_dir,
            train_list=d.train_list,
            val_list=d.val_list,
            test_list=d.test_list,
            **holdout,
        )
    from ttame_jax.data import tfds_source

    return tfds_source.build_source(
        split,
        input_size=input_size,
        seed=seed,
        name=d.tfds_name,
        data_dir=d.data_dir,
        **loading,
        decoder=d.tfds_decoder,
        **holdout,
    )


__all__ = ["DataSource", "build_source"]
