"""Ablation-CAM (Desai & Ramaswamy, WACV 2020), as pytorch-grad-cam 1.5.7 computes it.

For each channel ``k`` the tap's output is replaced by a copy with channel ``k``
ablated (for ViT tokens: feature ``k`` of every token, class token included) and
the rest of the network runs on it:

    w_k = (y^c - y^c_k) / y^c,    L = ReLU(sum_k w_k A^k)

then the same scaling and resizing as Grad-CAM. ``y^c`` is the target logit of the
unablated image, ``y^c_k`` with channel ``k`` ablated.

The ablated value (option ``ablation_value``): the default ``"grad-cam"`` reproduces
pytorch-grad-cam: 0 when the image's minimum activation ``m`` at the tap is exactly
0 (ReLU taps), otherwise a very negative value. Because pytorch-grad-cam writes
its ablations in place in a loop that re-reads the minimum, channel ``k`` gets
``m - 1e7 * (1 + k mod b)`` with ``b`` its ``batch_size`` (float32 arithmetic repeated
as it does). The T-TAME reference ran it with ``batch_size=8``, which is our default
(``reference_batch_size``); pytorch-grad-cam's own default is 32. A number instead
ablates every channel to that value (``0.0`` is the Ablation-CAM paper).

The tap's module is skipped in the ablated passes (its output is replaced), so for
taps on the main path XLA drops the layers before it as dead code.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ttame_jax import xla_cpu
from ttame_jax.baselines import common

ABLATION_OFFSET = 1e7  # pytorch-grad-cam's ABLATION_VALUE
REFERENCE_BATCH = 8  # AblationCAM's batch_size in the T-TAME reference (pytorch-grad-cam: 32)


def _grad_cam_values(minimum: jax.Array, channels: int, reference_batch: int) -> jax.Array:
    """``(B, C)`` ablation values of pytorch-grad-cam run with ``batch_size=reference_batch``
    for per-image minima ``(B,)``."""

    def step(value, _):
        value = value - jnp.float32(ABLATION_OFFSET)
        return value, value

    _, offsets = jax.lax.scan(step, minimum.astype(jnp.float32), length=reference_batch)
    per_slot = offsets.T  # (B, b): m - 1e7, (m - 1e7) - 1e7, ...
    values = per_slot[:, jnp.arange(channels) % reference_batch]
    return jnp.where(minimum[:, None] == 0, 0.0, values)


@functools.partial(
    xla_cpu.jit,
    static_argnames=("module", "path", "batch_size", "ablation_value", "reference_batch_size"),
)
def _ablation_cam(
    module, variables, x, path, target, batch_size, ablation_value, reference_batch_size
):
    logits, act = common.apply_at_tap(module, variables, x, path, lambda a: a)
    target = common.select_target(logits, target)
    y = common.class_score(logits, target)
    grid = common.to_grid(act)
    batch, channels = act.shape[0], act.shape[-1]
    if ablation_value == "grad-cam":
        minimum = act.reshape(batch, -1).min(axis=1)
        values = _grad_cam_values(minimum, channels, reference_batch_size)
    else:
        values = jnp.full((batch, channels), ablation_value, jnp.float32)
    ones = (1,) * (act.ndim - 2)  # broadcast over spatial positions / tokens

    def scores(item):  # item = b * C + k
        b, k = item // channels, item % channels
        hit = (jnp.arange(channels) == k[:, None]).reshape(-1, *ones, channels)
        fill = values[b, k].reshape(-1, *ones, 1)
        ablated = jnp.where(hit, fill, act[b])
        out, _ = common.apply_at_tap(module, variables, x[b], path, lambda _: ablated)
        return common.class_score(out, target[b])

    y_k = common.map_items(scores, batch * channels, batch_size).reshape(batch, channels)
    weights = (y[:, None] - y_k) / y[:, None]
    return common.finish_cam(weights, grid, x.shape[1:3])


def ablation_cam(
    module,
    variables,
    x,
    layer: str,
    target=None,
    *,
    batch_size: int = 32,
    ablation_value: str | float = "grad-cam",
    reference_batch_size: int = REFERENCE_BATCH,
):
    """Ablation-CAM maps for a batch.

    Args:
      module, variables, x, layer, target: as for :func:`~ttame_jax.baselines.grad_cam`
        (``x`` is the normalised NHWC batch).
      batch_size: ablated copies per backbone call (memory bound; results do not
        depend on it).
      ablation_value: ``"grad-cam"`` (pytorch-grad-cam's values, see the module
        docstring) or a float written into the ablated channel.
      reference_batch_size: with ``"grad-cam"``, the ``batch_size`` of the
        pytorch-grad-cam run reproduced (its ablation values depend on it): 8, the T-TAME
        reference's (default), or 32, pytorch-grad-cam's default.

    Returns:
      ``(B, H, W)`` float32 maps in [0, 1].
    """
    if ablation_value != "grad-cam" and not isinstance(ablation_value, int | float):
        raise ValueError(f"ablation_value must be 'grad-cam' or a number, got {ablation_value!r}")
    if ablation_value != "grad-cam":
        ablation_value = float(ablation_value)
    if int(reference_batch_size) < 1:
        raise ValueError(f"reference_batch_size must be >= 1, got {reference_batch_size}")
    x, path, target = common.prepare(module, variables, x, layer, target)
    return _ablation_cam(
        module, variables, x, path, target, batch_size, ablation_value, int(reference_batch_size)
    )


def ablation_cam_fp(module, variables, x, layer: str, **options) -> int:
    """Backbone forward passes per explanation: ``C``, one per ablated channel.

    (Plus the one unablated pass, not counted, as in the paper. The paper's tables
    list 4C for Ablation-CAM on the CNNs; we count the passes this code runs.)
    """
    del options
    return common.tap_channels(module, variables, x, layer)
