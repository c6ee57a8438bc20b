"""ROAD (Rong et al., ICML 2022): remove pixels by relevance, impute, re-classify.

For each removed fraction (10, 20, 30, 40, 50, 70, 90 %) and order -- MoRF removes the most
relevant pixels first (lower is better), LeRF the least relevant (higher is better) -- the
removed pixels are filled by :func:`~ttame_jax.metrics.imputation.noisy_linear_impute` and
the backbone re-classifies. Per image and level we return whether the top-1 class still
equals the target (the paper's score, Eqs. (22)-(23) as computed by the reference code) and
the softmax probability of the target.

``compat="grad-cam"`` (default; what the paper's numbers come from): pytorch-grad-cam's
``ROADMostRelevantFirst(percentile=100 - removed%)`` / ``ROADLeastRelevantFirst``: strict
``<`` percentile threshold (:func:`~ttame_jax.metrics.thresholds.percentile_keep`),
imputation (noise sigma = 0.01) in the *normalised* input space.
``compat="road"``: the ROAD authors' code: exactly ``int(H W r)`` pixels by rank with a
``1e-4`` Gaussian tie-breaking jitter, imputation in [0, 1] pixel space, then normalise.

``space`` overrides where the imputation (and its noise) happens, independently of the
pixel selection: ``"normalised"`` imputes the normalised input; ``"pixel"`` imputes the
[0, 1] image and then normalises (noise sigma in pixel units). ``None`` (default) keeps
the compat mode's own space. The T-TAME reference scored T-TAME on the CNNs with the
grad-cam selection but pixel-space imputation (docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax.core.masking import normalize
from ttame_jax.metrics.common import (
    ApplyFn,
    check_inputs,
    resolve_target,
    target_scores,
)
from ttame_jax.metrics.imputation import noisy_linear_impute
from ttame_jax.metrics.thresholds import LERF, MORF, percentile_keep, rank_keep

ROAD_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)  # removed fractions (paper Figs. 9-14)
COMPAT = ("grad-cam", "road")
SPACES = ("normalised", "pixel")  # where ROAD imputes (and adds its noise)
_COMPAT_SPACE = {"grad-cam": "normalised", "road": "pixel"}


def imputation_space(compat: str, space: str | None = None) -> str:
    """Where ROAD imputes: ``space``, or (``None``) the compat mode's own space."""
    if compat not in COMPAT:
        raise ValueError(f"compat must be one of {COMPAT}, got {compat!r}")
    if space is None:
        return _COMPAT_SPACE[compat]
    if space not in SPACES:
        raise ValueError(f"ROAD imputation space must be one of {SPACES} or None, got {space!r}")
    return space


def road(
    apply_fn: ApplyFn,
    images: jnp.ndarray,
    maps: jnp.ndarray,
    target: jnp.ndarray | None,
    key: jax.Array,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    levels: Sequence[float] = ROAD_LEVELS,
    orders: Sequence[str] = (MORF, LERF),
    compat: str = "grad-cam",
    space: str | None = None,
    noise: float = 0.01,
    jitter: float = 1e-4,
    rtol: float = 2e-4,
    max_iter: int = 100,
) -> dict[str, jnp.ndarray]:
    """Per-image ROAD scores at every removed fraction. Pure; wrap it in ``jax.jit``.

    Args:
      apply_fn: ``apply_fn(x_normalised (B, H, W, C)) -> logits (B, K)``.
      images: ``(B, H, W, C)`` in [0, 1].
      maps: ``(B, H, W)`` explanation maps in [0, 1] at the input resolution.
      target: ``(B,)`` int; None = top-1 class on the unmodified images.
      key: PRNG key (imputation noise; rank jitter for ``compat="road"``).
      mean, std: per-channel normalisation of the backbone.
      levels: static removed fractions in (0, 1).
      orders: any of ``"morf"``, ``"lerf"``.
      compat: ``"grad-cam"`` or ``"road"`` (see the module docstring).
      space: ``"normalised"``, ``"pixel"`` or ``None`` (the compat mode's own: normalised
        for grad-cam, pixel for road): where the removed pixels are imputed.
      noise: imputation noise std, in the units of ``space``.
      jitter: rank tie-breaking jitter std (``compat="road"`` only).
      rtol, max_iter: imputation solver settings.

    Returns:
      dict with ``"<order>_correct"`` ``(B, L)`` float 1.0 where top-1 == target,
      ``"<order>_prob"`` ``(B, L)`` target softmax probability, and ``"target"`` ``(B,)``.
    """
    check_inputs(images, maps, target)
    space = imputation_space(compat, space)
    for r in levels:
        if not 0.0 < r < 1.0:
            raise ValueError(f"ROAD levels are removed fractions in (0, 1), got {r}")
    images = images.astype(jnp.float32)
    normed = normalize(images, mean, std)
    target = resolve_target(apply_fn(normed) if target is None else None, target)
    jitter_key, noise_key = jax.random.split(key)
    keeps = []
    for order in orders:
        for r in levels:
            if compat == "grad-cam":
                keeps.append(percentile_keep(maps, r, order))
            else:  # one jitter draw for every level and order: nested removed sets
                keeps.append(rank_keep(maps, r, order, jitter_key, jitter))
    n = len(keeps)  # all (order, level) variants are imputed in one solver call
    source = normed if space == "normalised" else images
    imputed = noisy_linear_impute(
        jnp.tile(source, (n, 1, 1, 1)),
        jnp.concatenate(keeps),
        noise_key,
        noise,
        rtol=rtol,
        max_iter=max_iter,
    ).reshape(n, *images.shape)
    if space == "pixel":
        imputed = normalize(imputed, mean, std)
    prob, correct = jax.lax.map(lambda x: target_scores(apply_fn(x), target), imputed)
    out = {"target": target}
    for i, order in enumerate(orders):
        rows = slice(i * len(levels), (i + 1) * len(levels))
        out[f"{order}_correct"] = correct[rows].T.astype(jnp.float32)  # (B, L)
        out[f"{order}_prob"] = prob[rows].T
    return out


def road_summary(
    per_image: Mapping[str, np.ndarray], levels: Sequence[float] = ROAD_LEVELS
) -> dict[str, dict]:
    """Accuracy and mean target probability in percent, per level and averaged over levels.

    Returns:
      ``{order: {"accuracy": {"10%": ...}, "prob": {...}, "accuracy_mean": ...,
      "prob_mean": ...}}`` for every order present in ``per_image``.
    """
    names = [f"{round(100 * r):d}%" for r in levels]
    summary = {}
    for order in (MORF, LERF):
        if f"{order}_correct" not in per_image:
            continue
        acc = 100.0 * np.asarray(per_image[f"{order}_correct"], np.float64).mean(axis=0)
        prob = 100.0 * np.asarray(per_image[f"{order}_prob"], np.float64).mean(axis=0)
        if acc.shape != (len(levels),):
            raise ValueError(f"expected {len(levels)} levels per image, got {acc.shape}")
        summary[order] = {
            "accuracy": dict(zip(names, map(float, acc), strict=True)),
            "prob": dict(zip(names, map(float, prob), strict=True)),
            "accuracy_mean": float(acc.mean()),
            "prob_mean": float(prob.mean()),
        }
    return summary
