"""Public inference API: ``explain(params, x)`` and ``load(workdir)``.

``params`` is an :class:`Explainer`: a ``flax.struct`` dataclass whose static
fields (backbone spec, model config) live in the pytree structure and whose
arrays (backbone and attention variables, mean/std) are leaves, so
``jax.jit(explain)(params, x)`` works and retraces only for a new model.

Inference (paper §III-D): one backbone pass; the attention mechanism (BatchNorm
running statistics) gives the pre-sigmoid ``c``; each requested class map is
min-max scaled at feature resolution, ``(c - min) / (max - min + 1e-10)``, then
resized bilinearly (half-pixel centres) to the input size. Only the requested
classes' fusion channels are computed, so the top-1 map costs little more than
the backbone forward itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ttame_jax import xla_cpu
from ttame_jax.backbones.registry import BackboneSpec, get_spec
from ttame_jax.config import ModelConfig
from ttame_jax.core.masking import normalize
from ttame_jax.core.model import build
from ttame_jax.core.resize import resize_bilinear


@struct.dataclass
class Explanation:
    """Result of :func:`explain`.

    Attributes:
      maps: ``(B, H, W)`` for one class per image, ``(B, k, H, W)`` for ``classes``
        or ``(B, K, H, W)`` for ``all_classes``; values in [0, 1] at input resolution.
      logits: ``(B, K)`` backbone logits of the unmasked images.
      target: the class of each map: ``(B,)``, ``(B, k)`` or ``(B, K)`` (= arange(K)).
    """

    maps: jax.Array
    logits: jax.Array
    target: jax.Array


@struct.dataclass
class Explainer:
    """Everything a trained T-TAME explainer needs (the ``params`` of :func:`explain`)."""

    spec: BackboneSpec = struct.field(pytree_node=False)
    model_cfg: ModelConfig = struct.field(pytree_node=False)
    backbone_vars: dict
    attn_vars: dict
    mean: jax.Array
    std: jax.Array

    @property
    def backbone_name(self) -> str:
        return self.spec.name

    @classmethod
    def from_model(cls, model, backbone_vars, attn_vars) -> Explainer:
        """From a :class:`~ttame_jax.core.model.TTAME` and its variables."""
        return cls(
            spec=model.spec,
            model_cfg=model.cfg,
            backbone_vars=backbone_vars,
            attn_vars=attn_vars,
            mean=jnp.asarray(model.spec.mean, jnp.float32),
            std=jnp.asarray(model.spec.std, jnp.float32),
        )

    @classmethod
    def from_config(cls, config, backbone_vars, attn_vars) -> Explainer:
        """From a training :class:`~ttame_jax.config.Config` (its backbone and model)."""
        return cls.from_model(
            build(get_spec(config.backbone.name), config.model), backbone_vars, attn_vars
        )

    def explain(self, x, target=None, classes=None, all_classes: bool = False) -> Explanation:
        """Same as ``explain(self, x, ...)``."""
        return explain(self, x, target=target, classes=classes, all_classes=all_classes)


def _is_concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


def _check_inputs(params, x, target, classes, all_classes) -> None:
    if not isinstance(params, Explainer):
        raise TypeError(
            f"explain() needs an Explainer as params (from ttame_jax.load(workdir) or "
            f"Explainer.from_config), got {type(params).__name__}"
        )
    size = params.spec.input_size
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1:3] != (size, size):
        if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
            hint = " (looks like NCHW: use x.transpose(0, 2, 3, 1))"
        elif len(shape) == 4 and shape[-1] == 3:
            hint = (
                f" (NHWC of another size: resize and centre-crop to {size} x {size}, e.g. "
                f"with ttame_jax.data.preprocess.eval_transform)"
            )
        else:
            hint = "; add a batch axis with x[None] for one image" if len(shape) == 3 else ""
        raise ValueError(
            f"explain expects images (B, {size}, {size}, 3) NHWC for {params.spec.name}, got "
            f"shape {shape}{hint}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"explain expects float images in [0, 1], got dtype {x.dtype}; "
            f"use x.astype(np.float32) / 255 for uint8 images"
        )
    if _is_concrete(x) and x.size:
        lo, hi = float(jnp.min(x)), float(jnp.max(x))
        if np.isnan(lo) or np.isnan(hi):  # min/max propagate NaN; inf fails the range below
            bad = np.flatnonzero(np.isnan(np.asarray(x)).any(axis=(1, 2, 3)))
            raise ValueError(
                f"explain got NaN pixel values in image(s) {bad[:10].tolist()} of the batch; "
                f"the maps and the top class of such an image would be meaningless"
            )
        if hi > 1.01:  # a little slack for resampling round-off
            raise ValueError(
                f"explain expects images in [0, 1] (it normalises them itself), got max {hi:.3g}; "
                f"for 0-255 images divide by 255"
            )
        if lo < -0.01:
            raise ValueError(
                f"explain expects images in [0, 1], got min {lo:.3g}; do not normalise the "
                f"images with mean/std beforehand, explain does that"
            )
    chosen = sum([target is not None, classes is not None, bool(all_classes)])
    if chosen > 1:
        raise ValueError("pass at most one of target=, classes= and all_classes=True")
    k = params.spec.num_classes
    for name, arr, ndim in (("target", target, 1), ("classes", classes, 2)):
        if arr is None:
            continue
        arr_shape = tuple(np.shape(arr))
        if len(arr_shape) != ndim or arr_shape[0] != shape[0]:
            want = "(B,)" if ndim == 1 else "(B, k)"
            raise ValueError(f"{name} must have shape {want} with B = {shape[0]}, got {arr_shape}")
        if _is_concrete(arr) and np.size(arr):
            a = np.asarray(arr)
            if not np.issubdtype(a.dtype, np.integer):
                raise TypeError(f"{name} must hold integer class indices, got dtype {a.dtype}")
            bad = a[(a < 0) | (a >= k)]
            if bad.size:
                raise ValueError(
                    f"{name} must hold class indices in [0, {k}), got {bad[:5].tolist()}"
                )


def _minmax(c: jnp.ndarray) -> jnp.ndarray:
    """Per-map min-max over the two spatial axes of ``(B, H_e, W_e, k)``."""
    lo = jnp.min(c, axis=(1, 2), keepdims=True)
    hi = jnp.max(c, axis=(1, 2), keepdims=True)
    return (c - lo) / (hi - lo + 1e-10)


@xla_cpu.jit(static_argnames=("all_classes",))
def _explain(params: Explainer, x, target, classes, all_classes: bool) -> Explanation:
    model = build(params.spec, params.model_cfg)
    logits, feats = model.features(params.backbone_vars, normalize(x, params.mean, params.std))
    b = x.shape[0]
    if all_classes:
        c = model.attention.apply(params.attn_vars, feats)
        target = jnp.broadcast_to(jnp.arange(c.shape[-1]), (b, c.shape[-1]))
    else:
        if classes is None:
            target = jnp.argmax(logits, axis=-1) if target is None else jnp.asarray(target)
            classes = target[:, None]
        else:
            target = jnp.asarray(classes)
        c = model.attention.apply(params.attn_vars, feats, classes=jnp.asarray(classes))
    maps = jnp.moveaxis(_minmax(c), -1, 1)  # (B, k, H_e, W_e)
    maps = resize_bilinear(maps, x.shape[1:3], axes=(2, 3))
    if not all_classes and target.ndim == 1:
        maps = maps[:, 0]
    return Explanation(maps=maps, logits=logits, target=target)


def explain(params: Explainer, x, target=None, classes=None, all_classes: bool = False):
    """Explanation maps of a trained T-TAME model (pure; usable under ``jax.jit``).

    Args:
      params: an :class:`Explainer` (see :func:`load`).
      x: ``(B, S, S, 3)`` images in [0, 1], NHWC, at the backbone's input size;
        normalised here with the backbone's mean/std.
      target: optional int ``(B,)`` class per image; default the backbone's top-1.
      classes: optional int ``(B, k)``: k classes per image (counterfactual maps).
      all_classes: maps for all K classes (``(B, K, S, S)``; large for K = 1000).

    Returns:
      :class:`Explanation` with ``maps`` in [0, 1] at ``(S, S)``, ``logits`` and ``target``.
    """
    _check_inputs(params, x, target, classes, all_classes)
    return _explain(params, x, target, classes, bool(all_classes))


def load_run(workdir, step: int | None = None):
    """``(explainer, config, workdir, step)`` of a training run: :func:`load` that also
    says which run directory and which checkpoint step it read (the CLI and the
    evaluator report them).

    Raises:
      as :func:`load`.
    """
    from ttame_jax import rundir
    from ttame_jax.backbones import load_pretrained

    workdir = rundir.find(workdir)
    config = rundir.read_config(workdir)
    step, attn_vars = rundir.load_attention(workdir, step)
    bb = config.backbone
    backbone_vars = load_pretrained(bb.name, bb.weights, seed=bb.seed)
    return Explainer.from_config(config, backbone_vars, attn_vars), config, workdir, step


def load(workdir, step: int | None = None) -> Explainer:
    """Loads a trained explainer from a training workdir.

    Args:
      workdir: the ``--workdir`` of ``train.py``, or any path inside it (e.g. its
        ``checkpoints/`` folder).
      step: checkpoint step; default the newest one that restores (a damaged newer
        step is skipped with a warning naming it).

    Returns:
      an :class:`Explainer`: backbone variables from ``config.backbone`` (via
      ``ttame_jax.backbones.load_pretrained``) and the attention variables of the checkpoint.

    Raises:
      FileNotFoundError: not a workdir, or no checkpoint in it.
      ValueError: ``step`` was not saved; :class:`ttame_jax.rundir.CheckpointError` if no
        candidate checkpoint restores (each step tried is named).
    """
    return load_run(workdir, step)[0]
