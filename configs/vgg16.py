"""T-TAME on a frozen torchvision VGG-16 (the paper's recipe, DESIGN §4).

Train on ImageNet (image folder root/<wnid>/*.JPEG; see docs for TFDS)::

    python train.py --config=configs/vgg16.py --workdir=runs/vgg16 \
        --config.data.root=/data/imagenet

Quick CPU check on generated data with random weights (about a minute)::

    python train.py --config=configs/vgg16.py:smoke --workdir=/tmp/vgg16_smoke

One-tap variant (≈ L-CAM-Img, paper Tables 2–5): ``--config=configs/vgg16.py:1tap``.

Default taps: features.16, features.23, features.30 (the backbone's registry default).
"""

from configs import common


def get_config(arg: str | None = None):
    """Config for vgg16; ``arg``: "" (full run) or variants "smoke", "1tap" (comma-separated)."""
    return common.build("vgg16", arg)
