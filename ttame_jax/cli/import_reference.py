"""``ttame import-reference``: a reference T-TAME ``.ckpt`` -> a workdir of this project.

::

    ttame import-reference resnet50_TTAME.ckpt --backbone resnet50 --workdir runs/ref_r50 \\
        --backbone-weights checkpoint

The workdir then works like one written by ``train.py``: ``ttame explain
--checkpoint runs/ref_r50 ...``, ``python evaluate.py --workdir runs/ref_r50 ...`` and
``ttame_jax.load("runs/ref_r50")``. See docs/reference_checkpoints.md.
"""

from __future__ import annotations

import argparse

from ttame_jax.core.adapter import VIT_ADAPTERS
from ttame_jax.interop.reference import BACKBONES, import_reference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt", help="the reference's PyTorch Lightning checkpoint (.ckpt)")
    parser.add_argument("--backbone", required=True, choices=BACKBONES, help="its backbone")
    parser.add_argument("--workdir", required=True, help="the workdir to write (new)")
    parser.add_argument(
        "--backbone-weights", default=None, metavar="checkpoint|PATH",
        help="'checkpoint': the backbone stored in the .ckpt (with the BatchNorm statistics "
             "the reference evaluated with); PATH: a torchvision weights file; default: "
             "torchvision's file in the torch hub cache, looked up at load time",
    )  # fmt: skip
    parser.add_argument(
        "--vit-adapter", default=None, choices=VIT_ADAPTERS,
        help="ViT token adapter; default: as the checkpoint's attention_version says "
             "(TTAME: class-token-product, else drop-class-token)",
    )  # fmt: skip


def run(args: argparse.Namespace, argv: list[str]) -> int:
    del argv  # recorded in the workdir's reference_import.json instead (source and sha256)
    workdir = import_reference(
        args.ckpt,
        args.backbone,
        args.workdir,
        backbone_weights=args.backbone_weights,
        vit_adapter=args.vit_adapter,
    )
    print(
        f"imported {args.ckpt} ({args.backbone}) into {workdir}; use it with "
        f"ttame explain --checkpoint {workdir} ... or ttame_jax.load({workdir!r})"
    )
    return 0
