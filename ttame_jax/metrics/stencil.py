"""The 8-neighbour imputation stencil of ROAD and a geometric multigrid preconditioner for it.

ROAD's noisy linear imputation (Rong et al., 2022) asks every removed pixel ``i`` to equal
the weighted mean of its in-bounds 8 neighbours ``j``::

    S_i x_i - sum_{j removed} w_ij x_j = sum_{j kept} w_ij v_j,     S_i = sum_{j in bounds} w_ij

with ``w = 1/6`` for the 4 direct and ``1/12`` for the 4 diagonal neighbours (they sum to 1).
Neighbours outside the image are dropped from both sides (so a corner pixel has
``S = 1/6 + 1/6 + 1/12``), removed neighbours are unknowns, kept ones go to the right-hand
side. The matrix ``A = D_S - W_RR`` restricted to the removed set ``R`` is symmetric and,
as soon as one pixel is kept, positive definite (an irreducibly diagonally dominant M-matrix).

Everything here is matrix-free on NHWC grids: ``removed`` is a float ``(B, H, W, 1)`` mask
(1 = unknown), unknowns live on the full grid and are zero outside ``R``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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

_OMEGA = 0.8  # damping of the Jacobi smoother; D^-1 A has spectrum in [0, 2)
_SMOOTH_STEPS = 2  # pre- and post-smoothing sweeps per level
_COARSEST_STEPS = 24  # Jacobi sweeps on the coarsest grid
_MIN_COARSE = 6  # stop coarsening below this many pixels per side
_COARSE_MIN_CHILDREN = 4  # a coarse cell is unknown only when all 4 children are


def neighbour_sum(x: jnp.ndarray) -> jnp.ndarray:
    """``W x``: weighted sum of the in-bounds 8 neighbours of every pixel.

    Args:
      x: ``(B, H, W, C)``.

    Returns:
      ``(B, H, W, C)``; out-of-bounds neighbours contribute nothing.
    """
    h, w = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = jnp.zeros_like(x)
    for dy, dx, weight in NEIGHBOUR_WEIGHTS:
        total = total + weight * xp[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w, :]
    return total


def weight_sum(height: int, width: int, dtype=jnp.float32) -> jnp.ndarray:
    """``S``: the sum of in-bounds neighbour weights of every pixel, ``(1, H, W, 1)``."""
    return neighbour_sum(jnp.ones((1, height, width, 1), dtype))


def apply_operator(x: jnp.ndarray, removed: jnp.ndarray, s: jnp.ndarray) -> jnp.ndarray:
    """``A x = R (S x - W (R x))`` for unknowns ``x`` supported on the removed set.

    Args:
      x: ``(B, H, W, C)`` unknowns (values outside ``removed`` are ignored).
      removed: ``(B, H, W, 1)`` float mask, 1 where the pixel is unknown.
      s: ``(1, H, W, 1)`` in-bounds weight sums from :func:`weight_sum`.
    """
    x = x * removed
    return removed * (s * x - neighbour_sum(x))


def _upsample_axis(c: jnp.ndarray, axis: int) -> jnp.ndarray:
    """Cell-centred linear interpolation to twice the size along ``axis`` (edge replicate):
    ``f[2i] = 3/4 c[i] + 1/4 c[i-1]``, ``f[2i+1] = 3/4 c[i] + 1/4 c[i+1]``."""
    n = c.shape[axis]
    first = jax.lax.slice_in_dim(c, 0, 1, axis=axis)
    last = jax.lax.slice_in_dim(c, n - 1, n, axis=axis)
    prev = jnp.concatenate([first, jax.lax.slice_in_dim(c, 0, n - 1, axis=axis)], axis)
    nxt = jnp.concatenate([jax.lax.slice_in_dim(c, 1, n, axis=axis), last], axis)
    even, odd = 0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt
    shape = list(c.shape)
    shape[axis] = 2 * n
    return jnp.stack([even, odd], axis + 1).reshape(shape)


def _downsample_axis(f: jnp.ndarray, axis: int) -> jnp.ndarray:
    """The exact transpose of :func:`_upsample_axis` (weights sum to 2 per coarse cell)."""
    even = jax.lax.slice_in_dim(f, 0, None, stride=2, axis=axis)
    odd = jax.lax.slice_in_dim(f, 1, None, stride=2, axis=axis)
    n = even.shape[axis]
    zero = jnp.zeros_like(jax.lax.slice_in_dim(even, 0, 1, axis=axis))
    # even[k] gives 1/4 to c[k-1] (to c[0] for k = 0); odd[k] 1/4 to c[k+1] (c[n-1] at the end)
    from_even = jnp.concatenate([jax.lax.slice_in_dim(even, 1, n, axis=axis), zero], axis)
    from_odd = jnp.concatenate([zero, jax.lax.slice_in_dim(odd, 0, n - 1, axis=axis)], axis)
    edge_lo = jnp.concatenate(
        [jax.lax.slice_in_dim(even, 0, 1, axis=axis), jnp.zeros_like(from_even)], axis
    )
    edge_lo = jax.lax.slice_in_dim(edge_lo, 0, n, axis=axis)
    edge_hi = jnp.concatenate(
        [jnp.zeros_like(from_odd), jax.lax.slice_in_dim(odd, n - 1, n, axis=axis)], axis
    )
    edge_hi = jax.lax.slice_in_dim(edge_hi, 1, n + 1, axis=axis)
    return 0.75 * (even + odd) + 0.25 * (from_even + from_odd + edge_lo + edge_hi)


def _restrict(r: jnp.ndarray) -> jnp.ndarray:
    """Transpose of :func:`_prolong`: a 4x4 weighted sum, total weight 4 per coarse cell."""
    return _downsample_axis(_downsample_axis(r, 1), 2)


def _prolong(e: jnp.ndarray) -> jnp.ndarray:
    """Bilinear (cell-centred) interpolation of coarse corrections to the fine grid."""
    return _upsample_axis(_upsample_axis(e, 1), 2)


def _block_count(mask: jnp.ndarray) -> jnp.ndarray:
    """Number of removed children of every 2x2 block."""
    return mask[:, 0::2, 0::2] + mask[:, 1::2, 0::2] + mask[:, 0::2, 1::2] + mask[:, 1::2, 1::2]


def build_hierarchy(removed: jnp.ndarray) -> list[tuple[jnp.ndarray, jnp.ndarray]]:
    """The (removed mask, weight sum) pair of every multigrid level, finest first.

    A coarse cell is unknown only when all four children are (smaller coarse holes keep the
    coarse correction from overshooting near kept pixels). Coarsening stops at an odd side
    length or below ``_MIN_COARSE`` pixels; with odd input sizes the hierarchy is a single
    level and the preconditioner is plain damped Jacobi.
    """
    levels = []
    mask = removed
    while True:
        h, w = mask.shape[1], mask.shape[2]
        levels.append((mask, weight_sum(h, w, mask.dtype)))
        if h % 2 or w % 2 or h // 2 < _MIN_COARSE or w // 2 < _MIN_COARSE:
            return levels
        mask = (_block_count(mask) >= _COARSE_MIN_CHILDREN).astype(mask.dtype)


def _jacobi(e, rhs, removed, s, steps):
    """``steps`` damped Jacobi sweeps on ``A e = rhs``; ``e=None`` means a zero start."""
    inv_diag = _OMEGA * removed / s
    if e is None:  # the first sweep from zero needs no operator application
        e, steps = inv_diag * rhs, steps - 1

    def sweep(_, e):
        return e + inv_diag * (rhs - apply_operator(e, removed, s))

    # A loop, not unrolled: keeps XLA from fusing sweeps into each other (each sweep reads
    # its input at 9 offsets, so fused sweeps would recompute it 9^k times).
    return jax.lax.fori_loop(0, steps, sweep, e)


def v_cycle(rhs: jnp.ndarray, hierarchy, level: int = 0) -> jnp.ndarray:
    """One multigrid V-cycle from a zero guess: an approximation of ``A^-1 rhs``.

    Symmetric by construction (same number of Jacobi sweeps before and after the coarse
    correction, restriction = transpose of prolongation); the coarse operators are the same
    stencil re-discretised on the coarse mask, which matches the fine scale because the
    restriction's weights total 4 per coarse cell (a sum, not an average).

    Args:
      rhs: ``(B, H_l, W_l, C)`` residual on ``level``.
      hierarchy: output of :func:`build_hierarchy`.
      level: current level index.
    """
    removed, s = hierarchy[level]
    if level == len(hierarchy) - 1:
        return _jacobi(None, rhs, removed, s, _COARSEST_STEPS)
    e = _jacobi(None, rhs, removed, s, _SMOOTH_STEPS)
    residual = jax.lax.optimization_barrier(rhs - apply_operator(e, removed, s))
    coarse_rhs = _restrict(residual)
    e = e + removed * _prolong(v_cycle(coarse_rhs, hierarchy, level + 1))
    return _jacobi(e, rhs, removed, s, _SMOOTH_STEPS)
