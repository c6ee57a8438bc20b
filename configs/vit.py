"""T-TAME on a frozen torchvision ViT-B/16 (the paper's recipe, DESIGN §4).

Train on ImageNet (image folder root/<wnid>/*.JPEG; see docs for TFDS)::

    python train.py --config=configs/vit.py --workdir=runs/vit \
        --config.data.root=/data/imagenet

Quick CPU check on generated data with random weights (about a minute)::

    python train.py --config=configs/vit.py:smoke --workdir=/tmp/vit_smoke

Default taps: encoder.layers.encoder_layer_{9,10,11}.ln (the registry default).
"""

from configs import common


def get_config(arg: str | None = None):
    """Config for vit_b_16; ``arg`` = "" (full run) or "smoke"."""
    variant = common.check_variant(arg)
    config = common.get_base_config("vit_b_16")
    if variant == "smoke":
        config = common.smoke(config)
    config.lock()
    return config
