"""ttame_jax.core."""
