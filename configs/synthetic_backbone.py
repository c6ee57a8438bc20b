"""Trains a synthetic benchmark's backbone from scratch (issue 6, item 2).

    python -m ttame_jax.training.classifier --config=configs/synthetic_backbone.py:cnn \
        --workdir=runs/synthetic

writes ``runs/synthetic/synthetic_cnn.msgpack`` (the backbone weights for
``config.backbone.weights``) and ``synthetic_cnn.json`` (test accuracy, timings).
Variants: ``cnn``, ``vit``, and ``cnn_smoke`` / ``vit_smoke`` (a few steps on tiny data).
"""

from __future__ import annotations

import ml_collections

from ttame_jax.data import synthetic

# Per backbone: (steps, peak learning rate). cnn: 97.9 % test accuracy at 250 steps
# (80 CPU-s for the whole run). vit (BatchNorm conv stem, 2 heads, mean-pooled patch
# tokens), 300 steps at lr 3e-3: 97.3 % with seed 0 but 42.3 % with seed 1 (not yet
# robust; about 200 CPU-s per run, over budget). The old 8 px-patch ViT reached 73 %.
_RECIPES = {"cnn": (250, 4e-3), "vit": (300, 3e-3)}


def get_config(arg: str = "cnn") -> ml_collections.ConfigDict:
    """``arg``: ``cnn`` | ``vit`` | ``cnn_smoke`` | ``vit_smoke``."""
    kind, _, variant = (arg or "cnn").partition("_")
    if kind not in _RECIPES or variant not in ("", "smoke"):
        raise ValueError(
            f"unknown variant {arg!r}; use cnn, vit, cnn_smoke or vit_smoke "
            "(e.g. --config=configs/synthetic_backbone.py:vit)"
        )
    steps, lr = _RECIPES[kind]
    c = ml_collections.ConfigDict()
    c.backbone = f"synthetic_{kind}"  # registry name of the backbone to train
    c.data = synthetic.default_config()  # generated images with ground-truth evidence
    c.steps = steps  # optimizer steps (AdamW, 10 % warm-up, cosine decay)
    c.batch_size = 64  # images per step
    c.lr = lr  # peak learning rate
    c.weight_decay = 0.05  # AdamW decoupled weight decay
    c.seed = 0  # seeds the init, the generated data and the shuffling
    if variant == "smoke":
        c.data.train_size, c.data.val_size, c.data.test_size = 64, 8, 32
        c.steps, c.batch_size = 4, 16
    c.lock()
    return c
