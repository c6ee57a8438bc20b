"""Explanation map overlays: jet colour map blended 50 % onto the image.

The blend is ``out = (1 - alpha) * image + alpha * jet(map)`` on [0, 1] RGB values,
the usual way saliency maps are shown (the paper's figures, pytorch-grad-cam's
``show_cam_on_image``), computed here with matplotlib's ``jet`` colour map.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
from PIL import Image


def import_matplotlib(module: str = "matplotlib"):
    """``module`` of matplotlib, imported when first drawn with (matplotlib is optional:
    training, evaluation and ``explain`` without figures run without it)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"ttame_jax.visualize draws with matplotlib ({module}), which is not installed: "
            f"pip install matplotlib"
        ) from err


def _check(image: np.ndarray, saliency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    saliency = np.asarray(saliency, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"overlay expects an RGB image (H, W, 3), got shape {image.shape}")
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    if saliency.ndim != 2:
        raise ValueError(
            f"overlay expects one map (H, W), got shape {saliency.shape}; pick one class "
            f"with maps[i] or maps[i, j]"
        )
    if saliency.shape != image.shape[:2]:
        raise ValueError(
            f"map shape {saliency.shape} does not match the image's {image.shape[:2]}; "
            f"explain() returns maps at the input size: overlay them on the preprocessed image"
        )
    return image.astype(np.float32), saliency


def colorize(saliency: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Map values (clipped to [0, 1]) -> float32 RGB ``(H, W, 3)`` in [0, 1]."""
    rgba = import_matplotlib().colormaps[cmap](np.clip(np.asarray(saliency, np.float32), 0.0, 1.0))
    return rgba[..., :3].astype(np.float32)


def overlay(
    image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, cmap: str = "jet"
) -> np.ndarray:
    """Blends a colour-mapped explanation map onto an image.

    Args:
      image: ``(H, W, 3)`` RGB, float in [0, 1] or uint8.
      saliency: ``(H, W)`` map in [0, 1] (values outside are clipped).
      alpha: weight of the colour map (0.5 = the paper's 50 % blend).
      cmap: matplotlib colour map name.

    Returns:
      uint8 ``(H, W, 3)``: ``round(255 * ((1 - alpha) * image + alpha * cmap(map)))``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image, saliency = _check(image, saliency)
    blend = (1.0 - alpha) * np.clip(image, 0.0, 1.0) + alpha * colorize(saliency, cmap)
    return np.round(255.0 * blend).astype(np.uint8)


def save_overlay(path: str | os.PathLike, image, saliency, alpha: float = 0.5) -> str:
    """Writes :func:`overlay` as a PNG (same size as ``image``) and returns the path."""
    Image.fromarray(overlay(image, saliency, alpha)).save(path, format="PNG")
    return os.fspath(path)
