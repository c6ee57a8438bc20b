"""``--config=configs/vgg16.py`` = the packaged ``--config=vgg16`` (ttame_jax/configs/vgg16.py)."""

from ttame_jax.configs.vgg16 import get_config  # noqa: F401
