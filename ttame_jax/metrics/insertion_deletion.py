"""Insertion and deletion AUC (Petsiuk et al., RISE, BMVC 2018).

Pixels are ranked by the explanation map (highest first; ties keep raster order). With
``n = ceil(H W / steps)`` pixels per step, curve point ``i = 0..steps`` uses the image where
the first ``min(i n, H W)`` ranked pixels are

* deletion: replaced by a constant substrate (``"mean"``: the normalisation mean colour,
  i.e. 0 after normalisation, what RISE's code used; ``"zero"``: black in [0, 1] space);
* insertion: copied from the image into a blurred copy of it (Gaussian, 11x11, sigma 5 as
  in RISE, normalised, reflect padding).

The curve is the target-class softmax probability; the score is the normalised trapezoid
``AUC = (sum_i p_i - (p_0 + p_steps) / 2) / steps`` (x axis = fraction of pixels, in [0, 1]).
High insertion and low deletion AUC are better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax.core.masking import normalize
from ttame_jax.metrics.common import (
    ApplyFn,
    check_inputs,
    resolve_target,
    target_scores,
)

SUBSTRATES = ("mean", "zero")


def gaussian_blur(images: jnp.ndarray, size: int = 11, sigma: float = 5.0) -> jnp.ndarray:
    """Separable normalised Gaussian blur of an NHWC batch with reflect padding."""
    radius = size // 2
    x = np.arange(size) - radius
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k = jnp.asarray(k / k.sum(), jnp.float32)
    h, w = images.shape[1], images.shape[2]
    padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(k[i] * padded[:, i : i + h] for i in range(size))
    return sum(k[i] * rows[:, :, i : i + w] for i in range(size))


def auc(curve: jnp.ndarray) -> jnp.ndarray:
    """Normalised trapezoid area of ``(..., steps + 1)`` curves on an even grid over [0, 1]."""
    steps = curve.shape[-1] - 1
    return (curve.sum(-1) - 0.5 * (curve[..., 0] + curve[..., -1])) / steps


def insertion_deletion(
    apply_fn: ApplyFn,
    images: jnp.ndarray,
    maps: jnp.ndarray,
    target: jnp.ndarray | None = None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    steps: int = 100,
    substrate: str = "mean",
    chunk: int = 8,
) -> dict[str, jnp.ndarray]:
    """Per-image insertion/deletion curves and AUCs. Pure; wrap it in ``jax.jit``.

    Args:
      apply_fn: ``apply_fn(x_normalised (B, H, W, C)) -> logits (B, K)``.
      images: ``(B, H, W, C)`` in [0, 1].
      maps: ``(B, H, W)`` maps (only their per-image ranking matters).
      target: ``(B,)`` int; None = top-1 on the unmodified images.
      mean, std: per-channel normalisation of the backbone.
      steps: curve steps (RISE used ``H W / 224``, i.e. 224 at 224x224).
      substrate: deletion substrate, ``"mean"`` or ``"zero"``.
      chunk: curve points evaluated per backbone call (memory: ``chunk * B`` images).

    Returns:
      dict with ``"insertion_curve"``, ``"deletion_curve"`` ``(B, steps + 1)``,
      ``"insertion_auc"``, ``"deletion_auc"`` ``(B,)`` and ``"target"``.
    """
    check_inputs(images, maps, target)
    if substrate not in SUBSTRATES:
        raise ValueError(f"substrate must be one of {SUBSTRATES}, got {substrate!r}")
    if steps < 1 or chunk < 1:
        raise ValueError(f"steps and chunk must be >= 1, got steps={steps}, chunk={chunk}")
    b, h, w, c = images.shape
    images = images.astype(jnp.float32)
    if target is None:
        target = resolve_target(apply_fn(normalize(images, mean, std)), None)
    target = jnp.asarray(target).astype(jnp.int32)

    order = jnp.argsort(-maps.reshape(b, -1), axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1, stable=True).reshape(b, h, w, 1)
    per_step = math.ceil(h * w / steps)
    blurred = gaussian_blur(images)
    if substrate == "mean":
        constant = jnp.broadcast_to(jnp.asarray(mean, jnp.float32), images.shape)
    else:
        constant = jnp.zeros_like(images)

    n_points = steps + 1
    n_chunks = math.ceil(n_points / chunk)
    counts = jnp.minimum(jnp.arange(n_chunks * chunk) * per_step, h * w)

    def curve_chunk(chunk_counts):  # (chunk,) -> probs (2, chunk, B)
        shown = rank[None] < chunk_counts[:, None, None, None, None]  # (chunk, B, H, W, 1)
        inserted = jnp.where(shown, images[None], blurred[None])
        deleted = jnp.where(shown, constant[None], images[None])
        batch = jnp.concatenate([inserted, deleted]).reshape(2 * chunk * b, h, w, c)
        p, _ = target_scores(apply_fn(normalize(batch, mean, std)), jnp.tile(target, 2 * chunk))
        return p.reshape(2, chunk, b)

    probs = jax.lax.map(curve_chunk, counts.reshape(n_chunks, chunk))  # (n_chunks, 2, chunk, B)
    probs = probs.transpose(1, 3, 0, 2).reshape(2, b, n_chunks * chunk)[:, :, :n_points]
    return {
        "insertion_curve": probs[0],
        "deletion_curve": probs[1],
        "insertion_auc": auc(probs[0]),
        "deletion_auc": auc(probs[1]),
        "target": target,
    }
