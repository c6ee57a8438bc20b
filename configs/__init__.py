"""Paths for ``--config=configs/<name>.py[:variant]``; the configs live in ttame_jax/configs."""
