"""The 8-neighbour imputation stencil of ROAD and a geometric multigrid preconditioner for it.

ROAD's noisy linear imputation (Rong et al., 2022) asks every removed pixel ``i`` to equal
the weighted mean of its in-bounds 8 neighbours ``j``::

    S_i x_i - sum_{j removed} w_ij x_j = sum_{j kept} w_ij v_j,     S_i = sum_{j in bounds} w_ij

with ``w = 1/6`` for the 4 direct and ``1/12`` for the 4 diagonal neighbours (they sum to 1).
Neighbours outside the image are dropped from both sides (so a corner pixel has
``S = 1/6 + 1/6 + 1/12``), removed neighbours are unknowns, kept ones go to the right-hand
side. The matrix ``A = D_S - W_RR`` restricted to the removed set ``R`` is symmetric and,
as soon as one pixel is kept, positive definite (an irreducibly diagonally dominant M-matrix).

Everything here is matrix-free on grids stored in the **last two axes** ``(..., H, W)``
(channel-first planes: the innermost axis is a long image row, which XLA vectorises; NHWC
with 3 channels innermost ran the stencil at half the speed on CPU). ``removed`` is a float
mask ``(..., 1, H, W)`` broadcast over the channels (1 = unknown); unknowns live on the full
grid and are zero outside ``R``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# (dy, dx) -> weight of that neighbour; 1/6 direct, 1/12 diagonal.
NEIGHBOUR_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)

# Jacobi smoother. In the interior the high frequencies of D^-1 A lie in [2/3, 4/3], so
# omega = 1 damps them by 1/3 per sweep (0.8 only by 0.47); D^-1 A < 4/3 everywhere keeps
# the undamped sweep convergent and the V-cycle positive definite.
_OMEGA = 1.0
_SMOOTH_STEPS = 2  # pre- and post-smoothing sweeps per coarse level (V(2,2))
_SMOOTH_STEPS_FINEST = 1  # and on the finest grid of a hierarchy
_COARSEST_STEPS = 16  # Jacobi sweeps on the coarsest grid
_MIN_COARSE = 6  # stop coarsening below this many pixels per side
_DIRECT_MAX = 256  # coarsest grids up to this many cells are solved exactly
_SINGULAR_EIGENVALUE = 1e-5  # eigenvalues below this count as 0 (pseudo-inverse)
_COARSE_MIN_CHILDREN = 4  # a coarse cell is unknown only when all 4 children are


def _grid_pad(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])


def neighbour_sum(x: jnp.ndarray) -> jnp.ndarray:
    """``W x``: weighted sum of the in-bounds 8 neighbours of every pixel.

    Args:
      x: ``(..., H, W)``.

    Returns:
      ``(..., H, W)``; out-of-bounds neighbours contribute nothing.
    """
    h, w = x.shape[-2], x.shape[-1]
    xp = _grid_pad(x)
    total = jnp.zeros_like(x)
    for dy, dx, weight in NEIGHBOUR_WEIGHTS:
        total = total + weight * xp[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    return total


def weight_sum(height: int, width: int, dtype=jnp.float32) -> jnp.ndarray:
    """``S``: the sum of in-bounds neighbour weights of every pixel, ``(H, W)``."""
    return neighbour_sum(jnp.ones((height, width), dtype))


def apply_operator(x: jnp.ndarray, removed: jnp.ndarray, s: jnp.ndarray) -> jnp.ndarray:
    """``A x = R (S x - W (R x))`` for unknowns ``x`` supported on the removed set.

    Args:
      x: ``(..., C, H, W)`` unknowns (values outside ``removed`` are ignored).
      removed: ``(..., 1, H, W)`` float mask, 1 where the pixel is unknown.
      s: ``(H, W)`` in-bounds weight sums from :func:`weight_sum`.
    """
    x = x * removed
    return removed * (s * x - neighbour_sum(x))


def _shift_edge(c: jnp.ndarray, axis: int, step: int) -> jnp.ndarray:
    """``c[i - step]`` along ``axis`` with edge replication (``step`` = +1 or -1)."""
    n = c.shape[axis]

    def part(lo, hi):
        return jax.lax.slice_in_dim(c, lo, hi, axis=axis)

    parts = [part(0, 1), part(0, n - 1)] if step == 1 else [part(1, n), part(n - 1, n)]
    return jnp.concatenate(parts, axis)


def _upsample_axis(c: jnp.ndarray, axis: int) -> jnp.ndarray:
    """Cell-centred linear interpolation to twice the size along ``axis`` (edge replicate):
    ``f[2i] = 3/4 c[i] + 1/4 c[i-1]``, ``f[2i+1] = 3/4 c[i] + 1/4 c[i+1]``."""
    axis = axis % c.ndim
    even = 0.75 * c + 0.25 * _shift_edge(c, axis, 1)
    odd = 0.75 * c + 0.25 * _shift_edge(c, axis, -1)
    shape = list(c.shape)
    shape[axis] *= 2
    return jnp.stack([even, odd], axis + 1).reshape(shape)


_TRANSFER_1D = (0.25, 0.75, 0.75, 0.25)  # fine cells 2k-1 .. 2k+2 -> coarse cell k


def restrict(r: jnp.ndarray) -> jnp.ndarray:
    """Transpose of :func:`prolong`: a 4x4 weighted sum, total weight 4 per coarse cell.

    ``c[k] = 3/4 (f[2k] + f[2k+1]) + 1/4 (f[2k-1] + f[2k+2])`` along each axis, the missing
    ``f[-1]`` and ``f[2n]`` replaced by the edge values (the transpose of the prolongation's
    edge replication). Written as a stride-2 convolution: XLA keeps a convolution's operand
    in memory, so the residual feeding it is computed once (fused slices recomputed its
    9-point stencil for every one of the 16 taps; opt-barriers do not stop that on CPU).
    """
    k1 = jnp.asarray(_TRANSFER_1D)
    padded = jnp.pad(r, [(0, 0)] * (r.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    return _plane_conv(padded, k1[:, None] * k1[None, :], 2)


def prolong(e: jnp.ndarray) -> jnp.ndarray:
    """Bilinear (cell-centred) interpolation of a coarse grid to the fine grid."""
    return _upsample_axis(_upsample_axis(e, -2), -1)


def _plane_conv(x: jnp.ndarray, kernel: jnp.ndarray, stride: int) -> jnp.ndarray:
    """Every ``(h, w)`` plane of ``x`` convolved (VALID) with a 2-D ``kernel``."""
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    out = jax.lax.conv_general_dilated(
        x.reshape(-1, 1, h, w), kernel.astype(x.dtype)[None, None], (stride, stride), "VALID"
    )
    return out.reshape(*lead, *out.shape[-2:])


def block_sum(x: jnp.ndarray) -> jnp.ndarray:
    """Sum of every 2x2 block of the last two axes, as a reshape and a sum.

    Not a one-channel stride-2 convolution: XLA CPU hands that to YNNPACK, which took
    1.3 ms for a 3 x 224 x 224 plane stack against 0.04 ms for the reshape, and the
    mask hierarchy and the full-multigrid start call it on every level (the whole
    imputation went from 11.7 to 8.4 ms per 224^2 image). Four strided slices would
    be as fast alone, but XLA fuses cheap slices into every consumer, recomputing the
    coarse mask in each stencil pass that reads it.
    """
    h, w = x.shape[-2:]
    return x.reshape(*x.shape[:-2], h // 2, 2, w // 2, 2).sum(axis=(-3, -1))


def can_coarsen(h: int, w: int) -> bool:
    return not (h % 2 or w % 2 or h // 2 < _MIN_COARSE or w // 2 < _MIN_COARSE)


def coarsen_mask(removed: jnp.ndarray) -> jnp.ndarray:
    """Coarse unknowns: a coarse cell is unknown only when all four children are (smaller
    coarse holes keep the coarse correction from overshooting near kept pixels)."""
    return (block_sum(removed) >= _COARSE_MIN_CHILDREN).astype(removed.dtype)


class Level(NamedTuple):
    """One multigrid level: unknown mask ``(..., 1, h, w)``, weight sums ``(h, w)`` and, on a
    small enough coarsest grid, the (pseudo-)inverse of its matrix ``(..., h w, h w)``."""

    removed: jnp.ndarray
    s: jnp.ndarray
    inverse: jnp.ndarray | None = None


def _dense_weights(h: int, w: int) -> np.ndarray:
    """The neighbour weight matrix ``W`` of an ``h x w`` grid, ``(h w, h w)``, row-major."""
    dense = np.zeros((h * w, h * w), np.float32)
    for y in range(h):
        for x in range(w):
            for dy, dx, weight in NEIGHBOUR_WEIGHTS:
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    dense[y * w + x, (y + dy) * w + x + dx] = weight
    return dense


def coarsest_inverse(removed: jnp.ndarray, s: jnp.ndarray) -> jnp.ndarray:
    """Pseudo-inverse of ``A`` on a small grid, with identity rows for the known cells.

    ``A`` is singular when every cell of the grid is unknown (constants solve it; on a
    coarse grid that happens when the kept pixels are all in partly removed blocks): the
    eigen-decomposition drops that mode instead of dividing by ~0.
    """
    h, w = s.shape
    m = removed.reshape(*removed.shape[:-3], h * w)
    diag = m * s.reshape(-1) + (1.0 - m)
    dense = jnp.asarray(_dense_weights(h, w), removed.dtype)
    a = jnp.einsum("...i,ij,...j->...ij", m, dense, m)
    a = jnp.eye(h * w, dtype=a.dtype) * diag[..., None] - a
    lam, vec = jnp.linalg.eigh(a)
    inv_lam = jnp.where(lam > _SINGULAR_EIGENVALUE, 1.0 / jnp.where(lam > 0, lam, 1.0), 0.0)
    return jnp.einsum("...ik,...k,...jk->...ij", vec, inv_lam, vec)


def _direct_solve(rhs: jnp.ndarray, level: Level) -> jnp.ndarray:
    h, w = rhs.shape[-2:]
    flat = rhs.reshape(*rhs.shape[:-2], h * w)
    out = jnp.einsum("...ij,...cj->...ci", level.inverse, flat)
    return level.removed * out.reshape(rhs.shape)


def build_hierarchy(removed: jnp.ndarray) -> list[Level]:
    """Every multigrid level, finest first.

    Coarsening stops at an odd side length or below ``_MIN_COARSE`` pixels; with odd input
    sizes the hierarchy is a single level and the preconditioner is plain Jacobi. A
    coarsest grid of at most ``_DIRECT_MAX`` cells is solved exactly (dense pseudo-inverse,
    computed once per solve); larger ones get ``_COARSEST_STEPS`` Jacobi sweeps.
    """
    levels = []
    mask = removed
    while True:
        h, w = mask.shape[-2], mask.shape[-1]
        s = weight_sum(h, w, mask.dtype)
        if can_coarsen(h, w):
            levels.append(Level(mask, s))
            mask = coarsen_mask(mask)
            continue
        inverse = coarsest_inverse(mask, s) if h * w <= _DIRECT_MAX and len(levels) else None
        levels.append(Level(mask, s, inverse))
        return levels


def _jacobi(e, rhs, removed, s, steps):
    """``steps`` Jacobi sweeps on ``A e = rhs``; ``e=None`` means a zero start."""
    inv_diag = _OMEGA * removed / s
    if e is None:  # the first sweep from zero needs no operator application
        e, steps = inv_diag * rhs, steps - 1
    if steps <= 0:
        return e

    def sweep(_, e):
        return e + inv_diag * (rhs - apply_operator(e, removed, s))

    # A loop, not unrolled: keeps XLA from fusing sweeps into each other (each sweep reads
    # its input at 9 offsets, so fused sweeps would recompute it 9^k times).
    return jax.lax.fori_loop(0, steps, sweep, e)


def v_cycle(rhs: jnp.ndarray, hierarchy: list[Level], level: int = 0) -> jnp.ndarray:
    """One multigrid V-cycle from a zero guess: an approximation of ``A^-1 rhs``.

    Symmetric by construction (same number of Jacobi sweeps before and after the coarse
    correction, restriction = transpose of prolongation, a symmetric coarsest solve); the
    coarse operators are the same stencil re-discretised on the coarse mask, which matches
    the fine scale because the restriction's weights total 4 per coarse cell (a sum, not an
    average).

    Args:
      rhs: ``(..., C, H_l, W_l)`` residual on ``level``.
      hierarchy: output of :func:`build_hierarchy`.
      level: current level index.
    """
    removed, s, inverse = hierarchy[level]
    if level == len(hierarchy) - 1:
        if inverse is not None:
            return _direct_solve(rhs, hierarchy[level])
        return _jacobi(None, rhs, removed, s, _COARSEST_STEPS)
    steps = _SMOOTH_STEPS if level else _SMOOTH_STEPS_FINEST
    e = _jacobi(None, rhs, removed, s, steps)
    residual = rhs - apply_operator(e, removed, s)
    e = e + removed * prolong(v_cycle(restrict(residual), hierarchy, level + 1))
    return _jacobi(e, rhs, removed, s, steps)
