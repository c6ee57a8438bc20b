"""Paper-style figures of explanation maps (T-TAME paper Figs. 16-19).

- :func:`topk_figure`: one image, the maps of its top-k classes side by side
  (counterfactual explanations, Figs. 18-19).
- :func:`methods_figure`: one image, the maps of several methods side by side (Fig. 16).
- :func:`sanity_figure`: cascading randomisation (Adebayo et al.; Fig. 17): rows are
  images, columns the original map then the map after each randomisation step.

Each returns a ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend) and writes
it to ``save`` (PNG) when given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ttame_jax.visualize.overlay import import_matplotlib, overlay

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_PANEL = 2.0  # inches per panel


def _grid(rows: int, cols: int) -> tuple[Figure, np.ndarray]:
    figure = import_matplotlib("matplotlib.figure").Figure
    fig = figure(figsize=(_PANEL * cols, _PANEL * rows + 0.3), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig, axes


def _finish(fig: Figure, save: str | os.PathLike | None) -> Figure:
    if save is not None:
        fig.savefig(save, format="png", dpi=100)
    return fig


def topk_figure(
    image: np.ndarray,
    maps: np.ndarray,
    titles: Sequence[str],
    *,
    alpha: float = 0.5,
    save: str | os.PathLike | None = None,
) -> Figure:
    """The input image and one overlay per class (counterfactual maps, Figs. 18-19).

    Args:
      image: ``(H, W, 3)`` RGB in [0, 1] (the preprocessed input).
      maps: ``(k, H, W)`` maps in [0, 1], one per class.
      titles: k panel titles, e.g. ``"goldfish 0.83"``.
      alpha: colour map weight of the overlays.
      save: optional PNG path.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(titles) != maps.shape[0]:
        raise ValueError(
            f"topk_figure expects maps (k, H, W) and k titles, got maps {maps.shape} "
            f"and {len(titles)} titles"
        )
    fig, axes = _grid(1, maps.shape[0] + 1)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("input", fontsize=9)
    for ax, m, title in zip(axes[0, 1:], maps, titles, strict=True):
        ax.imshow(overlay(image, m, alpha))
        ax.set_title(title, fontsize=9)
    return _finish(fig, save)


def methods_figure(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    *,
    alpha: float = 0.5,
    save: str | os.PathLike | None = None,
) -> Figure:
    """One image explained by several methods, side by side (Fig. 16).

    Args:
      image: ``(H, W, 3)`` RGB in [0, 1].
      maps: method name -> ``(H, W)`` map in [0, 1], in display order.
      alpha: colour map weight of the overlays.
      save: optional PNG path.
    """
    if not maps:
        raise ValueError("methods_figure needs at least one method's map")
    fig, axes = _grid(1, len(maps) + 1)
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("input", fontsize=9)
    for ax, (name, m) in zip(axes[0, 1:], maps.items(), strict=True):
        ax.imshow(overlay(image, np.asarray(m), alpha))
        ax.set_title(name, fontsize=9)
    return _finish(fig, save)


def sanity_figure(
    images: np.ndarray,
    maps: np.ndarray,
    step_names: Sequence[str],
    *,
    scores: np.ndarray | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Cascading randomisation figure (Fig. 17).

    Args:
      images: ``(N, H, W, 3)`` RGB in [0, 1].
      maps: ``(N, 1 + T, H, W)``: the original map, then the map after each of T steps.
      step_names: T names, the unit randomised at each step (e.g. ``"backbone/layer3"``).
      scores: optional ``(N, T)`` Spearman correlations shown under the panels.
      save: optional PNG path.
    """
    images, maps = np.asarray(images), np.asarray(maps)
    n, cols = maps.shape[:2]
    if images.shape[0] != n or cols != len(step_names) + 1:
        raise ValueError(
            f"sanity_figure: {images.shape[0]} images, maps {maps.shape} and "
            f"{len(step_names)} step names do not fit (maps must be (N, 1 + steps, H, W))"
        )
    fig, axes = _grid(n, cols + 1)
    titles = ["input", "original", *step_names]
    for i in range(n):
        axes[i, 0].imshow(images[i])
        for j in range(cols):
            axes[i, j + 1].imshow(maps[i, j], cmap="jet", vmin=0.0, vmax=1.0)
            if scores is not None and j > 0:
                axes[i, j + 1].text(
                    0.5, -0.08, f"ρ={scores[i, j - 1]:.2f}", transform=axes[i, j + 1].transAxes,
                    ha="center", va="top", fontsize=8,
                )  # fmt: skip
    for j, title in enumerate(titles):
        axes[0, j].set_title(title.replace("/", "/\n", 1), fontsize=8)
    return _finish(fig, save)
