"""What the paper-recipe configs share: the ``smoke`` and ``1tap`` variants.

A config file returns only what differs from the schema's defaults
(:mod:`ttame_jax.config`, which holds the paper's recipe on ImageNet); no model code
is imported, so a config loads without JAX or Flax.
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("smoke", "1tap")


def parse_variants(arg: str | None, name: str) -> frozenset[str]:
    """The variants named after the colon in ``--config=NAME:v1,v2``.

    ``smoke`` shrinks the run to a CPU minute on generated data with random weights (and
    keeps the schema's evaluation defaults instead of :func:`paper_eval`);
    ``1tap`` keeps only the last of the backbone's default taps (the one-tap T-TAME
    variant, close to L-CAM-Img).
    """
    names = frozenset(v.strip() for v in (arg or "").split(",") if v.strip())
    unknown = sorted(names - set(VARIANTS))
    if unknown:
        raise ValueError(
            f"unknown config variant(s) {unknown} of {name}; use any of {VARIANTS}, "
            f"comma-separated (e.g. {name}:smoke or {name}:1tap,smoke)"
        )
    return names


def paper_eval(kind: str) -> dict:
    """The evaluation protocol that computed the paper's Tables 2-5 (the T-TAME reference
    code; docs/evaluation.md, "Protocol settings") where it differs from the schema's
    defaults: RISE weighs its masks by the raw target logit, and on the CNNs ROAD imputes
    T-TAME's images in [0, 1] pixel space (the baselines' and the ViT's in the normalised
    space, the default). AD/IC masks in pixel space for every backbone: the default. On
    the ViT, Grad-CAM, Grad-CAM++, Score-CAM and Ablation-CAM explain (and are scored on)
    timm's DeiT-B, ``deit_base_patch16_224``, as in the reference; T-TAME and RISE stay on
    torchvision's ViT-B/16.

    Args:
      kind: ``"cnn"`` or ``"vit"``.
    """
    out = {"rise_scores": "logits"}
    if kind == "cnn":
        out["road_space_ttame"] = "pixel"
    else:
        out["cam_backbone"] = "deit_base_patch16_224"
    return out


def paper_recipe(
    backbone: str, last_tap: str, arg: str | None, kind: str = "cnn"
) -> ml_collections.ConfigDict:
    """The paper's recipe on ImageNet for ``backbone`` with the variants of ``arg``.

    Args:
      backbone: registry name of the backbone.
      last_tap: the last of its default taps (what ``1tap`` keeps).
      arg: the variants, e.g. ``"smoke"`` or ``"1tap,smoke"``.
      kind: the backbone's kind, ``"cnn"`` or ``"vit"`` (its evaluation protocol,
        :func:`paper_eval`).
    """
    variants = parse_variants(arg, backbone)
    c = ml_collections.ConfigDict()
    c.backbone = {"name": backbone}
    if "1tap" in variants:
        c.model = {"taps": (last_tap,)}
    if "smoke" in variants:
        smoke(c)  # keeps the schema's evaluation defaults (what the smoke tests pin)
    else:
        c.eval = paper_eval(kind)
    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks ``c`` to a CPU run of about a minute: generated data, random weights."""
    c.backbone.weights = "random"
    # Rendered at the backbone's input size.
    c.data = {"name": "synthetic", "train_size": 8, "val_size": 2, "test_size": 2}
    c.train = {
        "batch_size": 2,
        "epochs": 2,
        "steps_per_epoch": 2,
        "log_every": 1,
        "checkpoint_every": 2,
        "val_steps": 1,
    }
    return c
