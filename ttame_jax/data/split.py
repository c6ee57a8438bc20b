"""Validation/test selection from the ImageNet validation set, and list files.

The paper trains on the ImageNet train set, selects the model on 2000 validation images and
reports on 2000 others. Without the authors' lists we draw both from the 50 000 images of
the ILSVRC2012 validation set with a fixed seed: a permutation ``P`` of the (sorted)
validation examples, ``val = P[:val_size]``, ``test = P[val_size:val_size + test_size]``,
the rest unused. Users with fixed lists pass list files instead (see ``read_list``).
"""

from __future__ import annotations

import os

import numpy as np

SPLITS = ("train", "val", "test")


def check_split(split: str) -> None:
    """Raises a clear ValueError unless ``split`` is one of ``SPLITS``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def holdout_indices(
    n: int,
    split: str,
    *,
    val_size: int = 2000,
    test_size: int = 2000,
    seed: int = 0,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Indices (sorted, int64) of the "val" or "test" part of ``n`` validation examples.

    Args:
      n: number of examples in the validation set, indexed 0..n-1 in a fixed order.
      split: "val" or "test".
      val_size: size of the validation part.
      test_size: size of the test part.
      seed: seed of the permutation (independent of the training seed).
      exclude: indices of the *other* part when the user fixed it with a list file; this
        part is then drawn from the remaining examples. None: draw both parts.

    Returns:
      int64 (val_size,) or (test_size,), ascending; the two parts are disjoint.
    """
    if split not in ("val", "test"):
        raise ValueError(f"holdout split must be 'val' or 'test', got {split!r}")
    if val_size < 0 or test_size < 0:
        raise ValueError(f"val_size/test_size must be >= 0, got {val_size}/{test_size}")
    pool = np.arange(n, dtype=np.int64)
    if exclude is not None:
        # The other part is fixed by the user (a list file): draw only this one, from the rest.
        pool = np.setdiff1d(pool, np.asarray(exclude, dtype=np.int64))
        sizes = (val_size, 0) if split == "val" else (0, test_size)
    else:
        sizes = (val_size, test_size)
    if sum(sizes) > len(pool):
        raise ValueError(
            f"cannot draw {sum(sizes)} disjoint val/test examples (val_size={val_size}, "
            f"test_size={test_size}) from {len(pool)} available validation images; lower "
            "data.val_size/data.test_size or use a larger validation set"
        )
    perm = pool[np.random.default_rng(seed).permutation(len(pool))]
    part = perm[: sizes[0]] if split == "val" else perm[sizes[0] : sum(sizes)]
    return np.sort(part)


def read_list(path: str | os.PathLike) -> list[tuple[str, str | None]]:
    """Reads a list file: one relative path per line, optionally followed by a label.

    Lines are ``relative/path.JPEG`` or ``relative/path.JPEG <label>`` (label: an integer
    class index or a class name such as a WordNet id; whitespace or a comma separates it).
    Blank lines and lines starting with ``#`` are ignored.

    Returns:
      [(relative_path, label_or_None), ...] in file order.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"list file {path!r} not found; give a text file with one relative image path "
            "per line (optionally followed by a label), or unset the list option"
        )
    entries = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.replace(",", " ").split()
            if len(parts) > 2:
                raise ValueError(
                    f"{path}:{lineno}: expected 'path' or 'path label', got {line!r} "
                    "(paths with spaces are not supported)"
                )
            entries.append((parts[0], parts[1] if len(parts) == 2 else None))
    if not entries:
        raise ValueError(f"list file {path!r} lists no images")
    return entries
