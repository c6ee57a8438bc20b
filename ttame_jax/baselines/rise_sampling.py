"""RISE (Petsiuk, Das & Saenko, BMVC 2018): randomized input sampling.

Black box: ``layer`` is not used. Mask ``M_n`` (``n = 1..N``) follows the original
code: an ``s x s`` grid of Bernoulli(``p1``) cells, bilinearly upsampled
(half-pixel centres, mirror boundary, as ``skimage.transform.resize(order=1,
mode="reflect")``) to ``(s + 1) * cell`` with ``cell = ceil(H / s)``, then cropped to
``H x W`` at an independent uniform random shift in ``[0, cell)`` per axis. With
``P_n`` the score of the target class on ``x * M_n`` (``x`` the normalised input, as
in the original code):

    S = sum_n P_n M_n / (N * p1)

and the returned map is ``S`` min-max scaled to [0, 1] per image. ``scores`` picks
``P_n``: ``"softmax"`` (default; the RISE paper's probability) or ``"logits"`` (the raw
target logit: the T-TAME reference wraps the bare backbone in RISE, so the paper's
Tables 2-5 were computed with logits; docs/evaluation.md).

Mask ``n`` is drawn from ``jax.random.fold_in(key, n)``, so the masks (and the
map) depend only on ``key``, never on ``batch_size``; the same masks serve every
image of the batch. ``batch_size`` pairs of (image, mask) go through the backbone
at a time and the weighted masks are summed as they come (no ``(N, H, W)`` stack).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from ttame_jax import xla_cpu
from ttame_jax.baselines import common
from ttame_jax.baselines.resize import interp_matrix

SCORES = ("softmax", "logits")  # what weighs mask n: target softmax probability or logit
N_MASKS = 8000  # the paper: 8000 for ResNet-50 and ViT-B/16, 4000 for VGG-16
GRID = 7  # s
KEEP = 0.5  # p1


def rise_masks(key: jax.Array, index: jax.Array, size: tuple[int, int], s: int, p1: float):
    """RISE masks number ``index`` (``(n,)`` int) for ``key``: ``(n, H, W)`` in [0, 1]."""
    cells = tuple(math.ceil(d / s) for d in size)
    ups = [jnp.asarray(interp_matrix(s, (s + 1) * c, "half_pixel", "mirror")) for c in cells]

    def one(i):
        # One uniform draw per mask: s*s cells kept with probability p1, then the
        # row and column shifts, uniform integers in [0, cell).
        u = jax.random.uniform(jax.random.fold_in(key, i), (s * s + 2,))
        grid = (u[: s * s] < p1).astype(jnp.float32).reshape(s, s)
        shift = jnp.floor(u[s * s :] * jnp.asarray(cells)).astype(jnp.int32)
        rows = jax.lax.dynamic_slice(ups[0], (shift[0], 0), (size[0], s))
        cols = jax.lax.dynamic_slice(ups[1], (shift[1], 0), (size[1], s))
        return jnp.einsum("Hi,ij,Wj->HW", rows, grid, cols, precision="highest")

    return jax.vmap(one)(index)


@functools.partial(
    xla_cpu.jit, static_argnames=("module", "n_masks", "s", "p1", "batch_size", "scores")
)
def _rise(module, variables, x, target, key, n_masks, s, p1, batch_size, scores):
    batch, size = x.shape[0], x.shape[1:3]
    target = common.select_target(module.apply(variables, x), target)
    index, valid = common.chunk_indices(batch * n_masks, batch_size)

    def step(total, chunk):
        item, ok = chunk  # item = b * N + n
        b, n = item // n_masks, item % n_masks
        masks = rise_masks(key, n, size, s, p1)
        out = module.apply(variables, x[b] * masks[..., None])
        if scores == "softmax":
            out = jax.nn.softmax(out, axis=-1)
        p = jnp.where(ok, common.class_score(out, target[b]), 0.0)  # P_n
        return total.at[b].add(p[:, None, None] * masks), None

    total, _ = jax.lax.scan(step, jnp.zeros((batch, *size), jnp.float32), (index, valid))
    return common.min_max(total / (n_masks * p1))


def rise(
    module,
    variables,
    x,
    layer: str | None = None,
    target=None,
    *,
    key: jax.Array | None = None,
    n_masks: int = N_MASKS,
    s: int = GRID,
    p1: float = KEEP,
    batch_size: int = 32,
    scores: str = "softmax",
):
    """RISE maps for a batch.

    Args:
      module, variables, x, target: as for :func:`~ttame_jax.baselines.grad_cam`
        (``x`` is the normalised NHWC batch).
      layer: ignored (RISE is a black-box method); accepted for the common call shape.
      key: PRNG key of the masks (default ``jax.random.key(0)``).
      n_masks: ``N`` (paper: 8000; 4000 for VGG-16).
      s: grid size (paper: 7).
      p1: keep probability of a grid cell (paper: 0.5).
      batch_size: masked inputs per backbone call (memory bound).
      scores: ``"softmax"`` (mask weights = target softmax probability, the RISE paper)
        or ``"logits"`` (raw target logit, as the T-TAME reference computed the paper's
        tables).

    Returns:
      ``(B, H, W)`` float32 maps in [0, 1].
    """
    if not isinstance(n_masks, int) or n_masks < 1:
        raise ValueError(f"n_masks must be a positive int, got {n_masks!r}")
    if not isinstance(s, int) or s < 1:
        raise ValueError(f"s (grid size) must be a positive int, got {s!r}")
    if not 0.0 < p1 <= 1.0:
        raise ValueError(f"p1 (keep probability) must be in (0, 1], got {p1!r}")
    if scores not in SCORES:
        raise ValueError(f"scores must be one of {SCORES}, got {scores!r}")
    key = jax.random.key(0) if key is None else key
    x, _, target = common.prepare(module, variables, x, layer, target, needs_layer=False)
    return _rise(module, variables, x, target, key, n_masks, s, float(p1), batch_size, scores)


def rise_fp(module, variables, x, layer=None, *, n_masks: int = N_MASKS, **options) -> int:
    """Backbone forward passes per explanation: ``N`` (one per mask)."""
    del module, variables, x, layer, options
    return n_masks
