"""Sanity checks of explanations: cascading randomisation, Spearman and SSIM similarity."""

from ttame_jax.sanity.cascade import PARTS, SanityResult, cascading_randomization, units
from ttame_jax.sanity.similarity import spearman, ssim

__all__ = ["PARTS", "SanityResult", "cascading_randomization", "spearman", "ssim", "units"]
