"""Image masking with the predicted-class map (paper eqs. 13-14) — pure functions.

``| · |`` is the per-channel standardisation ``(x - mean) / std``:

* CNN (eq. 13): ``|up(A_y) ⊙ x|`` — mask the raw image, then standardise.
* ViT (eq. 14): ``up(A_y) ⊙ |x|`` — standardise, then mask.

``up`` is a bilinear resize (half-pixel centres, like torch
``align_corners=False``) of the map from ``(H_e, W_e)`` to the image size.
``config.model.masking = "auto"`` picks the rule by backbone kind; paper
Table 7 swaps them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from ttame_jax.core.resize import resize_bilinear


def normalize(x: jnp.ndarray, mean: Sequence[float], std: Sequence[float]) -> jnp.ndarray:
    """``(x - mean) / std`` per channel of an NHWC batch: the backbone's input
    standardisation (the one definition in the package; ``|·|`` in the paper)."""
    x = jnp.asarray(x)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    mean = jnp.asarray(mean, dtype=dtype)
    std = jnp.asarray(std, dtype=dtype)
    if mean.shape != (x.shape[-1],) or std.shape != (x.shape[-1],):
        raise ValueError(
            f"mean and std need one value per channel ({x.shape[-1]}), got shapes "
            f"{mean.shape} and {std.shape}"
        )
    return (x.astype(dtype) - mean) / std


def masking_rule(masking: str, kind: str) -> str:
    """Resolves ``config.model.masking`` (``"auto" | "cnn" | "vit"``) for a backbone kind."""
    if masking == "auto":
        return kind
    if masking in ("cnn", "vit"):
        return masking
    raise ValueError(f"config.model.masking must be 'auto', 'cnn' or 'vit', got {masking!r}")


def mask_images(
    x01: jnp.ndarray,
    mask: jnp.ndarray,
    rule: str,
    mean: Sequence[float],
    std: Sequence[float],
) -> jnp.ndarray:
    """Masks images with their own maps and returns normalised backbone input.

    Args:
      x01: ``(B, H, W, 3)`` images in [0, 1].
      mask: ``(B, H_e, W_e)`` each image's map ``A_y`` (values in [0, 1]).
      rule: ``"cnn"`` (eq. 13) or ``"vit"`` (eq. 14).
      mean, std: the backbone's per-channel normalisation.

    Returns:
      ``(B, H, W, 3)`` normalised, masked images.
    """
    if mask.ndim != 3 or mask.shape[0] != x01.shape[0]:
        raise ValueError(
            f"mask must be (B, H_e, W_e) with B = {x01.shape[0]}, got shape {mask.shape}"
        )
    up = resize_bilinear(mask[..., None], x01.shape[1:3])  # (B, H, W, 1)
    if rule == "cnn":
        return normalize(up * x01, mean, std)
    if rule == "vit":
        return up * normalize(x01, mean, std)
    raise ValueError(f"masking rule must be 'cnn' or 'vit', got {rule!r}")
