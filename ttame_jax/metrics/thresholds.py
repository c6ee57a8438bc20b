"""Turning explanation maps into kept/removed pixel masks, per image.

Three selections are used by the metrics:

* :func:`soft_keep` (AD/IC): per-image quantile ``t`` with linear interpolation, map values
  ``< t`` set to 0, the others kept as they are (soft mask).
* :func:`percentile_keep` (ROAD, ``compat="grad-cam"``): pytorch-grad-cam's rule: keep the
  pixels whose score is *strictly below* ``np.percentile(score, 100 - removed%)``; the score
  is the map for MoRF and ``1 - map`` for LeRF. With ties at the threshold all tied pixels
  are removed, so more than ``removed%`` can go.
* :func:`rank_keep` (ROAD, ``compat="road"``): the original ROAD code: exactly
  ``int(H * W * removed)`` pixels are removed, chosen by rank after adding a tiny Gaussian
  jitter to the map (ties broken at random).

Quantiles follow NumPy's default ("linear", Hyndman & Fan type 7): virtual index
``i = q (n - 1)`` computed in float64 from the static ``q`` and ``n``, then
``lerp(sorted[floor i], sorted[floor i + 1], frac i)`` in float32 with NumPy's two-sided
lerp formula, so thresholds match ``np.percentile`` / ``torch.quantile`` bit for bit on the
same float32 maps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MORF = "morf"
LERF = "lerf"


def _linear_index(n: int, q: float) -> tuple[int, int, float]:
    """NumPy's "linear" virtual index of quantile ``q`` in ``n`` sorted values (static)."""
    virtual = n * q + (1.0 + q * (1.0 - 1.0 - 1.0)) - 1.0  # NumPy's exact float64 steps
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    if virtual <= 0:
        return 0, 0, 0.0
    lo = math.floor(virtual)
    return lo, lo + 1, virtual - lo


def quantile(values: jnp.ndarray, q: float) -> jnp.ndarray:
    """Per-row linear-interpolation quantile, like ``np.quantile(values, q, axis=-1)``.

    Args:
      values: ``(B, N)`` float32.
      q: static quantile in [0, 1].

    Returns:
      ``(B,)`` thresholds.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q must be in [0, 1], got {q}")
    lo, hi, gamma = _linear_index(values.shape[-1], q)
    ordered = jnp.sort(values, axis=-1)
    a, b = ordered[:, lo], ordered[:, hi]
    diff = b - a
    g = jnp.float32(gamma)
    one_minus_g = jnp.float32(1.0 - gamma)  # NumPy forms 1 - t in float64, then casts
    return a + diff * g if gamma < 0.5 else b - diff * one_minus_g


def soft_keep(maps: jnp.ndarray, kept_fraction: float) -> jnp.ndarray:
    """AD/IC masking: zero every map value below the ``1 - kept_fraction`` quantile.

    Args:
      maps: ``(B, H, W)`` maps in [0, 1].
      kept_fraction: share of pixels meant to survive, e.g. 1.0, 0.5, 0.15.

    Returns:
      ``(B, H, W)`` soft masks: the map where ``map >= t``, else 0.
    """
    flat = maps.reshape(maps.shape[0], -1).astype(jnp.float32)
    t = quantile(flat, round(1.0 - kept_fraction, 12))
    return jnp.where(maps < t[:, None, None], 0.0, maps)


def _check_order(order: str) -> None:
    if order not in (MORF, LERF):
        raise ValueError(f"order must be {MORF!r} or {LERF!r}, got {order!r}")


def percentile_keep(maps: jnp.ndarray, removed_fraction: float, order: str) -> jnp.ndarray:
    """pytorch-grad-cam's ROAD selection (``ROADMostRelevantFirst(100 - removed%)``).

    Args:
      maps: ``(B, H, W)`` float32 maps.
      removed_fraction: e.g. 0.1 for ``ROAD*RelevantFirst(percentile=90)``.
      order: ``"morf"`` (score = map) or ``"lerf"`` (score = 1 - map).

    Returns:
      ``(B, H, W)`` bool, True = kept (``score < percentile(score, 100 - removed%)``).
    """
    _check_order(order)
    score = maps.astype(jnp.float32)
    if order == LERF:
        score = 1.0 - score
    percentile = round(100.0 - 100.0 * removed_fraction, 9)
    t = quantile(score.reshape(score.shape[0], -1), percentile / 100.0)
    return score < t[:, None, None]


def rank_keep(
    maps: jnp.ndarray, removed_fraction: float, order: str, key: jax.Array, jitter: float = 1e-4
) -> jnp.ndarray:
    """The ROAD paper's selection: remove exactly ``int(H W removed_fraction)`` pixels.

    MoRF removes the highest-ranked, LeRF the lowest-ranked pixels of ``map + jitter * N(0,1)``
    (one jitter draw per pixel from ``key``; reuse the key across levels so the removed sets
    are nested).

    Returns:
      ``(B, H, W)`` bool, True = kept.
    """
    _check_order(order)
    b, h, w = maps.shape
    score = maps.reshape(b, -1).astype(jnp.float32)
    score = score + jitter * jax.random.normal(key, score.shape, score.dtype)
    if order == MORF:
        score = -score
    # rank 0 = first pixel to remove
    rank = jnp.argsort(jnp.argsort(score, axis=-1, stable=True), axis=-1, stable=True)
    k = int(h * w * removed_fraction)
    return (rank >= k).reshape(b, h, w)
