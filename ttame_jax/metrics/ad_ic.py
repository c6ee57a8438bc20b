"""Average Drop (AD) and Increase in Confidence (IC) at several kept-pixel fractions.

Paper Eqs. (18)-(20) (Chattopadhyay et al. 2018 protocol, as in T-TAME): for image ``v``
with model-truth class ``y_v``,

    psi_v      = softmax(f(norm(I_v)))[y_v]                        ("Y")
    psi_v^phi  = softmax(f(norm(I_v * phi(E_v))))[y_v]             ("O")
    AD(nu) = 100 / Upsilon * sum_v max(0, Y - O) / Y
    IC(nu) = 100 / Upsilon * sum_v [O > Y]

where ``phi`` keeps the map values at or above the per-image ``1 - nu`` quantile (linear
interpolation) and zeroes the rest (kept values stay soft), and the product is taken on the
[0, 1] image *before* normalisation (``space="pixel"``, the default, as the T-TAME reference
code for every backbone), or with ``space="normalised"`` on the normalised image
(``phi(E_v) * norm(I_v)``: the paper's ViT masking rule, Eq. (14)). :func:`ad_ic` returns
the per-image terms so an evaluator can sum them over batches; :func:`ad_ic_summary`
divides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from ttame_jax.core.masking import normalize
from ttame_jax.metrics.common import (
    ApplyFn,
    check_inputs,
    resolve_target,
    target_scores,
)
from ttame_jax.metrics.thresholds import soft_keep

AD_IC_KEPT = (1.0, 0.5, 0.15)  # nu: share of pixels kept (paper: 100 %, 50 %, 15 %)
SPACES = ("pixel", "normalised")  # where the mask multiplies the image


def ad_ic(
    apply_fn: ApplyFn,
    images: jnp.ndarray,
    maps: jnp.ndarray,
    target: jnp.ndarray | None = None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    kept: Sequence[float] = AD_IC_KEPT,
    space: str = "pixel",
) -> dict[str, jnp.ndarray]:
    """Per-image AD/IC terms at every kept fraction. Pure; wrap it in ``jax.jit``.

    Args:
      apply_fn: ``apply_fn(x_normalised (B, H, W, C)) -> logits (B, K)``.
      images: ``(B, H, W, C)`` in [0, 1].
      maps: ``(B, H, W)`` explanation maps in [0, 1] at the input resolution.
      target: ``(B,)`` int classes; None = the top-1 class on the unmasked images.
      mean, std: per-channel normalisation of the backbone.
      kept: static kept fractions ``nu`` (1.0 keeps every pixel, soft-weighted by the map).
      space: ``"pixel"`` masks the [0, 1] image, then normalises (``norm(x * phi)``);
        ``"normalised"`` masks the normalised image (``phi * norm(x)``).

    Returns:
      dict with ``"confidence"`` ``(B,)`` = Y; ``"masked_confidence"`` ``(B, L)`` = O;
      ``"drop"`` ``(B, L)`` = max(0, Y - O) / Y (0 when Y == 0); ``"increase"`` ``(B, L)``
      float 1.0 where O > Y; ``"target"`` ``(B,)``.
    """
    check_inputs(images, maps, target)
    if space not in SPACES:
        raise ValueError(f"AD/IC masking space must be one of {SPACES}, got {space!r}")
    for nu in kept:
        if not 0.0 < nu <= 1.0:
            raise ValueError(f"kept fractions must be in (0, 1], got {nu}")
    normed = normalize(images, mean, std)
    logits = apply_fn(normed)
    target = resolve_target(logits, target)
    y, _ = target_scores(logits, target)
    masked = []
    for nu in kept:
        masks = soft_keep(maps, nu)[..., None]
        if space == "pixel":
            inputs = normalize(images * masks, mean, std)
        else:
            inputs = normed * masks
        o, _ = target_scores(apply_fn(inputs), target)
        masked.append(o)
    o = jnp.stack(masked, axis=1)
    y_col = y[:, None]
    safe_y = jnp.where(y_col > 0, y_col, 1.0)
    drop = jnp.where(y_col > 0, jnp.maximum(0.0, y_col - o) / safe_y, 0.0)
    return {
        "confidence": y,
        "masked_confidence": o,
        "drop": drop,
        "increase": (o > y_col).astype(jnp.float32),
        "target": target,
    }


def ad_ic_summary(
    per_image: Mapping[str, np.ndarray], kept: Sequence[float] = AD_IC_KEPT
) -> dict[str, dict[str, float]]:
    """AD and IC in percent from per-image terms (one batch or several concatenated).

    Returns:
      ``{"AD": {"100%": ..., "50%": ..., "15%": ...}, "IC": {...}}``.
    """
    drop = np.asarray(per_image["drop"], np.float64)
    inc = np.asarray(per_image["increase"], np.float64)
    if drop.ndim != 2 or drop.shape[1] != len(kept):
        raise ValueError(f"expected (N, {len(kept)}) per-image terms, got {drop.shape}")
    names = [f"{round(100 * nu):d}%" for nu in kept]
    return {
        "AD": {n: float(100.0 * v) for n, v in zip(names, drop.mean(axis=0), strict=True)},
        "IC": {n: float(100.0 * v) for n, v in zip(names, inc.mean(axis=0), strict=True)},
    }
