"""Per-image metric terms of one batch, and their means (the reported numbers).

The metric functions themselves live in :mod:`ttame_jax.metrics`; this module
calls them with the backbone of the checkpoint and turns their outputs into
per-image arrays whose mean over the test images *is* the reported number:

=================  =========  =======================================================
array              shape      per image (mean over images = reported value)
=================  =========  =======================================================
``ad``             (B, 3)     100 · max(0, Y − O) / Y at 100 / 50 / 15 % kept
``ic``             (B, 3)     100 · [O > Y] at 100 / 50 / 15 % kept
``morf_acc``       (B, 7)     100 · [top-1 of the imputed image = target], MoRF
``morf_prob``      (B, 7)     100 · softmax target probability, MoRF
``lerf_acc``       (B, 7)     same for LeRF (least relevant removed first)
``lerf_prob``      (B, 7)
``insertion``      (B,)       insertion AUC in [0, 1] (with ``insertion_deletion``)
``deletion``       (B,)       deletion AUC in [0, 1]
=================  =========  =======================================================

ROAD levels are the removed fractions 10, 20, 30, 40, 50, 70, 90 %; the paper's
Tables 4-5 average the accuracy over the seven levels (grad-cam compat).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax import metrics

ADIC_KEPT = (1.0, 0.5, 0.15)  # kept fractions of AD/IC (paper: 100 %, 50 %, 15 %)
ROAD_REMOVED = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)  # removed fractions of ROAD
COMPATS = ("grad-cam", "road")
ROAD_NOISE_SEED = 0  # ROAD imputation noise: key = fold_in(key(seed), first image index)


def check_compat(compat: str) -> None:
    if compat not in COMPATS:
        raise ValueError(f"road_compat must be one of {COMPATS}, got {compat!r}")


def percent_label(fraction: float) -> str:
    """``0.15 -> "15"``: the JSON key of a level."""
    return f"{round(fraction * 100):d}"


@dataclasses.dataclass(frozen=True)
class Context:
    """The backbone and settings every batch is scored with.

    Attributes:
      apply_fn: jitted ``x_normalised (B, S, S, 3) -> logits (B, K)``.
      mean, std: the backbone's per-channel normalisation, ``(3,)``.
      road_compat: ``"grad-cam"`` or ``"road"``.
      insertion_deletion: also compute insertion/deletion AUC.
    """

    apply_fn: Callable[[jax.Array], jax.Array]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    road_compat: str = "grad-cam"
    insertion_deletion: bool = False

    @classmethod
    def create(cls, explainer, road_compat="grad-cam", insertion_deletion=False) -> Context:
        # Variables as an argument (not closed over): no weights baked into the program.
        apply_fn = functools.partial(_apply, explainer.spec.builder(), explainer.backbone_vars)
        return cls(
            apply_fn,
            tuple(float(v) for v in np.asarray(explainer.mean)),
            tuple(float(v) for v in np.asarray(explainer.std)),
            road_compat,
            bool(insertion_deletion),
        )

    def key(self) -> dict:
        """The settings that change the numbers (part of the cache key)."""
        return {
            "adic_kept": ADIC_KEPT,
            "road_removed": ROAD_REMOVED,
            "road_compat": self.road_compat,
            "road_noise_seed": ROAD_NOISE_SEED,
            "insertion_deletion": self.insertion_deletion,
        }


@functools.partial(jax.jit, static_argnums=0)
def _apply(module, variables, xn):
    return module.apply(variables, xn)


def score_batch(ctx: Context, x01, maps, target, index) -> dict[str, np.ndarray]:
    """Per-image metric terms (table in the module docstring) of one batch.

    Args:
      ctx: from :meth:`Context.create`.
      x01: ``(B, S, S, 3)`` images in [0, 1].
      maps: ``(B, S, S)`` explanation maps in [0, 1].
      target: ``(B,)`` int, the explained class (the backbone's top-1).
      index: ``(B,)`` example indices (seed the ROAD noise, so reruns agree).
    """
    x01, maps = jnp.asarray(x01, jnp.float32), jnp.asarray(maps, jnp.float32)
    target = jnp.asarray(target, jnp.int32)
    mean, std = jnp.asarray(ctx.mean), jnp.asarray(ctx.std)
    out = {}
    adic = metrics.ad_ic(ctx.apply_fn, x01, maps, target, mean=mean, std=std, kept=ADIC_KEPT)
    out["ad"], out["ic"] = np.asarray(adic["ad"]), np.asarray(adic["ic"])
    key = jax.random.fold_in(jax.random.key(ROAD_NOISE_SEED), int(np.asarray(index)[0]))
    for order in ("morf", "lerf"):
        road = metrics.road(
            ctx.apply_fn, x01, maps, target, mean=mean, std=std, key=key,
            removed=ROAD_REMOVED, order=order, compat=ctx.road_compat,
        )  # fmt: skip
        out[f"{order}_acc"] = 100.0 * np.asarray(road["accuracy"], np.float64)
        out[f"{order}_prob"] = 100.0 * np.asarray(road["probability"], np.float64)
    if ctx.insertion_deletion:
        auc = metrics.insertion_deletion(ctx.apply_fn, x01, maps, target, mean=mean, std=std)
        out["insertion"], out["deletion"] = auc["insertion"], auc["deletion"]
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _levels(values: np.ndarray, fractions: Sequence[float]) -> dict[str, float]:
    return {percent_label(f): float(v) for f, v in zip(fractions, values, strict=True)}


def summarise(rows: Sequence[Mapping[str, np.ndarray]]) -> dict:
    """Means over all images of the cached per-batch arrays of one method.

    Returns:
      ``{"ad": {"100": .., "50": .., "15": ..}, "ic": {..}, "road": {"morf": {"accuracy":
      {"10": .., ..., "90": ..}, "accuracy_avg": .., "probability": {..},
      "probability_avg": ..}, "lerf": {..}}, "insertion_auc", "deletion_auc" (if
      computed), "extra": {name: mean}, "num_images", "seconds_per_image"}``.
    """
    cat = {k: np.concatenate([np.atleast_1d(r[k]) for r in rows]) for k in rows[0]}
    n = len(cat["target"])
    out = {
        "num_images": n,
        "seconds_per_image": float(np.sum(cat["seconds"]) / n),
        "ad": _levels(cat["ad"].mean(axis=0), ADIC_KEPT),
        "ic": _levels(cat["ic"].mean(axis=0), ADIC_KEPT),
        "road": {},
    }
    for order in ("morf", "lerf"):
        curves = {}
        for name, column in (("accuracy", "acc"), ("probability", "prob")):
            per_level = cat[f"{order}_{column}"].mean(axis=0)
            curves[name] = _levels(per_level, ROAD_REMOVED)
            curves[f"{name}_avg"] = float(per_level.mean())
        out["road"][order] = curves
    for name in ("insertion", "deletion"):
        if name in cat:
            out[f"{name}_auc"] = float(cat[name].mean())
    out["extra"] = {
        k.removeprefix("extra."): float(np.nanmean(v)) if np.any(~np.isnan(v)) else None
        for k, v in cat.items()
        if k.startswith("extra.")
    }
    return out
