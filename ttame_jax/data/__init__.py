"""ttame_jax.data."""
