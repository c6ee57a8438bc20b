"""``--config=configs/vit.py`` = the packaged ``--config=vit`` (ttame_jax/configs/vit.py)."""

from ttame_jax.configs.vit import get_config  # noqa: F401
