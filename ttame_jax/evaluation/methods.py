"""Explanation methods behind one call shape, for the evaluator.

Every method becomes a :class:`Method`: ``fn(x01, target) -> maps`` with ``x01``
the ``(B, S, S, 3)`` batch in [0, 1] (NHWC), ``target`` the ``(B,)`` int class to
explain and ``maps`` ``(B, S, S)`` in [0, 1], plus its forward-pass count (the FP
column of the paper's Tables 2-5) and the options that change its output (part
of the cache key).

Names: ``"ttame"`` (the trained explainer, :func:`ttame_jax.explain`) and every
key of :data:`ttame_jax.baselines.METHODS` (``gradcam``, ``gradcampp``,
``scorecam``, ``ablationcam``, ``rise``). The CAM baselines explain the backbone of
the same checkpoint at its ``cam_layer`` (VGG-16: ``features.29``, as the reference) or
else its last T-TAME tap (``model.taps[-1]``: ``layer4`` for ResNet-50,
``encoder.layers.encoder_layer_11.ln`` for ViT-B/16), unless a method's options name
another ``layer``. With ``eval.cam_backbone`` (:func:`cam_backbone`) they explain another
classifier instead, as the T-TAME reference computed its ViT rows of the CAM baselines
on DeiT-B; that classifier then also gives their target and scores their maps. Other
pipelines (e.g. the synthetic benchmark) may pass ready :class:`Method` objects instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax import xla_cpu
from ttame_jax.core.explainer import Explainer, explain
from ttame_jax.core.masking import normalize
from ttame_jax.core.model import build

TTAME = "ttame"
# The baselines that explain a layer of a backbone (eval.cam_backbone applies to them).
CAM_METHODS = ("gradcam", "gradcampp", "scorecam", "ablationcam")


@dataclasses.dataclass(frozen=True)
class Method:
    """One explanation method as the evaluator sees it.

    Attributes:
      name: the row name in reports (also the cache folder name).
      fn: ``fn(x01 (B, S, S, 3) in [0, 1], target (B,) int32) -> (B, S, S)`` maps in [0, 1].
      fp: backbone forward passes per explanation.
      options: JSON-serialisable settings that change ``fn``'s output. Name and options
        key the cache: a custom method whose output changes must change one of them.
      backbone: the classifier (an :class:`Explainer`) whose top-1 is the explained
        target and which scores the maps; ``None``: the checkpoint's. Set for the CAM
        baselines with ``eval.cam_backbone`` (then ``options["backbone"]`` names it).
    """

    name: str
    fn: Callable[[jax.Array, jax.Array], jax.Array]
    fp: int
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    backbone: Explainer | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class CamBackbone:
    """Another classifier for the CAM baselines (``eval.cam_backbone``).

    Attributes:
      explainer: its spec, variables and mean/std as an :class:`Explainer` with no
        attention (``attn_vars`` empty; only the backbone fields are read).
      key: its name and weights (JSON): part of the CAM methods' options, so of their
        cache keys.
    """

    explainer: Explainer
    key: Mapping[str, Any]


def cam_backbone(explainer: Explainer, ec, names: Sequence[str | Method]) -> CamBackbone | None:
    """The classifier that ``config.eval`` (an :class:`~ttame_jax.config.EvalConfig`) names
    in ``cam_backbone`` for the CAM baselines, loaded; ``None`` if it names none or no CAM
    baseline is among ``names``.

    Raises:
      ValueError: unknown backbone (the message lists the registered ones), or an input
        size other than the checkpoint's (the images are preprocessed for that one).
      FileNotFoundError: its weights are not found (the message says where to put them).
    """
    if ec.cam_backbone is None or not any(n in CAM_METHODS for n in names):
        return None
    from ttame_jax.backbones import get_spec, load_pretrained

    spec = get_spec(ec.cam_backbone)
    if spec.input_size != explainer.spec.input_size:
        raise ValueError(
            f"eval.cam_backbone={spec.name!r} takes {spec.input_size} px images but the "
            f"checkpoint's {explainer.spec.name} takes {explainer.spec.input_size} px; both "
            f"see the same preprocessed images: choose a backbone of the same input size"
        )
    weights = ec.cam_backbone_weights
    variables = load_pretrained(spec.name, weights)
    if weights is None:
        weights = f"cache:{spec.weights_file}"  # torch hub's folder (load_pretrained)
    elif os.path.isfile(weights):
        weights = f"{os.path.abspath(weights)}:{os.path.getsize(weights)} bytes"
    key = {"name": spec.name, "weights": weights}
    return CamBackbone(Explainer.from_model(build(spec), variables, {}), key)


def available() -> tuple[str, ...]:
    """Method names :func:`build_methods` accepts."""
    from ttame_jax.baselines import METHODS

    return (TTAME, *METHODS)


def check_names(names: Sequence[str]) -> None:
    """Raises ``ValueError`` for an unknown or repeated method name (before any work)."""
    valid = available()
    unknown = [n for n in names if isinstance(n, str) and n not in valid]
    if unknown:
        raise ValueError(
            f"unknown method(s) {', '.join(map(repr, unknown))}; valid methods: {', '.join(valid)}"
        )
    keys = [n if isinstance(n, str) else getattr(n, "name", n) for n in names]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"method(s) listed twice: {', '.join(repeated)}")
    if not keys:
        raise ValueError(f"no method to evaluate; choose from: {', '.join(valid)}")


def baseline_layer(explainer: Explainer) -> str:
    """The tap the CAM baselines explain by default: the backbone's ``cam_layer`` if it
    names one (VGG-16: ``features.29``, as the reference), else the last (deepest) T-TAME
    tap of the checkpoint."""
    return explainer.spec.cam_layer or build(explainer.spec, explainer.model_cfg).taps[-1]


def _ttame(explainer: Explainer) -> Method:
    def fn(x01, target):
        return explain(explainer, x01, target=target).maps

    return Method(TTAME, fn, fp=1)


def _baseline(
    name: str, explainer: Explainer, options: Mapping[str, Any], cam: CamBackbone | None
) -> Method:
    from ttame_jax.baselines import METHODS

    recorded, backbone = {}, None
    if cam is not None and name in CAM_METHODS:
        explainer = backbone = cam.explainer
        recorded = {"backbone": dict(cam.key)}

    method = METHODS[name]
    module = explainer.spec.builder()
    variables = explainer.backbone_vars
    kwargs = dict(options)
    layer = kwargs.pop("layer", None) or baseline_layer(explainer)
    method.check_options(name, {("key" if k == "seed" else k): v for k, v in kwargs.items()})
    if "seed" in kwargs:  # a JSON-friendly stand-in for a PRNG key (RISE)
        kwargs["key"] = jax.random.key(int(kwargs.pop("seed")))
    mean, std = explainer.mean, explainer.std

    def fn(x01, target):
        xn = normalize(jnp.asarray(x01, jnp.float32), mean, std)
        return method.fn(module, variables, xn, layer, target=target, **kwargs)

    probe = jnp.zeros((1, explainer.spec.input_size, explainer.spec.input_size, 3))
    fp = method.fp(module, variables, probe, layer, **kwargs)
    options = {**dict(options), "layer": layer, **recorded}
    return Method(name, fn, fp=int(fp), options=options, backbone=backbone)


def method_options(ec, methods: Sequence[str | Method]) -> dict[str, dict[str, Any]]:
    """Per-method options of ``config.eval`` (a :class:`ttame_jax.config.EvalConfig`),
    only for the listed methods: RISE's masks, seed and mask weights (``scores``, given
    only when not the default ``"softmax"``, so earlier caches stay valid), the CAM
    baselines' layer, the many-pass methods' chunk size."""
    names = {m for m in methods if isinstance(m, str)}
    options: dict[str, dict[str, Any]] = {}
    if "rise" in names:
        options["rise"] = {"seed": ec.rise_seed}
        if ec.rise_masks is not None:
            options["rise"]["n_masks"] = ec.rise_masks
        if ec.rise_scores != "softmax":
            options["rise"]["scores"] = ec.rise_scores
    if ec.baseline_layer:
        for name in CAM_METHODS:
            if name in names:
                options.setdefault(name, {})["layer"] = ec.baseline_layer
    if ec.chunk_size is not None:
        for name in ("scorecam", "ablationcam", "rise"):
            if name in names:
                options.setdefault(name, {})["batch_size"] = ec.chunk_size
    return options


def build_methods(
    names: Sequence[str | Method],
    explainer: Explainer,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    cam: CamBackbone | None = None,
) -> list[Method]:
    """Turns method names (or ready :class:`Method` objects) into :class:`Method` objects.

    Args:
      names: e.g. ``("ttame", "gradcam", "rise")``; :class:`Method` objects pass through.
      explainer: the trained T-TAME explainer; its backbone is what the baselines explain.
      options: per-method keyword options of the baseline functions, e.g.
        ``{"rise": {"n_masks": 4000, "seed": 0}, "scorecam": {"batch_size": 64}}``
        (``seed`` becomes RISE's ``key``; ``layer`` replaces the default tap).
      cam: the classifier the CAM baselines explain instead of the checkpoint's
        (:func:`cam_backbone`).

    Returns:
      the methods in the order given.

    Raises:
      ValueError: unknown method name, options for a method not listed, or options
        the method does not take.
    """
    options = dict(options or {})
    check_names(names)
    listed = {n if isinstance(n, str) else n.name for n in names}
    stray = sorted(set(options) - listed)
    if stray:
        raise ValueError(f"options given for method(s) not evaluated: {', '.join(stray)}")
    if options.get(TTAME):
        raise ValueError(f"method 'ttame' takes no options, got {options[TTAME]}")
    out = []
    for name in names:
        if isinstance(name, Method):
            out.append(name)
        elif name == TTAME:
            out.append(_ttame(explainer))
        else:
            out.append(_baseline(name, explainer, options.get(name, {}), cam))
    return out


def top1(explainer: Explainer, x01) -> np.ndarray:
    """``(B,)`` int32 top-1 class of the backbone on the unmasked images (the target)."""
    logits = _logits(explainer, jnp.asarray(x01, jnp.float32))
    return np.asarray(jnp.argmax(logits, axis=-1), np.int32)


@xla_cpu.jit
def _logits(explainer: Explainer, x01):
    module = explainer.spec.builder()
    return module.apply(explainer.backbone_vars, normalize(x01, explainer.mean, explainer.std))
