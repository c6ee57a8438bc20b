"""``--config=configs/synthetic.py`` = the packaged ``--config=synthetic`` (the benchmark)."""

from ttame_jax.configs.synthetic import get_config  # noqa: F401
