"""ttame_jax.metrics."""
