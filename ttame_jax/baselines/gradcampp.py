"""Grad-CAM++ (Chattopadhyay et al., WACV 2018), as pytorch-grad-cam 1.5.7 computes it.

With ``g = d y^c / d A^k_ij`` (gradient of the raw logit) and ``S_k = sum_ab A^k_ab``,
the paper's eq. 19 with the exponential's derivatives replaced by powers of ``g``:

    alpha^kc_ij = g^2 / (2 g^2 + S_k g^3 + 1e-6),   0 where g == 0
    w_k         = sum_ij alpha^kc_ij ReLU(g)
    L           = ReLU(sum_k w_k A^k)

then the same scaling and resizing as Grad-CAM.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ttame_jax import xla_cpu
from ttame_jax.baselines import common

ALPHA_EPS = 1e-6


@functools.partial(xla_cpu.jit, static_argnames=("module", "path"))
def _grad_cam_pp(module, variables, x, path, target):
    _, _, act, grad = common.activation_and_grad(module, variables, x, path, target)
    grid, g = common.to_grid(act), common.to_grid(grad)
    g2 = g * g
    g3 = g2 * g
    s = grid.sum(axis=(1, 2), keepdims=True)  # S_k
    alpha = jnp.where(g != 0, g2 / (2 * g2 + s * g3 + ALPHA_EPS), 0.0)
    weights = (alpha * jax.nn.relu(g)).sum(axis=(1, 2))  # w_k
    return common.finish_cam(weights, grid, x.shape[1:3])


def grad_cam_pp(module, variables, x, layer: str, target=None):
    """Grad-CAM++ maps for a batch.

    Args:
      module, variables, x, layer, target: as for :func:`~ttame_jax.baselines.grad_cam`
        (``x`` is the normalised NHWC batch).

    Returns:
      ``(B, H, W)`` float32 maps in [0, 1].
    """
    x, path, target = common.prepare(module, variables, x, layer, target)
    return _grad_cam_pp(module, variables, x, path, target)


def grad_cam_pp_fp(module, variables, x, layer: str, **options) -> int:
    """Backbone forward passes per explanation: 1 (plus one backward pass)."""
    del module, variables, x, layer, options
    return 1
