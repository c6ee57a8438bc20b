"""T-TAME on a frozen torchvision ResNet-50 (the paper's recipe, DESIGN §4).

Train on ImageNet (image folder root/<wnid>/*.JPEG; see docs for TFDS)::

    python train.py --config=configs/resnet50.py --workdir=runs/resnet50 \
        --config.data.root=/data/imagenet

Quick CPU check on generated data with random weights (about a minute)::

    python train.py --config=configs/resnet50.py:smoke --workdir=/tmp/resnet50_smoke

One-tap variant (≈ L-CAM-Img, paper Tables 2–5): ``--config=configs/resnet50.py:1tap``.

Default taps: layer2, layer3, layer4 (the backbone's registry default).
"""

from configs import common


def get_config(arg: str | None = None):
    """Config for resnet50; ``arg``: "" (full run) or variants "smoke", "1tap" (comma-separated)."""
    return common.build("resnet50", arg)
