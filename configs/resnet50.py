"""``--config=configs/resnet50.py`` = the packaged ``--config=resnet50`` (ttame_jax/configs/)."""

from ttame_jax.configs.resnet50 import get_config  # noqa: F401
