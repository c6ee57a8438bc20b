"""Map similarity measures of the sanity checks: Spearman rank correlation and SSIM.

SSIM follows Wang et al. (2004), "Image quality assessment: from error visibility to
structural similarity": local Gaussian-weighted statistics (11 x 11 window, σ = 1.5,
weights summing to 1), ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with K1 = 0.01, K2 = 0.03 and
dynamic range L, and the mean of the SSIM index over the windows that fit entirely inside
the image ("valid" windows)::

    SSIM(x, y) = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))

with population (not sample-corrected) weighted variances, as in the paper.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

K1, K2 = 0.01, 0.03


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D Gaussian weights ``(size,)`` summing to 1 (the 2-D window is their outer product)."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-(r**2) / (2.0 * sigma**2))
    return w / w.sum()


def _filter_valid(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable weighted sum over every window that fits: ``(H, W) -> (H-n+1, W-n+1)``."""
    n = w.size
    rows = sum(w[i] * a[i : a.shape[0] - n + 1 + i] for i in range(n))
    return sum(w[j] * rows[:, j : a.shape[1] - n + 1 + j] for j in range(n))


def ssim(
    x: np.ndarray, y: np.ndarray, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5
) -> float:
    """Mean SSIM of two single-channel images.

    Args:
      x, y: ``(H, W)`` arrays with H, W >= ``win_size`` (explanation maps in [0, 1]).
      data_range: L, the dynamic range of the values (1 for maps in [0, 1]).
      win_size, sigma: the Gaussian window (Wang et al.: 11 and 1.5).

    Returns:
      the mean SSIM index over valid windows, in [-1, 1]; 1 iff x == y.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim expects two (H, W) arrays of one shape, got {x.shape}, {y.shape}")
    if min(x.shape) < win_size:
        raise ValueError(f"ssim needs images of at least {win_size}x{win_size}, got {x.shape}")
    w = gaussian_window(win_size, sigma)
    mx, my = _filter_valid(x, w), _filter_valid(y, w)
    vx = _filter_valid(x * x, w) - mx * mx
    vy = _filter_valid(y * y, w) - my * my
    cxy = _filter_valid(x * y, w) - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(index.mean())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of two maps over all pixels (NaN if one map is constant)."""
    x, y = np.ravel(np.asarray(x, np.float64)), np.ravel(np.asarray(y, np.float64))
    if x.shape != y.shape:
        raise ValueError(f"spearman expects maps of one size, got {x.size} and {y.size} values")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)
