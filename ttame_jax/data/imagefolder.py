"""ImageNet kept as an image folder: ``root/<split dir>/<wnid>/*.JPEG``.

Class index = position of the class folder name in the sorted list of class folders of the
train directory (the torchvision ``ImageFolder`` convention, which for ImageNet equals the
usual 0..999 order); if there is no train directory, the split's own directory is used.
Files ending in .JPEG/.jpeg/.jpg/.png (any case) are images; anything else is ignored.
Instead of scanning, a list file may name the images (paths relative to the split
directory, optional label column; see ``split.read_list``).

"val" and "test" both come from the validation directory: a fixed, seeded, disjoint
selection (``split.holdout_indices``) unless list files give them.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ttame_jax.data import preprocess
from ttame_jax.data import split as split_lib
from ttame_jax.data.loader import ImageSource

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
_LAYOUT = "root/<train_dir or val_dir>/<wnid>/*.JPEG"


def find_classes(directory: str) -> tuple[str, ...]:
    """Sorted names of the (non-hidden) subfolders of ``directory``: the class names."""
    with os.scandir(directory) as entries:
        return tuple(sorted(e.name for e in entries if e.is_dir() and not e.name.startswith(".")))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def scan(directory: str, classes: tuple[str, ...]) -> list[tuple[str, int]]:
    """All images under ``directory/<class>/`` (recursively) as sorted (relpath, label)."""
    items = []
    for label, name in enumerate(classes):
        class_dir = os.path.join(directory, name)
        if not os.path.isdir(class_dir):
            continue  # A class absent from this split (e.g. a partial validation folder).
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
            dirnames.sort()
            for fname in sorted(filenames):
                if _is_image(fname):
                    rel = os.path.relpath(os.path.join(dirpath, fname), directory)
                    items.append((rel, label))
    items.sort()
    return items


def _label_of(rel: str, label: str | None, index: dict[str, int], where: str) -> int:
    """Label of a list entry: the given int or class name, else the path's class folder."""
    if label is None:
        first = rel.replace("\\", "/").split("/", 1)[0]
        return index.get(first, -1)  # -1: unknown (T-TAME never trains on labels).
    if label.lstrip("-").isdigit():
        return int(label)
    if label not in index:
        raise ValueError(
            f"{where}: label {label!r} of {rel!r} is neither an integer nor a class folder name "
            f"(known classes: {len(index)})"
        )
    return index[label]


def _find_bare_names(directory: str, classes: tuple[str, ...], rels: list[str]) -> list[str]:
    """Bare file names (no folder part) that are not in ``directory`` itself are looked up
    in its class folders, so lists of flat ILSVRC2012_val_*.JPEG names (the paper's
    Validation_2000.txt / Evaluation_2000.txt) also work on a folder sorted by class."""
    bare = (r for r in rels if os.sep not in r)
    missing = {r for r in bare if not os.path.exists(os.path.join(directory, r))}
    if not missing or not classes:
        return rels
    by_name = {os.path.basename(rel): rel for rel, _ in scan(directory, classes)}
    return [by_name.get(r, r) if r in missing else r for r in rels]


def from_list(
    list_path: str, classes: tuple[str, ...], directory: str | None = None
) -> list[tuple[str, int]]:
    """(relpath, label) entries of a list file, in file order (see ``split.read_list``).

    With ``directory``, bare file names are found in its class folders if need be.
    """
    entries = split_lib.read_list(list_path)
    rels = [os.path.normpath(rel) for rel, _ in entries]
    if directory is not None:
        rels = _find_bare_names(directory, classes, rels)
    index = {name: i for i, name in enumerate(classes)}
    items = [
        (rel, _label_of(rel, lab, index, list_path))
        for rel, (_, lab) in zip(rels, entries, strict=True)
    ]
    unknown = sum(1 for _, lab in items if lab < 0)
    if unknown:
        log.info("%s: %d entries without a known label get label -1", list_path, unknown)
    return items


def _require_dir(directory: str, split: str, field: str) -> None:
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"image folder {directory!r} for split {split!r} does not exist; expected the "
            f"layout {_LAYOUT}. Set data.root (and data.{field}) to where the images are."
        )


def select(
    root: str,
    split: str,
    *,
    train_dir: str = "train",
    val_dir: str = "val",
    train_list: str | None = None,
    val_list: str | None = None,
    test_list: str | None = None,
    val_size: int = 2000,
    test_size: int = 2000,
    split_seed: int = 0,
) -> tuple[str, list[tuple[str, int]], tuple[str, ...]]:
    """Resolves a split to (directory, [(relpath, label)], classes). See module docstring."""
    split_lib.check_split(split)
    if not root:
        raise ValueError(
            f"data.root is not set; point it at the folder that holds train/ and val/ ({_LAYOUT})"
        )
    field = "train_dir" if split == "train" else "val_dir"
    directory = os.path.join(root, train_dir if split == "train" else val_dir)
    _require_dir(directory, split, field)
    train_path = os.path.join(root, train_dir)
    classes = find_classes(train_path if os.path.isdir(train_path) else directory)

    own_list = {"train": train_list, "val": val_list, "test": test_list}[split]
    if own_list:
        return directory, from_list(own_list, classes, directory), classes
    if not classes:
        raise FileNotFoundError(
            f"no class folders in {directory!r}; expected {_LAYOUT} (ImageNet's flat "
            f"validation folder needs sorting into <wnid>/ folders, or give data.{split}_list "
            "with a label column)"
        )
    items = scan(directory, classes)
    if not items:
        raise FileNotFoundError(
            f"found {len(classes)} class folders in {directory!r} but no images with the "
            f"extensions {IMAGE_EXTENSIONS} (any case)"
        )
    if split == "train":
        return directory, items, classes

    other_list = test_list if split == "val" else val_list
    exclude = None
    if other_list:
        position = {rel: i for i, (rel, _) in enumerate(items)}
        fixed = [position.get(rel) for rel, _ in from_list(other_list, classes, directory)]
        exclude = np.asarray([i for i in fixed if i is not None], dtype=np.int64)
    keep = split_lib.holdout_indices(
        len(items), split, val_size=val_size, test_size=test_size, seed=split_seed, exclude=exclude
    )
    return directory, [items[i] for i in keep], classes


def build_source(
    root: str,
    split: str,
    *,
    input_size: int,
    seed: int,
    num_workers: int | None = None,
    prefetch: int = 2,
    jpeg_draft: bool = False,
    **select_kw,
) -> ImageSource:
    """An ``ImageSource`` over an image folder split; ``select_kw`` as in ``select``.

    ``num_workers`` decoding threads (None: all cores) decode ``prefetch`` batches ahead.
    ``jpeg_draft``: decode large JPEGs at a reduced scale (``preprocess.load_image``'s
    ``draft_short_side``); faster, not bit-identical to torchvision.
    """
    directory, items, classes = select(root, split, **select_kw)
    relpaths = [rel for rel, _ in items]  # Relative: about half the memory of full paths.
    labels = [lab for _, lab in items]

    def path(i: int) -> str:
        return os.path.join(directory, relpaths[i])

    draft = preprocess.resize_size(input_size) if jpeg_draft else None

    def read(i: int):
        return preprocess.load_image(path(i), draft), labels[i]

    num_classes = len(classes) if classes else max(max(labels) + 1, 0)
    log.info("data[%s]: %d images, %d classes from %s", split, len(items), num_classes, directory)
    return ImageSource(
        size=len(items),
        read=read,
        input_size=input_size,
        seed=seed,
        num_classes=num_classes,
        class_names=classes or None,
        describe=path,
        num_workers=num_workers,
        prefetch=prefetch,
        split=split,
    )
