"""T-TAME on a frozen torchvision ViT-B/16 (the paper's recipe, DESIGN §4).

Train on ImageNet (image folder root/<wnid>/*.JPEG; see docs/data.md for TFDS)::

    ttame train --config=vit --workdir=runs/vit --config.data.root=/data/imagenet

Quick CPU check on generated data with random weights (about a minute)::

    ttame train --config=vit:smoke --workdir=/tmp/vit_smoke

One-tap variant (≈ L-CAM-Img, paper Tables 2–5): ``--config=vit:1tap``.
Evaluation as the reference's ViT table: Grad-CAM, Grad-CAM++, Score-CAM and Ablation-CAM
explain (and are scored on) timm's DeiT-B, ``eval.cam_backbone="deit_base_patch16_224"``
(its weights: docs/evaluation.md); ``--config.eval.cam_backbone=None`` keeps them on ViT-B/16.
Default taps: encoder.layers.encoder_layer_{9,10,11}.ln (the backbone's registry default).
"""

from ttame_jax.configs import common


def get_config(arg: str | None = None):
    """Overrides of the schema's defaults; ``arg``: "" or "smoke" and/or "1tap"."""
    return common.paper_recipe("vit_b_16", "encoder.layers.encoder_layer_11.ln", arg, kind="vit")
