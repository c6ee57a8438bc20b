"""ttame_jax.training."""
