"""Evaluation metrics of the paper and beyond, as pure JAX functions.

Every metric takes ``apply_fn(x_normalised NHWC) -> logits``, images in [0, 1], maps
``(B, H, W)`` in [0, 1] at the input resolution, ``target (B,)`` and the backbone's
``mean``/``std``, and returns per-image arrays; the ``*_summary`` helpers turn stacked
per-image arrays into percentages. Formulas and compat modes: ``docs/metrics.md``.
"""

from ttame_jax.metrics.ad_ic import AD_IC_KEPT, ad_ic, ad_ic_summary
from ttame_jax.metrics.imputation import noisy_linear_impute, solve_linear_imputation
from ttame_jax.metrics.insertion_deletion import auc, gaussian_blur, insertion_deletion
from ttame_jax.metrics.road import ROAD_LEVELS, road, road_summary
from ttame_jax.metrics.thresholds import percentile_keep, quantile, rank_keep, soft_keep

__all__ = [
    "AD_IC_KEPT",
    "ROAD_LEVELS",
    "ad_ic",
    "ad_ic_summary",
    "auc",
    "gaussian_blur",
    "insertion_deletion",
    "noisy_linear_impute",
    "percentile_keep",
    "quantile",
    "rank_keep",
    "road",
    "road_summary",
    "soft_keep",
    "solve_linear_imputation",
]
