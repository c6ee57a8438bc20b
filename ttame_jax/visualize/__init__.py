"""Overlays and paper-style figures of explanation maps (matplotlib / Pillow, no OpenCV)."""

from ttame_jax.visualize.figures import methods_figure, sanity_figure, topk_figure
from ttame_jax.visualize.overlay import colorize, overlay, save_overlay

__all__ = ["colorize", "methods_figure", "overlay", "sanity_figure", "save_overlay", "topk_figure"]
