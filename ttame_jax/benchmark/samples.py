"""Maps on chosen test images: the counterfactual check and the figures.

The evaluator explains each image's top-1 class; here the methods explain given
classes: both objects' classes on two-object images (:func:`counterfactual_check`),
and the top-1 class of a few single-object images for the overlay figures
(:func:`figure_maps`). Batches are padded to the evaluation batch size so that
the methods reuse the programs already compiled by the evaluator.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ttame_jax.benchmark import localization
from ttame_jax.evaluation.methods import Method, top1


def pick(source, num: int, *, two_objects: bool) -> dict[str, np.ndarray]:
    """The first ``num`` test images with (or without) a second target, as one batch.

    Raises:
      ValueError: the split holds no such image (e.g. ``two_object_fraction`` is 0).
    """
    chunks, count = [], 0
    for batch in source.batches(256, shuffle=False, augment=False):
        keep = (
            ~localization.single_object(batch) if two_objects else localization.single_object(batch)
        )
        if keep.any():
            chunks.append({k: v[keep] for k, v in batch.items()})
            count += int(keep.sum())
        if count >= num:
            break
    if not count:
        kind = "two-object" if two_objects else "single-object"
        raise ValueError(
            f"the test split has no {kind} image; raise data.test_size or set "
            "data.two_object_fraction in (0, 1)"
        )
    return {k: np.concatenate([c[k] for c in chunks])[:num] for k in chunks[0]}


def _maps(method: Method, x: np.ndarray, target: np.ndarray, batch_size: int) -> np.ndarray:
    """``method.fn`` over ``x`` in chunks of ``batch_size`` (the last padded by repetition)."""
    out = []
    for start in range(0, len(x), batch_size):
        xs, ts = x[start : start + batch_size], target[start : start + batch_size]
        pad = batch_size - len(xs)
        xp = np.concatenate([xs, np.repeat(xs[-1:], pad, 0)]) if pad else xs
        tp = np.concatenate([ts, np.repeat(ts[-1:], pad, 0)]) if pad else ts
        maps = np.asarray(method.fn(xp, tp.astype(np.int32)), np.float32)
        out.append(maps[: len(xs)])
    return np.concatenate(out)


def counterfactual_check(
    methods: Sequence[Method], batch: dict[str, np.ndarray], batch_size: int
) -> dict[str, dict]:
    """Per method: success rate of :func:`localization.counterfactual` and the maps.

    Args:
      methods: the evaluated methods.
      batch: two-object images (``label``/``label2``, ``evidence``/``evidence2``).
      batch_size: explanation batch size.

    Returns:
      ``{name: {"success": (N,) 0/1, "maps_a": (N, S, S), "maps_b": (N, S, S)}}``.
    """
    x = np.asarray(batch["image"], np.float32)
    out = {}
    for method in methods:
        maps_a = _maps(method, x, batch["label"], batch_size)
        maps_b = _maps(method, x, batch["label2"], batch_size)
        success = localization.counterfactual(maps_a, maps_b, batch["evidence"], batch["evidence2"])
        out[method.name] = {"success": success, "maps_a": maps_a, "maps_b": maps_b}
    return out


def figure_maps(methods, explainer, batch, batch_size: int) -> dict[str, np.ndarray]:
    """``{name: (N, S, S)}`` maps of each method for the images' top-1 classes."""
    x = np.asarray(batch["image"], np.float32)
    target = top1(explainer, x)
    return {m.name: _maps(m, x, target, batch_size) for m in methods}


def save_figures(folder, prefix, class_names, single, single_maps, two, cf) -> list[str]:
    """Writes the overlay and counterfactual figures; returns the PNG paths.

    ``single``/``single_maps``: images and :func:`figure_maps` for the overlays (the
    ground-truth evidence is the first panel); ``two``/``cf``: two-object images and
    :func:`counterfactual_check` (panels "method: class" for both classes).
    """
    from ttame_jax.visualize.figures import methods_figure

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, image in enumerate(single["image"]):
        panels = {"evidence": single["evidence"][i].astype(np.float32)}
        panels.update({name: maps[i] for name, maps in single_maps.items()})
        path = os.path.join(folder, f"{prefix}_overlay_{i}.png")
        methods_figure(image, panels, save=path)
        paths.append(path)
    for i, image in enumerate(two["image"][: len(single["image"])]):
        a, b = (class_names[int(two[k][i])] for k in ("label", "label2"))
        panels = {"evidence A": two["evidence"][i].astype(np.float32)}
        panels["evidence B"] = two["evidence2"][i].astype(np.float32)
        for name, res in cf.items():
            panels[f"{name}: A={a}"] = res["maps_a"][i]
            panels[f"{name}: B={b}"] = res["maps_b"][i]
        path = os.path.join(folder, f"{prefix}_counterfactual_{i}.png")
        methods_figure(image, panels, save=path)
        paths.append(path)
    return paths
