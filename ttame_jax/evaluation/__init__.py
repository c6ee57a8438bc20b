"""ttame_jax.evaluation."""
