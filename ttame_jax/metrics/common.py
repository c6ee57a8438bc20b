"""Helpers shared by the metrics: input checks, normalisation, target-class scores."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

ApplyFn = Callable[[jnp.ndarray], jnp.ndarray]  # normalised NHWC batch -> logits (B, K)


def check_inputs(images, maps, target=None) -> None:
    """Raises ``ValueError`` unless images ``(B,H,W,C)``, maps ``(B,H,W)`` and target ``(B,)``
    agree (shapes are static, so this runs once at trace time)."""
    if images.ndim != 4:
        raise ValueError(
            f"images must be an NHWC batch (B, H, W, C) in [0, 1], got shape {images.shape}; "
            "add a batch axis with images[None] for one image"
        )
    if maps.shape != images.shape[:3]:
        hint = ""
        if maps.ndim == 4:
            hint = " (one map per image: select the explained class, e.g. maps[:, k])"
        elif maps.ndim == 3 and maps.shape[0] == images.shape[0]:
            hint = " (upsample the maps to the input resolution first)"
        raise ValueError(
            f"maps must have shape (B, H, W) = {images.shape[:3]} to match images "
            f"{images.shape}, got {maps.shape}{hint}"
        )
    if target is not None and tuple(target.shape) != images.shape[:1]:
        raise ValueError(
            f"target must be one class index per image, shape ({images.shape[0]},), "
            f"got {tuple(target.shape)}"
        )


def target_scores(logits: jnp.ndarray, target: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Softmax probability of ``target`` and whether the top-1 class equals it.

    Args:
      logits: ``(B, K)``.
      target: ``(B,)`` int.

    Returns:
      ``(prob (B,), correct (B,) bool)``.
    """
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    prob = jnp.take_along_axis(probs, target[:, None], axis=-1)[:, 0]
    return prob, jnp.argmax(logits, axis=-1) == target


def resolve_target(logits: jnp.ndarray, target) -> jnp.ndarray:
    """``target`` as int32, or the top-1 class of ``logits`` when it is None."""
    if target is None:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jnp.asarray(target).astype(jnp.int32)
