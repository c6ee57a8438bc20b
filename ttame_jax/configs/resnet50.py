"""T-TAME on a frozen torchvision ResNet-50 (the paper's recipe, DESIGN §4).

Train on ImageNet (image folder root/<wnid>/*.JPEG; see docs/data.md for TFDS)::

    ttame train --config=resnet50 --workdir=runs/resnet50 --config.data.root=/data/imagenet

Quick CPU check on generated data with random weights (about a minute)::

    ttame train --config=resnet50:smoke --workdir=/tmp/resnet50_smoke

One-tap variant (≈ L-CAM-Img, paper Tables 2–5): ``--config=resnet50:1tap``.
Default taps: layer2, layer3, layer4 (the backbone's registry default).
"""

from ttame_jax.configs import common


def get_config(arg: str | None = None):
    """Overrides of the schema's defaults; ``arg``: "" or "smoke" and/or "1tap"."""
    return common.paper_recipe("resnet50", "layer4", arg)
