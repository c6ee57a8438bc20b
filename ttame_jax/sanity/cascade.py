"""Cascading model-parameter randomisation (Adebayo et al., 2018; T-TAME paper Fig. 17).

Two cascades, each compared with the trained explainer's original map:

- ``backbone``: the backbone's units are re-initialised one by one, from the logits layer
  towards the input, in the order the forward pass calls them; after step t the last t
  units are random. A unit is a torchvision block (``layer3.1``, ``encoder_layer_11``,
  ``features.28``: the path is cut at its first numbered name) or else one layer
  (``conv1``, ``fc``). The attention mechanism keeps its trained weights.
- ``attention``: the same for the attention mechanism (fusion first, then the branches),
  with the trained backbone.

The explained class is fixed to the original top-1 class (the randomised model's
prediction is irrelevant). A map that stays similar (Spearman, SSIM) while the weights
it claims to explain are destroyed would fail the check. For T-TAME the maps do not
depend on backbone layers after the last tap, so the first backbone steps (``fc``...)
keep similarity 1 by construction.
"""

from __future__ import annotations

import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax.core.explainer import Explainer, explain
from ttame_jax.core.masking import normalize
from ttame_jax.core.model import build
from ttame_jax.sanity.similarity import spearman, ssim

_NUMBERED = re.compile(r"\d+|.+_\d+")
PARTS = ("backbone", "attention")


@dataclasses.dataclass
class SanityResult:
    """Per-step maps and similarities.

    Attributes:
      steps: T step names, ``"<part>/<unit>"``; step t randomises this unit and all before it
        of the same part.
      maps: ``(N, 1 + T, H, W)``: original map, then the map after each step.
      spearman: ``(N, T)`` Spearman rank correlation with the original map.
      ssim: ``(N, T)`` SSIM with the original map.
      target: ``(N,)`` the explained class (original top-1).
    """

    steps: list[str]
    maps: np.ndarray
    spearman: np.ndarray
    ssim: np.ndarray
    target: np.ndarray


def call_order(fn, *args) -> list[tuple[str, ...]]:
    """Paths of the Flax modules ``fn(*args)`` calls, in call order (traced, not run)."""
    order: list[tuple[str, ...]] = []

    def record(next_fun, args_, kwargs, context):
        if context.method_name == "__call__" and context.module.path not in order:
            order.append(tuple(context.module.path))
        return next_fun(*args_, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(fn, *args)
    return order


def _leaf_paths(tree, prefix=()) -> list[tuple[str, ...]]:
    out = []
    for key, value in tree.items():
        path = (*prefix, str(key))
        out.extend(_leaf_paths(value, path) if isinstance(value, dict) else [path])
    return out


def _unit(path: tuple[str, ...], tree) -> tuple[str, ...]:
    for i, name in enumerate(path[:-1]):
        if _NUMBERED.fullmatch(name):
            return path[: i + 1]
    owner = tree
    for name in path[:-1]:
        owner = owner[name]
    has_submodules = any(isinstance(v, dict) for v in owner.values())
    return path if has_submodules or len(path) == 1 else path[:-1]  # a loose array: own unit


def units(params, order: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Randomisation units of a params tree, sorted by the forward pass's call ``order``."""

    def position(unit):
        inside = [i for i, p in enumerate(order) if p[: len(unit)] == unit]
        if inside:
            return min(inside)
        for k in range(len(unit) - 1, -1, -1):  # a loose array: where its owner is called
            if unit[:k] in order:
                return order.index(unit[:k])
        return len(order)

    found = list(dict.fromkeys(_unit(p, params) for p in _leaf_paths(params)))
    return sorted(found, key=position)


def _swap(tree, other, unit):
    if len(unit) == 1:
        return {**tree, unit[0]: other[unit[0]]}
    return {**tree, unit[0]: _swap(tree[unit[0]], other[unit[0]], unit[1:])}


def _cascade(variables, random_vars, unit_list):
    """Yields (unit, variables with this and all earlier units' params random)."""
    params = variables["params"]
    for unit in unit_list:
        params = _swap(params, random_vars["params"], unit)
        yield unit, {**variables, "params": params}


def cascading_randomization(
    explainer: Explainer, images, *, seed: int = 0, parts=PARTS
) -> SanityResult:
    """Runs the cascades on ``images`` ``(N, S, S, 3)`` in [0, 1].

    Args:
      explainer: a trained :class:`~ttame_jax.core.explainer.Explainer`.
      images: preprocessed images at the backbone's input size.
      seed: seed of the random re-initialisation.
      parts: which cascades to run, a subset of ``("backbone", "attention")`` in that order.

    Returns:
      a :class:`SanityResult`.
    """
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {tuple(parts)}")
    x = jnp.asarray(images, jnp.float32)
    model = build(explainer.spec, explainer.model_cfg)
    # Logits via the same compiled function as the cascade's maps (target = class 0 first).
    logits = explain(explainer, x, target=np.zeros(x.shape[0], np.int32)).logits
    target = jnp.argmax(logits, axis=-1)
    maps = [np.asarray(explain(explainer, x, target=target).maps)]
    steps: list[str] = []
    key_b, key_a = jax.random.split(jax.random.key(seed))
    xn = normalize(x[:1], explainer.mean, explainer.std)
    for part in parts:
        field = "backbone_vars" if part == "backbone" else "attn_vars"
        if part == "backbone":
            variables = explainer.backbone_vars
            random_vars = jax.jit(model.backbone.init)(key_b, xn)
            order = call_order(lambda v: model.backbone.apply(v, xn), variables)
        else:
            variables = explainer.attn_vars
            random_vars = jax.jit(model.init)(key_a, explainer.backbone_vars, x[:1])
            feats = jax.eval_shape(lambda v: model.features(v, xn)[1], explainer.backbone_vars)
            feats = [jnp.zeros(f.shape, f.dtype) for f in feats]
            order = call_order(
                lambda v, f: model.attention.apply(v, f, train=False), variables, feats
            )
        unit_list = units(variables["params"], order)[::-1]  # output side first
        for unit, randomised in _cascade(variables, random_vars, unit_list):
            params = explainer.replace(**{field: randomised})
            maps.append(np.asarray(explain(params, x, target=target).maps))
            steps.append(f"{part}/{'.'.join(unit)}")
    maps = np.stack(maps, axis=1)
    n, t = maps.shape[0], len(steps)
    rho = np.array([[spearman(maps[i, 0], maps[i, j + 1]) for j in range(t)] for i in range(n)])
    sim = np.array([[ssim(maps[i, 0], maps[i, j + 1]) for j in range(t)] for i in range(n)])
    return SanityResult(steps, maps, rho.reshape(n, t), sim.reshape(n, t), np.asarray(target))
