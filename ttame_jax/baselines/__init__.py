"""ttame_jax.baselines."""
