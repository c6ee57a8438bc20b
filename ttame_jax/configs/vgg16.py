"""T-TAME on a frozen torchvision VGG-16 (the paper's recipe, DESIGN §4).

Train on ImageNet (image folder root/<wnid>/*.JPEG; see docs/data.md for TFDS)::

    ttame train --config=vgg16 --workdir=runs/vgg16 --config.data.root=/data/imagenet

Quick CPU check on generated data with random weights (about a minute)::

    ttame train --config=vgg16:smoke --workdir=/tmp/vgg16_smoke

One-tap variant (≈ L-CAM-Img, paper Tables 2–5): ``--config=vgg16:1tap``.
Default taps: features.16, features.23, features.30 (the backbone's registry default).
"""

from ttame_jax.configs import common


def get_config(arg: str | None = None):
    """Overrides of the schema's defaults; ``arg``: "" or "smoke" and/or "1tap"."""
    return common.paper_recipe("vgg16", "features.30", arg)
