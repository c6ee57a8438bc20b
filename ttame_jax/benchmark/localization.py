"""Localisation scores of explanation maps against ground-truth evidence masks.

The synthetic benchmark knows which pixels decide the class (the target
object's mask), so an explanation can be checked directly:

- **pointing game**: 1 if the map's maximum lies inside the evidence, else 0
  (Zhang et al., "Top-down neural attention by excitation backprop"; here with
  no tolerance margin). A constant map has no maximum location and counts as a
  miss; when the maximum is shared by several pixels, the hit needs all of them
  inside the evidence.
- **mass inside evidence**: ``sum(map * evidence) / sum(map)``, the share of the
  map's total mass on the evidence pixels (an all-zero map scores 0). A uniform
  map scores the evidence's area share (:func:`evidence_area`), the chance level.
- **counterfactual check** on two-object images: the map for class A puts more
  mass on object A than on object B, *and* the map for class B puts more on B
  than on A.
- **ring contrast**: the map's mean inside the evidence minus its mean in the ring of
  pixels around it (:func:`evidence_ring`); below 0 the map is *inverted* (higher
  around the object than on it; docs/benchmark.md, "Seed spread").

All functions are pure NumPy on batches: maps ``(B, H, W)`` (any non-negative
scale), masks ``(B, H, W)`` bool, results ``(B,)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _check(maps, *masks) -> tuple[np.ndarray, list[np.ndarray]]:
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {maps.shape}")
    if not np.all(np.isfinite(maps)) or np.any(maps < 0):
        raise ValueError("maps must be finite and non-negative (explanations in [0, 1])")
    out = []
    for m in masks:
        m = np.asarray(m)
        if m.shape != maps.shape:
            raise ValueError(
                f"evidence mask shape {m.shape} does not match the maps' shape {maps.shape}; "
                "resize the maps to the image size first"
            )
        out.append(m.astype(bool))
    return maps, out


def pointing_game(maps, evidence) -> np.ndarray:
    """``(B,)`` 1.0 where the map's maximum lies inside ``evidence``, else 0.0."""
    maps, (evidence,) = _check(maps, evidence)
    flat, ev = maps.reshape(len(maps), -1), evidence.reshape(len(maps), -1)
    peak = flat == flat.max(axis=1, keepdims=True)
    constant = flat.max(axis=1) == flat.min(axis=1)
    hit = np.all(~peak | ev, axis=1) & ~constant
    return hit.astype(np.float64)


def mass_inside(maps, evidence) -> np.ndarray:
    """``(B,)`` share of each map's total mass on the ``evidence`` pixels, in [0, 1]."""
    maps, (evidence,) = _check(maps, evidence)
    total = maps.sum(axis=(1, 2))
    inside = (maps * evidence).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def evidence_area(evidence) -> np.ndarray:
    """``(B,)`` share of the image covered by ``evidence`` (what a uniform map scores)."""
    evidence = np.asarray(evidence, bool)
    return evidence.reshape(len(evidence), -1).mean(axis=1)


def counterfactual(maps_a, maps_b, evidence_a, evidence_b) -> np.ndarray:
    """``(B,)`` 1.0 where both class maps prefer their own object, else 0.0.

    Args:
      maps_a: ``(B, H, W)`` explanations of class A (the class of object A).
      maps_b: ``(B, H, W)`` explanations of class B on the same images.
      evidence_a, evidence_b: ``(B, H, W)`` masks of objects A and B. Pixels in
        both masks (overlap) count for neither.
    """
    maps_a, (ev_a, ev_b) = _check(maps_a, evidence_a, evidence_b)
    maps_b, _ = _check(maps_b, ev_a, ev_b)
    only_a, only_b = ev_a & ~ev_b, ev_b & ~ev_a
    a_on_a, a_on_b = (maps_a * only_a).sum((1, 2)), (maps_a * only_b).sum((1, 2))
    b_on_b, b_on_a = (maps_b * only_b).sum((1, 2)), (maps_b * only_a).sum((1, 2))
    return ((a_on_a > a_on_b) & (b_on_b > b_on_a)).astype(np.float64)


def evidence_ring(evidence, width: float) -> np.ndarray:
    """``(B, H, W)`` bool: the pixels outside ``evidence`` whose centre lies within
    ``width`` pixels (Euclidean) of an evidence pixel's centre.

    Raises:
      ValueError: ``width`` < 1 (the ring would be empty).
    """
    from scipy import ndimage

    if width < 1:
        raise ValueError(f"the ring width must be >= 1 pixel, got {width}")
    evidence = np.asarray(evidence, bool)
    r = int(np.floor(width))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = (dy**2 + dx**2 <= width**2)[None]  # (1, 2r+1, 2r+1): per image
    return ndimage.binary_dilation(evidence, structure=disc) & ~evidence


def ring_contrast(maps, evidence, width: float) -> np.ndarray:
    """``(B,)`` mean of each map inside ``evidence`` minus its mean in the ring of
    :func:`evidence_ring` (``width`` pixels); NaN where either region is empty.

    For maps in [0, 1] it lies in [-1, 1]; < 0 means the map is higher around the
    object than on it.
    """
    maps, (evidence,) = _check(maps, evidence)
    ring = evidence_ring(evidence, width)

    def mean_over(region):
        n = region.sum(axis=(1, 2))
        total = (maps * region).sum(axis=(1, 2))
        return np.divide(total, n, out=np.full(len(maps), np.nan), where=n > 0)

    return mean_over(evidence) - mean_over(ring)


def single_object(batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(B,)`` bool: images with one target (``label2 < 0``, or no ``label2`` field)."""
    label2 = batch.get("label2")
    if label2 is None:
        return np.ones(len(batch["label"]), bool)
    return np.asarray(label2) < 0


def extra_metrics() -> dict:
    """Per-batch callbacks for :func:`ttame_jax.evaluation.evaluate` (``extra_metrics=``).

    Each returns ``(B,)`` values on single-object images and NaN on two-object
    ones (whose map explains one of two objects; see :func:`counterfactual`).
    """

    def on_single(score):
        def fn(maps, batch):
            values = score(maps, batch["evidence"])
            return np.where(single_object(batch), values, np.nan)

        return fn

    return {
        "pointing_game": on_single(pointing_game),
        "mass_inside": on_single(mass_inside),
        "evidence_area": on_single(lambda maps, ev: evidence_area(ev)),
    }
