"""Grad-CAM (Selvaraju et al., ICCV 2017), as pytorch-grad-cam 1.5.7 computes it.

For target class ``c`` with logit ``y^c`` and tap activations ``A`` (``k`` channels,
spatial positions ``(i, j)``):

    w_k = mean_ij  d y^c / d A^k_ij            (global-average-pooled gradients)
    L   = ReLU(sum_k w_k A^k)

then per-image min-max, bilinear resize to the input size (``cv2.resize``
semantics) and min-max again.
"""

from __future__ import annotations

import functools

from ttame_jax import xla_cpu
from ttame_jax.baselines import common


@functools.partial(xla_cpu.jit, static_argnames=("module", "path"))
def _grad_cam(module, variables, x, path, target):
    _, _, act, grad = common.activation_and_grad(module, variables, x, path, target)
    grid, grad = common.to_grid(act), common.to_grid(grad)
    weights = grad.mean(axis=(1, 2))  # w_k
    return common.finish_cam(weights, grid, x.shape[1:3])


def grad_cam(module, variables, x, layer: str, target=None):
    """Grad-CAM maps for a batch.

    Args:
      module: a backbone from :func:`ttame_jax.backbones.create`.
      variables: its variables (``{"params": ..., "batch_stats": ...}``).
      x: ``(B, H, W, 3)`` float32, normalised with the backbone's mean/std (the
        tensor pytorch-grad-cam receives, in NHWC).
      layer: torchvision node name of the tap, e.g. ``"layer4"`` (ResNet-50),
        ``"features.29"`` (VGG-16), ``"encoder.layers.encoder_layer_11.ln"`` (ViT-B/16).
      target: ``None`` (top-1 class), an int, or ``(B,)`` ints.

    Returns:
      ``(B, H, W)`` float32 maps in [0, 1].
    """
    x, path, target = common.prepare(module, variables, x, layer, target)
    return _grad_cam(module, variables, x, path, target)


def grad_cam_fp(module, variables, x, layer: str, **options) -> int:
    """Backbone forward passes per explanation: 1 (plus one backward pass)."""
    del module, variables, x, layer, options
    return 1
