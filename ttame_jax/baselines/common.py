"""Parts every baseline shares: taps, targets, gradients, token grids, scaling, chunking.

Conventions (the same as pytorch-grad-cam, so that the maps can be compared):

- ``x`` is the NHWC float32 batch *already normalised* with the backbone's mean/std,
  i.e. exactly the tensor pytorch-grad-cam's ``input_tensor`` holds (transposed).
- The score of class ``k`` is the raw logit (pytorch-grad-cam's
  ``ClassifierOutputTarget``); the default target is the top-1 class.
- A feature tap is a torchvision node name (``"layer4"``,
  ``"encoder.layers.encoder_layer_11.ln"``). Its Flax module is found in the
  backbone's ``tap_paths`` table and reached with :func:`flax.linen.intercept_methods`:
  the tap's output is read, offset (for gradients) or replaced (for ablation)
  without hooks and without any change to the backbone.
- ViT token sequences ``(B, 1 + N, D)`` become grids ``(B, sqrt(N), sqrt(N), D)``
  by dropping the class token and reshaping row-major (pytorch-grad-cam's usual
  ``reshape_transform`` for ViT, and the T-TAME feature adapter).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax.backbones.extract import resolve_taps
from ttame_jax.baselines.resize import resize

SCALE_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image: (c - min) / (max - min + 1e-7)


def tap_path(module, layer: str) -> tuple[str, ...]:
    """The Flax module path of torchvision node ``layer`` (clear error if unknown)."""
    if not isinstance(layer, str):
        raise TypeError(
            f"layer must be a torchvision node name such as 'layer4', got {layer!r}; the "
            "valid names are the keys of the backbone's tap_paths table"
        )
    return resolve_taps(module, [layer])[0]


def apply_at_tap(module, variables, x, path, edit: Callable) -> tuple[jax.Array, jax.Array]:
    """Runs the backbone with the output of the module at ``path`` passed through ``edit``.

    Args:
      module: a backbone module; ``variables`` its variables.
      x: ``(B, H, W, 3)`` normalised input.
      path: Flax module path of the tap (see :func:`tap_path`).
      edit: ``edit(activation) -> new activation`` (same shape); what the rest of
        the network sees. It may ignore its argument (then XLA drops the layers
        before the tap).

    Returns:
      ``(logits, activation)``: the logits and the tap's *original* output.
    """
    seen = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__" or tuple(context.module.path) != path:
            return next_fun(*args, **kwargs)
        out = next_fun(*args, **kwargs)
        seen.append(out)
        return edit(out)

    with nn.intercept_methods(interceptor):
        logits = module.apply(variables, x)
    if len(seen) != 1:
        raise ValueError(
            f"the tap module {'/'.join(path)} was called {len(seen)} times in one forward pass; "
            "a baseline needs a tap whose module runs exactly once (pick another layer)"
        )
    return logits, seen[0]


def prepare(module, variables, x, layer, target, *, needs_layer: bool = True):
    """Checks a baseline's arguments before any compilation.

    Args:
      module, variables: the backbone and its variables.
      x: ``(B, H, W, C)`` normalised input (array-like).
      layer: torchvision node name of the tap (``None`` allowed when
        ``needs_layer`` is False).
      target: ``None`` (top-1), an int, or ``(B,)`` ints.

    Returns:
      ``(x float32 array, tap path or None, target (B,) int32 array or None)``.

    Raises:
      ValueError / TypeError: naming the bad argument and how to fix it.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 4:
        raise ValueError(
            f"x must be a 4-D NHWC batch (B, H, W, C) of normalised images, got shape {x.shape}; "
            "add a batch axis with x[None] for a single image"
        )
    path = tap_path(module, layer) if (needs_layer or layer is not None) else None
    if target is None:
        return x, path, None
    arr = np.asarray(target)
    batch = x.shape[0]
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != batch):
        raise ValueError(
            f"target must be an int or a ({batch},) array of class indices, got shape {arr.shape}"
        )
    classes = jax.eval_shape(module.apply, variables, x).shape[-1]
    if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= classes:
        raise ValueError(
            f"target must hold integer class indices in [0, {classes}), got {arr.tolist()}"
        )
    return x, path, jnp.broadcast_to(jnp.asarray(arr, jnp.int32), (batch,))


def select_target(logits: jax.Array, target) -> jax.Array:
    """``(B,)`` int32 classes: the top-1 of ``logits`` when ``target`` is None."""
    if target is None:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return target


def class_score(logits: jax.Array, target: jax.Array) -> jax.Array:
    """``(B,)`` logit of each row's target class."""
    return jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]


def activation_and_grad(module, variables, x, path, target=None):
    """Tap activation and the gradient of the target logit with respect to it.

    The gradient comes from one forward and one backward pass: a zero offset
    ``delta`` is added to the tap's output and ``d logit / d delta`` at ``delta = 0``
    is ``d logit / d activation`` (the effect of ``Module.perturb`` without editing
    the backbone).

    Returns:
      ``(logits (B, K), target (B,), activation, gradient)``; activation and gradient
      have the tap's raw shape (NHWC or ``(B, 1 + N, D)`` tokens).
    """
    act_shape = jax.eval_shape(lambda: apply_at_tap(module, variables, x, path, lambda a: a))[1]
    delta0 = jnp.zeros(act_shape.shape, act_shape.dtype)

    def forward(delta):
        return apply_at_tap(module, variables, x, path, lambda a: a + delta)

    logits, vjp_fn, act = jax.vjp(forward, delta0, has_aux=True)
    target = select_target(logits, target)
    (grad,) = vjp_fn(jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype))
    return logits, target, act, grad


def to_grid(act: jax.Array) -> jax.Array:
    """NHWC activations unchanged; ViT tokens ``(B, 1 + N, D)`` -> ``(B, sqrt N, sqrt N, D)``."""
    if act.ndim == 4:
        return act
    if act.ndim != 3:
        raise ValueError(
            f"a tap must give NHWC feature maps or (B, 1 + N, D) tokens, got shape {act.shape}"
        )
    b, n, d = act.shape
    side = math.isqrt(n - 1)
    if side * side != n - 1:
        raise ValueError(
            f"ViT tap with {n} tokens: after dropping the class token, {n - 1} patch tokens do "
            "not form a square grid"
        )
    return act[:, 1:].reshape(b, side, side, d)


def min_max(maps: jax.Array) -> jax.Array:
    """Per-map ``(m - min) / (max - min + 1e-7)`` over the last two axes (into [0, 1]).

    Clipped to [0, 1] so that XLA's reassociation of the arithmetic cannot leave
    values a rounding error outside the range.
    """
    lo = maps.min(axis=(-2, -1), keepdims=True)
    maps = maps - lo
    return jnp.clip(maps / (SCALE_EPS + maps.max(axis=(-2, -1), keepdims=True)), 0.0, 1.0)


def finish_cam(weights: jax.Array, grid: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``ReLU(sum_k w_k A^k)``, scaled, resized to ``size`` and scaled again.

    This is pytorch-grad-cam's ``BaseCAM`` pipeline for one target layer: ReLU,
    per-image min-max, ``cv2.resize`` (bilinear, half-pixel centres), then the
    min-max of ``aggregate_multi_layers``.

    Args:
      weights: ``(B, C)`` channel weights ``w_k``.
      grid: ``(B, h, w, C)`` activations ``A``.
      size: ``(H, W)`` input size.

    Returns:
      ``(B, H, W)`` maps in [0, 1].
    """
    cam = jax.nn.relu(jnp.einsum("bc,bhwc->bhw", weights, grid, precision="highest"))
    return min_max(resize(min_max(cam), size))


def chunk_indices(n_items: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Item indices ``0..n_items-1`` in rows of ``batch_size`` (last row padded).

    Returns:
      ``(index (chunks, batch_size) int32, valid (chunks, batch_size) bool)``; padded
      slots repeat the last item and are marked invalid.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    chunks = -(-n_items // batch_size)
    flat = jnp.arange(chunks * batch_size, dtype=jnp.int32)
    valid = flat < n_items
    index = jnp.minimum(flat, n_items - 1)
    return index.reshape(chunks, batch_size), valid.reshape(chunks, batch_size)


def map_items(score_fn: Callable, n_items: int, batch_size: int) -> jax.Array:
    """``score_fn`` over items ``0..n_items-1``, ``batch_size`` at a time (bounded memory).

    Args:
      score_fn: ``(idx (batch_size,) int32) -> (batch_size,)`` scores, one backbone
        pass over ``batch_size`` perturbed inputs.

    Returns:
      ``(n_items,)`` scores.
    """
    index, _ = chunk_indices(n_items, batch_size)
    return jax.lax.map(score_fn, index).reshape(-1)[:n_items]


def tap_channels(module, variables, x, layer: str) -> int:
    """Channels ``C`` (or token width ``D``) at ``layer``, from shapes only (no compute)."""
    path = tap_path(module, layer)
    shape = jax.ShapeDtypeStruct(np.shape(x), jnp.float32)
    act = jax.eval_shape(
        lambda v, xx: apply_at_tap(module, v, xx, path, lambda a: a)[1], variables, shape
    )
    return int(act.shape[-1])
