"""Feature map adapter (paper §III-C2, Fig. 4) and the explanation resolution.

CNN taps already have the layout the attention mechanism wants, ``(B, H_i,
W_i, C_i)`` NHWC, so the adapter is the identity ``a(L_i) = L_i``. ViT taps are
token sequences ``(B, 1 + N, D)``: the adapter drops the class token (index 0;
it has no spatial position) and reshapes the N patch tokens row-major into
``(B, √N, √N, D)``. That is the inverse of the ViT patch embedding, which
flattens its ``(D, √N, √N)`` conv output row by row into ``(N, D)``: token
``n`` sits at row ``n // √N``, column ``n % √N``.

ViT adapters (``vit_adapter``, ``config.model.vit_adapter``):

* ``"drop-class-token"`` (default, the paper's adapter): the class token is dropped;
* ``"class-token-product"``: every patch token is multiplied elementwise by the
  class token of the same tap, ``L_i[b, h, w, :] = t_{b, patch(h, w)} * t_{b, 0}``
  (the reference implementation's adapter for its ``attention_version="TTAME"``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import jax.numpy as jnp

from ttame_jax.config import VIT_ADAPTERS


def adapt(
    feature: jnp.ndarray, kind: str, name: str = "tap", vit_adapter: str = "drop-class-token"
) -> jnp.ndarray:
    """Turns one backbone tap into an NHWC feature map ``L_i``.

    Args:
      feature: CNN: ``(B, H_i, W_i, C_i)``; ViT: ``(B, 1 + N, D)`` with N a square.
      kind: ``"cnn"`` or ``"vit"`` (``BackboneSpec.kind``).
      name: the tap's node name, for error messages.
      vit_adapter: ``"drop-class-token"`` or ``"class-token-product"`` (ViT only).

    Returns:
      ``(B, H_i, W_i, C_i)``; for ViT ``H_i = W_i = √N`` and ``C_i = D``.
    """
    if kind == "cnn":
        if feature.ndim != 4:
            raise ValueError(
                f"CNN tap {name!r} must be NHWC (B, H, W, C), got shape {tuple(feature.shape)}; "
                f"pick a convolutional layer as tap"
            )
        return feature
    if kind == "vit":
        if feature.ndim != 3:
            raise ValueError(
                f"ViT tap {name!r} must be a token sequence (B, 1 + N, D), got shape "
                f"{tuple(feature.shape)}; pick an encoder layer as tap"
            )
        b, tokens, d = feature.shape
        n = tokens - 1
        side = math.isqrt(n)
        if n < 1 or side * side != n:
            raise ValueError(
                f"ViT tap {name!r} has {tokens} tokens; expected 1 class token + a square number "
                f"of patch tokens (e.g. 197 = 1 + 14*14)"
            )
        patches = feature[:, 1:, :].reshape(b, side, side, d)
        if vit_adapter == "drop-class-token":
            return patches
        if vit_adapter == "class-token-product":
            return patches * feature[:, :1, None, :]
        raise ValueError(f"vit_adapter must be one of {VIT_ADAPTERS}, got {vit_adapter!r}")
    raise ValueError(f"backbone kind must be 'cnn' or 'vit', got {kind!r}")


def explanation_size(shapes: Iterable[tuple[int, ...]], max_resolution: int) -> tuple[int, int]:
    """``(H_e, W_e)``: the largest tap's spatial size (paper eq. 9), capped.

    Args:
      shapes: NHWC shapes of the adapted feature maps.
      max_resolution: cap on each side (the reference caps at 56).
    """
    shapes = list(shapes)
    if not shapes:
        raise ValueError("T-TAME needs at least one feature tap")
    h = max(s[1] for s in shapes)
    w = max(s[2] for s in shapes)
    return min(h, max_resolution), min(w, max_resolution)
