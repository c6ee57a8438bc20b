"""ImageNet from TensorFlow Datasets (``imagenet2012``), read without TensorFlow.

Loader stack: ``tfds.data_source`` (random access to a dataset prepared in the array_record
file format; it needs no TensorFlow at read time) with the image feature left encoded
(``tfds.decode.SkipDecoding``) -> our PIL decoder, preprocessing and thread pool
(``loader.ImageSource``): the same decoding, preprocessing, skip-and-count and determinism as the
image folder, whether or not OpenCV is installed (TFDS's own numpy decoder uses OpenCV when
it is importable and PIL otherwise; ``decoder="tfds"`` selects it, which
``tfds.testing.mock_data`` needs because it cannot make encoded fake images without
TensorFlow). Preparing ``imagenet2012`` from the
ILSVRC2012 tars needs TensorFlow once (``pip install tensorflow-cpu``), on any machine:

    tfds build imagenet2012 --data_dir=DATA_DIR --manual_dir=DIR_WITH_TARS \\
        --file_format=array_record

"train" is the TFDS train split; "val" and "test" are the fixed, seeded, disjoint 2000/2000
selection (``split.holdout_indices``) of the TFDS "validation" split (50 000 images).
"""

from __future__ import annotations

import logging

import numpy as np

from ttame_jax.data import preprocess
from ttame_jax.data import split as split_lib
from ttame_jax.data.loader import ImageSource

log = logging.getLogger(__name__)

_PREPARE = (
    "Put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from image-net.org) in a "
    "folder MANUAL_DIR and prepare the dataset once, with TensorFlow installed "
    "(pip install tensorflow-cpu):\n"
    "  tfds build {name} --data_dir={data_dir} --manual_dir=MANUAL_DIR "
    "--file_format=array_record\n"
    "then set data.data_dir={data_dir}. Or use name='imagefolder' with the unpacked images."
)


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "data.name='imagenet_tfds' needs tensorflow-datasets: pip install "
            "'tensorflow-datasets>=4.9' (TensorFlow itself is not needed to read)"
        ) from err
    return tfds


def open_split(name: str, tfds_split: str, data_dir: str | None, decoder: str = "pil"):
    """``tfds.data_source`` for one split, with a message saying what to do on failure.

    ``decoder="pil"`` leaves "image" as encoded bytes; ``"tfds"`` lets TFDS decode it.
    """
    if decoder not in ("pil", "tfds"):
        raise ValueError(f"data.tfds_decoder must be 'pil' or 'tfds', got {decoder!r}")
    tfds = _import_tfds()
    decoders = {"image": tfds.decode.SkipDecoding()} if decoder == "pil" else None
    try:
        return tfds.data_source(
            name, split=tfds_split, data_dir=data_dir, download=False, decoders=decoders
        )
    except Exception as err:  # TFDS raises several types; all mean "not usable here".
        builder = None
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception:
            pass
        where = builder.data_dir if builder is not None else (data_dir or "~/tensorflow_datasets")
        if builder is not None and builder.is_prepared():
            hint = (
                f"The dataset at {where} exists but cannot be read by index; it is probably "
                "in the tfrecord format. Rebuild it with --file_format=array_record (or "
                f"convert it: tfds convert_format --dataset_dir={where} "
                "--out_file_format=array_record, which needs TensorFlow)."
            )
        else:
            hint = f"TFDS dataset {name!r} was not found under {where}. " + _PREPARE.format(
                name=name, data_dir=data_dir or "DATA_DIR"
            )
        raise FileNotFoundError(f"{hint}\n(TFDS said: {type(err).__name__}: {err})") from err


def build_source(
    split: str,
    *,
    input_size: int,
    seed: int,
    name: str = "imagenet2012",
    data_dir: str | None = None,
    val_size: int = 2000,
    test_size: int = 2000,
    split_seed: int = 0,
    num_workers: int | None = None,
    prefetch: int = 2,
    decoder: str = "pil",
    jpeg_draft: bool = False,
) -> ImageSource:
    """An ``ImageSource`` over a TFDS image classification dataset (features "image", "label").

    Args:
      split: "train", "val" or "test" (see module docstring).
      input_size: S, side of the output images.
      seed: shuffling/augmentation seed.
      name: TFDS dataset name.
      data_dir: TFDS data dir (None: TFDS default, ``~/tensorflow_datasets``).
      val_size, test_size, split_seed: the validation/test selection.
      num_workers: decoding threads (None: all cores).
      prefetch: batches decoded ahead.
      decoder: "pil" (default: our decoder on the encoded bytes) or "tfds" (TFDS decodes).
      jpeg_draft: with the "pil" decoder, decode large JPEGs at a reduced scale
        (``preprocess.load_image``'s ``draft_short_side``); faster, not exact.
    """
    if jpeg_draft and decoder != "pil":
        raise ValueError(
            f"jpeg_draft needs our JPEG decoder: use decoder='pil' (data.tfds_decoder), not "
            f"{decoder!r}, or jpeg_draft=False"
        )
    split_lib.check_split(split)
    tfds_split = "train" if split == "train" else "validation"
    ds = open_split(name, tfds_split, data_dir, decoder)
    n = len(ds)
    if split == "train":
        keep = np.arange(n, dtype=np.int64)
    else:
        keep = split_lib.holdout_indices(
            n, split, val_size=val_size, test_size=test_size, seed=split_seed
        )
    label_feature = ds.dataset_info.features["label"]
    names = tuple(label_feature.names) if label_feature.names else None

    draft = preprocess.resize_size(input_size) if jpeg_draft else None

    def read(i: int):
        if decoder == "pil":
            example = ds[int(keep[i])]
            return preprocess.load_image(example["image"], draft), int(example["label"])
        try:  # TFDS/OpenCV signal corrupt data with assorted exception types.
            example = ds[int(keep[i])]
        except Exception as err:
            raise OSError(f"TFDS could not decode the record: {err}") from err
        return preprocess.from_array(example["image"]), int(example["label"])

    def describe(i: int) -> str:
        return f"{name}/{tfds_split}[{int(keep[i])}]"

    log.info("data[%s]: %d records of tfds %s", split, len(keep), name)
    return ImageSource(
        size=len(keep),
        read=read,
        input_size=input_size,
        seed=seed,
        num_classes=label_feature.num_classes,
        class_names=names,
        describe=describe,
        num_workers=num_workers,
        prefetch=prefetch,
        split=split,
    )
