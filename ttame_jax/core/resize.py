"""Bilinear resizing with torch's ``align_corners=False`` semantics.

``jax.image.resize(..., "bilinear")`` also uses half-pixel centres, but it
antialiases when downsampling (it widens the triangle kernel), whereas torch's
``F.interpolate(mode="bilinear", align_corners=False)`` always reads exactly the
two nearest source pixels per axis. T-TAME resizes in both directions (feature
taps larger than ``max_resolution`` are shrunk; maps are enlarged to the input
size), so this helper reproduces torch's rule in both cases:

    src = max((dst + 0.5) * in / out - 0.5, 0)
    i0 = floor(src), i1 = min(i0 + 1, in - 1), w = src - i0
    out[dst] = (1 - w) * in[i0] + w * in[i1]

The indices and weights depend only on static shapes, so they are computed
with NumPy at trace time; the resize itself is two gathers and a lerp per axis
(no matmul, so it is exact on every accelerator regardless of matmul precision).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def _axis_plan(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``(i0, i1)`` and weight ``w`` of ``i1`` for each output index."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w = (src - i0).astype(np.float32)
    return i0, i1, w


def _resize_axis(x: jnp.ndarray, axis: int, out_size: int) -> jnp.ndarray:
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    i0, i1, w = _axis_plan(in_size, out_size)
    shape = [1] * x.ndim
    shape[axis] = out_size
    w = jnp.asarray(w.reshape(shape), dtype=x.dtype)
    a = jnp.take(x, i0, axis=axis)
    b = jnp.take(x, i1, axis=axis)
    return a + w * (b - a)


def resize_bilinear(
    x: jnp.ndarray, size: Sequence[int], axes: Sequence[int] = (1, 2)
) -> jnp.ndarray:
    """Bilinear resize of two axes, like torch ``interpolate(align_corners=False)``.

    Args:
      x: array with the two spatial axes at ``axes`` (default NHWC: ``(1, 2)``).
      size: ``(out_h, out_w)``.
      axes: the (height, width) axes of ``x``.

    Returns:
      ``x`` with ``x.shape[axes[0]] == size[0]`` and ``x.shape[axes[1]] == size[1]``;
      same dtype. Values are convex combinations of the input, so a map in
      [0, 1] stays in [0, 1].
    """
    if len(size) != 2 or len(axes) != 2:
        raise ValueError(f"resize_bilinear needs two sizes and two axes, got {size} and {axes}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"resize_bilinear needs a floating-point array, got dtype {x.dtype}")
    for axis, out in zip(axes, size, strict=True):
        if int(out) < 1:
            raise ValueError(f"resize_bilinear: output sizes must be >= 1, got {tuple(size)}")
        x = _resize_axis(x, axis % x.ndim, int(out))
    return x
