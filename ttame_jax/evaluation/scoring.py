"""Per-image metric terms of one batch, and their means (the reported numbers).

The metric functions live in :mod:`ttame_jax.metrics` (formulas: docs/metrics.md);
this module runs them, jitted together, with the backbone of the checkpoint, and turns
the per-image arrays of every batch into the reported numbers. Cached per image:

=====================  =======  ===================================================
array                  shape    per image
=====================  =======  ===================================================
``confidence``         (B,)     Y, target softmax probability on the image
``masked_confidence``  (B, 3)   O at 100 / 50 / 15 % kept pixels
``drop``               (B, 3)   max(0, Y - O) / Y   (AD = 100 · mean)
``increase``           (B, 3)   [O > Y]             (IC = 100 · mean)
``morf_correct``       (B, 7)   [top-1 of the imputed image = target], MoRF
``morf_prob``          (B, 7)   target softmax probability, MoRF
``lerf_correct``       (B, 7)   same for LeRF (least relevant removed first)
``lerf_prob``          (B, 7)
``insertion_auc``      (B,)     insertion AUC in [0, 1] (with ``insertion_deletion``)
``deletion_auc``       (B,)     deletion AUC in [0, 1]
=====================  =======  ===================================================

ROAD levels are the removed fractions 10, 20, 30, 40, 50, 70, 90 %; the paper's
Tables 4-5 average the accuracy over the seven levels (grad-cam compat).

Two protocol settings may differ per method or backbone (docs/evaluation.md, "Protocol
settings"): where ROAD imputes (``road_space_ttame`` / ``road_space_baselines``:
normalised input or [0, 1] pixels; :meth:`Context.for_method` picks a method's) and where
AD/IC masks (``adic_masking``: ``"pixel"`` = normalise(mask * x) for every backbone, or
``"backbone"`` = T-TAME's masking rule, i.e. mask * normalise(x) on a ViT). Both enter
:meth:`Context.key` (the cache key) whenever they change the numbers.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np

from ttame_jax import metrics, xla_cpu
from ttame_jax.core.masking import masking_rule
from ttame_jax.evaluation.methods import TTAME  # its ROAD space is road_space_ttame
from ttame_jax.metrics.road import imputation_space

ADIC_KEPT = metrics.AD_IC_KEPT  # kept fractions of AD/IC (paper: 100 %, 50 %, 15 %)
ROAD_REMOVED = metrics.ROAD_LEVELS  # removed fractions of ROAD
COMPATS = ("grad-cam", "road")
ROAD_NOISE_SEED = 0  # ROAD imputation noise: key = fold_in(key(seed), first image index)
ADIC_MASKING = ("pixel", "backbone")
_ADIC_KEYS = ("confidence", "masked_confidence", "drop", "increase")


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
      module, variables: the backbone (normalised NHWC input -> logits) and its variables.
      mean, std: the backbone's per-channel normalisation.
      road_compat: ``"grad-cam"`` or ``"road"``.
      insertion_deletion: also compute insertion/deletion AUC.
      insertion_deletion_steps: curve steps of insertion/deletion (RISE: H W / 224
        pixels per step, i.e. 224 steps at 224 px).
      road_space_ttame, road_space_baselines: where ROAD imputes for T-TAME / for every
        other method: ``"normalised"``, ``"pixel"`` or ``None`` (``road_compat``'s own).
      adic_space: where AD/IC multiplies the mask, resolved: ``"pixel"`` or
        ``"normalised"``.
      method: the method this context scores (:meth:`for_method`); ``None`` = not chosen.
    """

    module: nn.Module
    variables: dict
    mean: tuple[float, ...]
    std: tuple[float, ...]
    road_compat: str = "grad-cam"
    insertion_deletion: bool = False
    insertion_deletion_steps: int = 100
    road_space_ttame: str | None = None
    road_space_baselines: str | None = None
    adic_space: str = "pixel"
    method: str | None = None

    @classmethod
    def create(
        cls,
        explainer,
        road_compat="grad-cam",
        insertion_deletion=False,
        insertion_deletion_steps=100,
        *,
        road_space_ttame=None,
        road_space_baselines=None,
        adic_masking="pixel",
    ) -> Context:
        """The context of ``explainer``'s backbone.

        ``road_space_*``: ``"normalised"``, ``"pixel"`` or ``None`` (``road_compat``'s own);
        ``adic_masking``: ``"pixel"`` or ``"backbone"`` (the explainer's masking rule:
        ``config.model.masking``, ``"auto"`` = by backbone kind).
        """
        check_compat(road_compat)
        if insertion_deletion and int(insertion_deletion_steps) < 1:
            raise ValueError(
                f"insertion_deletion_steps must be >= 1, got {insertion_deletion_steps}"
            )
        if adic_masking not in ADIC_MASKING:
            raise ValueError(f"adic_masking must be one of {ADIC_MASKING}, got {adic_masking!r}")
        adic_space = "pixel"
        if adic_masking == "backbone":
            rule = masking_rule(explainer.model_cfg.masking, explainer.spec.kind)
            adic_space = "pixel" if rule == "cnn" else "normalised"
        return cls(
            explainer.spec.builder(),
            explainer.backbone_vars,
            tuple(float(v) for v in np.asarray(explainer.mean)),
            tuple(float(v) for v in np.asarray(explainer.std)),
            road_compat,
            bool(insertion_deletion),
            int(insertion_deletion_steps),
            imputation_space(road_compat, road_space_ttame),  # checks, resolves
            imputation_space(road_compat, road_space_baselines),
            adic_space,
        )

    @classmethod
    def from_eval(cls, explainer, ec) -> Context:
        """The context of ``config.eval`` (a :class:`ttame_jax.config.EvalConfig`)."""
        return cls.create(
            explainer,
            ec.road_compat,
            ec.insertion_deletion,
            ec.insertion_deletion_steps,
            road_space_ttame=ec.road_space_ttame,
            road_space_baselines=ec.road_space_baselines,
            adic_masking=ec.adic_masking,
        )

    def for_method(self, name: str) -> Context:
        """This context for scoring method ``name`` (its ROAD space; its cache key)."""
        return dataclasses.replace(self, method=name)

    def _space(self, who: str) -> str:
        return imputation_space(self.road_compat, getattr(self, f"road_space_{who}"))

    def road_space(self) -> str:
        """Where ROAD imputes for :attr:`method` (``"normalised"`` or ``"pixel"``)."""
        if self.method is None:
            if self._space("ttame") != self._space("baselines"):
                raise ValueError(
                    "T-TAME and the baselines impute ROAD in different spaces; score with "
                    "ctx.for_method(name)"
                )
            return self._space("ttame")
        return self._space("ttame" if self.method == TTAME else "baselines")

    def key(self) -> dict:
        """The settings that change the numbers (part of the cache key).

        A protocol setting at its default (ROAD space = the compat mode's own, AD/IC
        masking in pixel space) is left out, so caches of earlier versions stay valid; a
        method's context (:meth:`for_method`) holds only its own ROAD space.
        """
        out = {
            "adic_kept": ADIC_KEPT,
            "road_removed": ROAD_REMOVED,
            "road_compat": self.road_compat,
            "road_noise_seed": ROAD_NOISE_SEED,
            "insertion_deletion": self.insertion_deletion,
            "insertion_deletion_steps": self.insertion_deletion_steps,
        }
        if self.adic_space != "pixel":
            out["adic_space"] = self.adic_space
        own = imputation_space(self.road_compat)
        if self.method is None:
            for who in ("ttame", "baselines"):
                if self._space(who) != own:
                    out[f"road_space_{who}"] = self._space(who)
        elif self.road_space() != own:
            out["road_space"] = self.road_space()
        return out


@functools.partial(
    xla_cpu.jit,
    static_argnames=("module", "mean", "std", "compat", "insdel", "road_space", "adic_space"),
)
def _metrics(
    module, variables, x01, maps, target, key, *, mean, std, compat, insdel, road_space,
    adic_space,
):  # fmt: skip
    # The variables are an argument of the jitted function, not constants baked into it.
    def apply_fn(xn):
        return module.apply(variables, xn)

    out = metrics.ad_ic(
        apply_fn, x01, maps, target, mean=mean, std=std, kept=ADIC_KEPT, space=adic_space
    )
    out = {k: out[k] for k in _ADIC_KEYS}
    road = metrics.road(
        apply_fn, x01, maps, target, key, mean=mean, std=std, levels=ROAD_REMOVED,
        compat=compat, space=road_space,
    )  # fmt: skip
    out.update({k: v for k, v in road.items() if k != "target"})
    if insdel:
        auc = metrics.insertion_deletion(
            apply_fn, x01, maps, target, mean=mean, std=std, steps=insdel
        )
        out.update(insertion_auc=auc["insertion_auc"], deletion_auc=auc["deletion_auc"])
    return out


def score_batch(ctx: Context, x01, maps, target, index) -> dict[str, np.ndarray]:
    """Per-image metric arrays (table in the module docstring) of one batch.

    Args:
      ctx: from :meth:`Context.create`, for the scored method (:meth:`Context.for_method`).
      x01: ``(B, S, S, 3)`` images in [0, 1].
      maps: ``(B, S, S)`` explanation maps in [0, 1].
      target: ``(B,)`` int, the explained class (the backbone's top-1).
      index: ``(B,)`` example indices (seed the ROAD noise, so reruns agree).
    """
    key = jax.random.fold_in(jax.random.key(ROAD_NOISE_SEED), int(np.asarray(index)[0]))
    out = _metrics(
        ctx.module, ctx.variables, np.asarray(x01, np.float32), np.asarray(maps, np.float32),
        np.asarray(target, np.int32), key, mean=ctx.mean, std=ctx.std,
        compat=ctx.road_compat,
        insdel=ctx.insertion_deletion_steps if ctx.insertion_deletion else 0,
        road_space=ctx.road_space(), adic_space=ctx.adic_space,
    )  # fmt: skip
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def summarise(rows: Sequence[Mapping[str, np.ndarray]]) -> dict:
    """The reported numbers of one method from its cached per-batch arrays.

    Means over all images (via :func:`ttame_jax.metrics.ad_ic_summary` and
    :func:`~ttame_jax.metrics.road_summary`), so they do not depend on the batch size.

    Returns:
      ``{"ad": {"100": .., "50": .., "15": ..}, "ic": {..}, "road": {"morf": {"accuracy":
      {"10": .., ..., "90": ..}, "accuracy_avg": .., "probability": {..},
      "probability_avg": ..}, "lerf": {..}}, "insertion_auc", "deletion_auc" (if
      computed), "extra": {name: mean}, "num_images", "seconds_per_image"}``; AD, IC
      and ROAD in percent.
    """
    cat = {k: np.concatenate([np.atleast_1d(r[k]) for r in rows]) for k in rows[0]}
    n = len(cat["target"])
    adic = metrics.ad_ic_summary(cat, ADIC_KEPT)
    road = metrics.road_summary(cat, ROAD_REMOVED)
    out = {
        "num_images": n,
        "seconds_per_image": float(np.sum(cat["seconds"]) / n),
        "ad": {k.rstrip("%"): v for k, v in adic["AD"].items()},
        "ic": {k.rstrip("%"): v for k, v in adic["IC"].items()},
        "road": {},
    }
    for order, numbers in road.items():
        out["road"][order] = {
            "accuracy": {k.rstrip("%"): v for k, v in numbers["accuracy"].items()},
            "accuracy_avg": numbers["accuracy_mean"],
            "probability": {k.rstrip("%"): v for k, v in numbers["prob"].items()},
            "probability_avg": numbers["prob_mean"],
        }
    for name in ("insertion_auc", "deletion_auc"):
        if name in cat:
            out[name] = float(cat[name].mean())
    out["extra"] = {
        k.removeprefix("extra."): float(np.nanmean(v)) if np.any(~np.isnan(v)) else None
        for k, v in cat.items()
        if k.startswith("extra.")
    }
    return out
