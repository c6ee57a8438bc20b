"""Shared parts of the ``ttame explain`` / ``ttame sanity`` subcommands.

Input listing and loading (with the evaluation preprocessing of
:mod:`ttame_jax.data.preprocess`), checkpoint loading, class names, the run manifest and
the output-folder policy: a folder that holds a previous run's ``manifest.json`` is
refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import sys
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


def list_images(inputs: list[str]) -> list[str]:
    """Files as given, folders expanded (recursively, sorted) to their image files.

    Raises:
      FileNotFoundError: an input does not exist, or no image is found at all.
    """
    files = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(item)
                for name in names
                if name.lower().endswith(IMAGE_SUFFIXES)
            )
            files.extend(found)
        elif os.path.exists(item):
            files.append(item)
        else:
            raise FileNotFoundError(f"no such image file or folder: {item!r}")
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {inputs}; pass image files or "
            f"folders holding them"
        )
    return list(dict.fromkeys(files))


def output_stems(files: list[str]) -> list[str]:
    """Unique output names: the file stem, with ``-2``, ``-3``... for repeated stems."""
    seen: dict[str, int] = {}
    stems = []
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def load_input(path: str, input_size: int) -> np.ndarray:
    """Decodes any image (grey, RGBA, palette...) -> float32 ``(S, S, 3)`` in [0, 1].

    Resize of the short side and centre crop as in evaluation. Raises one of
    ``preprocess.DECODE_ERRORS`` for unreadable files.
    """
    return preprocess.eval_transform(preprocess.load_image(path), input_size)


def prepare_out(out: str, overwrite: bool) -> None:
    """Creates ``out``; refuses a folder holding a previous run unless ``overwrite``."""
    if os.path.exists(os.path.join(out, MANIFEST)) and not overwrite:
        raise FileExistsError(
            f"{out!r} already holds a previous run ({MANIFEST}); choose another --out or pass "
            f"--overwrite to replace its files"
        )
    os.makedirs(out, exist_ok=True)


def load_checkpoint(checkpoint: str, step: int | None):
    """``(explainer, config, workdir, step)`` of a training workdir (latest step by default)."""
    from ttame_jax import rundir
    from ttame_jax.core.explainer import load

    workdir = rundir.find(checkpoint)
    step = rundir.pick_step(workdir, step)
    return load(workdir, step), rundir.read_config(workdir), workdir, step


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
