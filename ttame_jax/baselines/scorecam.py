"""Score-CAM (Wang et al., CVPRW 2020), as pytorch-grad-cam 1.5.7 computes it.

Each channel ``A^k`` of the tap becomes a soft mask of the input: upsampled to the
input size with ``torch.nn.UpsamplingBilinear2d`` semantics (``align_corners=True``)
and min-max normalised per channel,

    M^k = (up(A^k) - min) / (max - min + 1e-8),

the backbone scores the masked input ``x * M^k`` (``x`` is the *normalised* input,
as in pytorch-grad-cam), and the channel weights are the softmax over channels of
those target logits:

    w = softmax_k(y^c(x * M^k)),   L = ReLU(sum_k w_k A^k)

then the same scaling and resizing as Grad-CAM. One backbone pass per channel:
``batch_size`` masked inputs (pairs of image and channel, over the whole batch)
go through the backbone at a time, so memory stays bounded for any ``C``. On CPU
it compiles with :data:`ttame_jax.xla_cpu.CPU_CONV_OPTIONS` (XLA's default CPU
convolution path is up to 4x slower for these passes; see docs/performance.md).
"""

from __future__ import annotations

import functools

import jax

from ttame_jax.baselines import common
from ttame_jax.baselines.resize import resize
from ttame_jax.xla_cpu import conv_jit

MASK_EPS = 1e-8


@functools.partial(conv_jit, static_argnames=("module", "path", "batch_size"))
def _score_cam(module, variables, x, path, target, batch_size):
    logits, act = common.apply_at_tap(module, variables, x, path, lambda a: a)
    target = common.select_target(logits, target)
    grid = common.to_grid(act)
    batch, channels = grid.shape[0], grid.shape[-1]
    size = x.shape[1:3]

    def scores(item):  # item = b * C + k
        b, k = item // channels, item % channels
        up = resize(grid[b, :, :, k], size, mode="align_corners")  # (n, H, W)
        lo = up.min(axis=(1, 2), keepdims=True)
        hi = up.max(axis=(1, 2), keepdims=True)
        masks = (up - lo) / (hi - lo + MASK_EPS)  # M^k
        out = module.apply(variables, x[b] * masks[..., None])
        return common.class_score(out, target[b])

    y = common.map_items(scores, batch * channels, batch_size).reshape(batch, channels)
    weights = jax.nn.softmax(y, axis=-1)
    return common.finish_cam(weights, grid, size)


def score_cam(module, variables, x, layer: str, target=None, *, batch_size: int = 32):
    """Score-CAM maps for a batch.

    Args:
      module, variables, x, layer, target: as for :func:`~ttame_jax.baselines.grad_cam`
        (``x`` is the normalised NHWC batch).
      batch_size: masked inputs per backbone call (memory bound; results do not
        depend on it).

    Returns:
      ``(B, H, W)`` float32 maps in [0, 1].
    """
    x, path, target = common.prepare(module, variables, x, layer, target)
    return _score_cam(module, variables, x, path, target, batch_size)


def score_cam_fp(module, variables, x, layer: str, **options) -> int:
    """Backbone forward passes per explanation: ``C``, one per channel of ``layer``.

    (Plus the one unmasked pass for the activations, not counted, as in the paper.)
    """
    del options
    return common.tap_channels(module, variables, x, layer)
