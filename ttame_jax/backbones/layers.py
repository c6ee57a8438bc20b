"""Parameter-free layers as Flax submodules, so ``capture_intermediates`` can tap them.

torchvision models hold ReLUs and pools as modules (``features.16`` is a
``MaxPool2d``); plain ``jax.nn.relu`` calls leave no trace in
``capture_intermediates``. These wrappers give such nodes a name and a recorded
output. All take and return NHWC arrays.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class ReLU(nn.Module):
    """``torch.nn.ReLU``."""

    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


class MaxPool(nn.Module):
    """``torch.nn.MaxPool2d(window, stride, padding)`` with explicit padding.

    Padding is explicit (``((p, p), (p, p))``, padded with -inf like torch):
    ``'SAME'`` pads asymmetrically for stride 2 and disagrees with torch.
    """

    window: int
    stride: int
    padding: int = 0

    @nn.compact
    def __call__(self, x):
        p = self.padding
        return nn.max_pool(
            x, (self.window, self.window), (self.stride, self.stride), ((p, p), (p, p))
        )


class AdaptiveAvgPool(nn.Module):
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` on ``(B, H, W, C)``.

    Output cell ``i`` averages input rows ``floor(i*H/out) .. ceil((i+1)*H/out) - 1``
    (torch's bins; they overlap when ``H`` is not a multiple of ``out``). Shapes
    are static, so the bins are plain slices; when ``H == out`` it is the identity.
    """

    output_size: int

    @nn.compact
    def __call__(self, x):
        out = self.output_size
        _, h, w, _ = x.shape
        if (h, w) == (out, out):
            return x
        if out == 1:
            return jnp.mean(x, axis=(1, 2), keepdims=True)
        rows = [_bin(i, h, out) for i in range(out)]
        cols = [_bin(j, w, out) for j in range(out)]
        cells = [
            [jnp.mean(x[:, r0:r1, c0:c1], axis=(1, 2)) for (c0, c1) in cols] for (r0, r1) in rows
        ]
        return jnp.stack([jnp.stack(row, axis=1) for row in cells], axis=1)


def _bin(i: int, size: int, out: int) -> tuple[int, int]:
    """Half-open input range of adaptive-pool output cell ``i`` (torch's formula)."""
    return (i * size) // out, -(-((i + 1) * size) // out)
