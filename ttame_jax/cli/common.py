"""Shared parts of the ``ttame explain`` / ``ttame sanity`` subcommands.

Input listing and loading (with the evaluation preprocessing of
:mod:`ttame_jax.data.preprocess`), output names, checkpoint loading, class names, the run
manifest and the output-folder policy:

- ttame never writes over a file it did not create: a target that exists and is not
  listed in the ``outputs`` of ``--out/manifest.json`` (written by ttame) is refused, as
  is a ``manifest.json`` that is not ttame's, with or without ``--overwrite``;
- a folder that holds a previous run's manifest is refused unless ``--overwrite`` is
  given; then only that run's outputs (those its manifest lists) are replaced;
- all of this, and that ``--out`` is writable, is checked before the checkpoint is loaded.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from ttame_jax.config import to_dict
from ttame_jax.data import preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MANIFEST = "manifest.json"
_PACKAGES = ("ttame-jax", "jax", "jaxlib", "flax", "orbax-checkpoint", "numpy", "pillow")


def add_run_arguments(parser, images_help: str) -> None:
    """The arguments every checkpoint-reading subcommand shares: images, run, output."""
    parser.add_argument("images", nargs="+", help=images_help)
    parser.add_argument("--checkpoint", required=True, help="workdir of a training run")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default latest)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="reuse an --out of a prior run")


def list_images(inputs: list[str], exclude: set[str] = frozenset()) -> list[str]:
    """Absolute paths: files as given, folders expanded (recursively, sorted) to their image
    files, leaving out the absolute paths in ``exclude`` (earlier outputs of ttame).

    Raises:
      FileNotFoundError: an input does not exist, or no image is found at all.
    """
    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(os.path.abspath(root), name)
                for root, _, names in os.walk(item)
                for name in names
                if name.lower().endswith(IMAGE_SUFFIXES)
            )
            files.extend(f for f in found if f not in exclude)
        elif os.path.exists(item):
            files.append(os.path.abspath(item))
        else:
            raise FileNotFoundError(f"no such image file or folder: {item!r}")
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {inputs}; pass image files or "
            f"folders holding them"
        )
    return list(dict.fromkeys(files))


def input_root(inputs: list[str]) -> str:
    """The deepest folder holding every input (a folder input itself, a file's folder)."""
    folders = [
        os.path.abspath(i) if os.path.isdir(i) else os.path.dirname(os.path.abspath(i))
        for i in inputs
    ]
    return os.path.commonpath(folders)


def output_names(inputs: list[str], files: list[str]) -> list[str]:
    """Each image's path relative to :func:`input_root`: its outputs' name under ``--out``.

    Distinct files have distinct relative paths, so the names are unique by construction
    (``a/cat.jpg``, ``b/cat.jpg``, ``cat.png``).
    """
    root = input_root(inputs)
    return [os.path.relpath(os.path.abspath(f), root) for f in files]


def _parents(path: str) -> list[str]:
    parents = []
    while (path := os.path.dirname(path)) not in ("", os.sep):
        parents.append(path)
    return parents


def check_layout(outputs: list[str]) -> None:
    """Refuses planned outputs (relative to ``--out``) where one is another's folder.

    Raises:
      ValueError: a path would be both a file and a folder, or an output is the manifest.
    """
    files = set(outputs)
    clash = sorted(files & {p for f in outputs for p in _parents(f)})
    if clash:
        raise ValueError(
            f"{clash[0]!r} would be both a file and a folder in --out (an input folder is "
            f"named like another input's output); rename it or explain the inputs separately"
        )
    if MANIFEST in files:
        raise ValueError(f"an output would be named {MANIFEST}, which holds the run record")


def load_input(path: str, input_size: int) -> np.ndarray:
    """Decodes any image (grey, RGBA, palette...) -> float32 ``(S, S, 3)`` in [0, 1].

    Resize of the short side and centre crop as in evaluation. Raises one of
    ``preprocess.DECODE_ERRORS`` for unreadable files (also for images beyond the size
    bounds of ``preprocess.check_size`` and for NaN or infinite pixel values).
    """
    image = preprocess.eval_transform(preprocess.load_image(path), input_size)
    check_finite(image)
    return image


def check_finite(image: np.ndarray) -> None:
    """Raises ``ValueError`` if a preprocessed image holds NaN or infinite pixel values."""
    bad = np.count_nonzero(~np.isfinite(image))
    if bad:
        raise ValueError(f"the preprocessed image has {bad} NaN or infinite pixel value(s)")


def _is_manifest(record) -> bool:
    return (
        isinstance(record, dict)
        and record.get("command") in ("explain", "sanity")
        and isinstance(record.get("checkpoint"), dict)
        and "argv" in record
    )


def read_owned(out: str) -> set[str] | None:
    """The files (relative to ``out``) that ttame wrote there, from ``out/manifest.json``.

    Returns None if ``out`` holds no manifest.

    Raises:
      FileExistsError: ``out/manifest.json`` exists but was not written by ttame.
    """
    path = os.path.join(out, MANIFEST)
    if not os.path.lexists(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = None
    if not _is_manifest(record):
        raise FileExistsError(
            f"{path} exists and is not a ttame manifest; ttame never replaces files it did "
            f"not write: choose another --out"
        )
    owned = {str(p) for p in record.get("outputs", ())}
    if "outputs" not in record:  # manifests written before they listed their outputs
        for image in record.get("images", ()):
            if isinstance(image, dict) and isinstance(image.get("files"), dict):
                owned.update(str(p) for p in image["files"].values())
        if record["command"] == "sanity":
            owned.update(("sanity.png", "sanity.json", "sanity.csv"))
    return {os.path.normpath(p) for p in owned}


def owned_paths(out: str, owned: set[str] | None) -> set[str]:
    """Absolute paths of ttame's files in ``out`` (its manifest and listed outputs)."""
    names = {MANIFEST, *(owned or ())}
    return {os.path.abspath(os.path.join(out, n)) for n in names}


def prepare_out(out: str, outputs: list[str], owned: set[str] | None, overwrite: bool):
    """Checks ``out`` before anything is loaded or written, then creates it.

    Args:
      out: the ``--out`` folder.
      outputs: every file the run may write, relative to ``out`` (not the manifest).
      owned: :func:`read_owned`'s answer for ``out``.
      overwrite: ``--overwrite``: replace outputs of an earlier run (never other files).

    Returns:
      the earlier outputs that stay (sorted; still listed as ttame's in the new manifest).

    Raises:
      FileExistsError: a previous run without ``overwrite``, or a file in the way that
        ttame did not write.
      ValueError: ``out`` is not a writable folder, or the outputs clash.
    """
    check_layout(outputs)
    if owned is not None and not overwrite:
        raise FileExistsError(
            f"{out!r} already holds a previous run ({MANIFEST}); choose another --out or pass "
            f"--overwrite to replace that run's outputs (files it did not write are kept)"
        )
    owned = owned or set()
    in_the_way = _in_the_way(out, outputs, owned)
    if in_the_way:
        more = f" (and {len(in_the_way) - 1} more)" if len(in_the_way) > 1 else ""
        raise FileExistsError(
            f"{os.path.join(out, in_the_way[0])}{more} exists and was not written by ttame "
            f"(not listed in {os.path.join(out, MANIFEST)}); ttame never replaces other files: "
            f"move it or choose another --out"
        )
    check_writable(out)
    planned = set(outputs)
    return sorted(p for p in owned if p not in planned and os.path.isfile(os.path.join(out, p)))


def _in_the_way(out: str, outputs: list[str], owned: set[str]) -> list[str]:
    """Existing paths that the outputs would replace and ttame did not write (sorted)."""

    def exists(p):
        return os.path.lexists(os.path.join(out, p))

    def is_dir(p):
        return os.path.isdir(os.path.join(out, p))

    files = {p for p in outputs if exists(p) and (p not in owned or is_dir(p))}
    folders = {q for p in outputs for q in _parents(p) if exists(q) and not is_dir(q)}
    return sorted(files | folders)


def check_writable(out: str) -> None:
    """Creates ``out`` and writes (and removes) a probe file in it.

    Raises:
      ValueError: ``out`` cannot be created or written to.
    """
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ttame-write-test-", dir=out)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"--out {out!r} cannot be used: not writable ({e.strerror or e}); choose a folder "
            f"you can write to"
        ) from e


def load_checkpoint(checkpoint: str, step: int | None):
    """``(explainer, config, workdir, step)`` of a training workdir (by default its newest
    step that restores; a damaged newer step is skipped with a warning).

    Raises:
      FileNotFoundError / ValueError (incl. ``rundir.CheckpointError``): with the reason.
    """
    from ttame_jax.core.explainer import load_run

    return load_run(checkpoint, step)


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, in torchvision's index order."""
    path = os.path.join(os.path.dirname(preprocess.__file__), "imagenet_classes.json")
    with open(path) as f:
        return tuple(json.load(f))


def class_names(spec) -> tuple[str, ...]:
    """Names of the backbone's classes: its own, ImageNet's for K = 1000, else ``class_i``."""
    if spec.class_names:
        return tuple(spec.class_names)
    if spec.num_classes == 1000:
        return imagenet_classes()
    return tuple(f"class_{i}" for i in range(spec.num_classes))


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def manifest(command: str, argv: list[str], config, workdir: str, step, **extra) -> dict:
    """The run record: versions, command line, training config, seed and checkpoint."""
    return {
        "command": command,
        "argv": list(argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in _PACKAGES}},
        "checkpoint": {"workdir": os.path.abspath(workdir), "step": step},
        "config": to_dict(config),
        "seed": config.train.seed,
        **extra,
    }


def write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def warn(message: str) -> None:
    print(f"ttame: {message}", file=sys.stderr)
