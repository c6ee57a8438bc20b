"""T-TAME on a frozen torchvision ViT-B/16 (the paper's recipe, DESIGN §4).

Train on ImageNet (image folder root/<wnid>/*.JPEG; see docs for TFDS)::

    python train.py --config=configs/vit.py --workdir=runs/vit \
        --config.data.root=/data/imagenet

Quick CPU check on generated data with random weights (about a minute)::

    python train.py --config=configs/vit.py:smoke --workdir=/tmp/vit_smoke

One-tap variant (≈ L-CAM-Img, paper Tables 2–5): ``--config=configs/vit.py:1tap``.

Default taps: encoder.layers.encoder_layer_{9,10,11}.ln (the registry default).
"""

from configs import common


def get_config(arg: str | None = None):
    """Config for vit_b_16; ``arg``: "" (full run) or variants "smoke", "1tap" (comma-separated)."""
    return common.build("vit_b_16", arg)
