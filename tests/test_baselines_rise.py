"""RISE converges to its exact expectation on a model whose saliency is known in closed form.

The model has two classes and softmax probability of class 0 *equal to*
``P = a + b * mean_{j in R}(x_j)`` (logits ``log P``, ``log(1 - P)``), read from
channel 0 of the input over a fixed square region ``R``. With ``x = 1`` there, the
masked input gives ``P = a + b * mean_R M``, so the RISE saliency of pixel ``i``,
``E[P M_i] / p1``, needs only the first two moments of the random masks:

    E[M_i] = p1,   E[M_i M_j] = p1^2 + p1 (1 - p1) Gy[iy, jy] Gx[ix, jx],

where, for the bilinear upsampling matrix ``U`` (upsampled pixel x grid cell) and the
random crop offset ``t``, ``G = mean_t U[t:t+H] U[t:t+H]^T`` (grid cells are
independent Bernoulli(p1) and interpolation weights sum to 1). ``U`` is built here
from ``scipy.ndimage.zoom(order=1, mode="mirror", grid_mode=True)`` on unit
vectors, i.e. skimage's ``resize(order=1, mode="reflect")`` used by the original
RISE code, independently of the library's interpolation code.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from ttame_jax import baselines

SIZE = 16
GRID = 4
P1 = 0.5
A, B = 0.05, 0.9
REGION = (slice(2, 7), slice(9, 14))  # rows, cols of R


class RegionModel(nn.Module):
    tap_paths = {}

    def __call__(self, x):
        p = A + B * x[:, REGION[0], REGION[1], 0].mean(axis=(1, 2))
        return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1)


def upsample_matrix(s: int, out: int) -> np.ndarray:
    eye = np.eye(s)
    cols = [ndimage.zoom(eye[k], out / s, order=1, mode="mirror", grid_mode=True) for k in range(s)]
    return np.stack(cols, axis=1)  # (out, s)


def exact_saliency() -> np.ndarray:
    cell = math.ceil(SIZE / GRID)
    up = upsample_matrix(GRID, (GRID + 1) * cell)
    g = np.mean([up[t : t + SIZE] @ up[t : t + SIZE].T for t in range(cell)], axis=0)
    second = P1**2 + P1 * (1 - P1) * np.einsum("ij,kl->ikjl", g, g)  # E[M_(i,k) M_(j,l)]
    in_region = second[:, :, REGION[0], REGION[1]].mean(axis=(2, 3))
    sal = (A * P1 + B * in_region) / P1
    return (sal - sal.min()) / (sal.max() - sal.min())


@pytest.fixture(scope="module")
def setup():
    x = np.zeros((1, SIZE, SIZE, 3), np.float32)
    x[:, REGION[0], REGION[1], 0] = 1.0
    return RegionModel(), {}, jnp.asarray(x), exact_saliency()


def test_rise_converges_to_exact_expectation(setup):
    module, variables, x, truth = setup
    mean_err, max_err = [], []
    for n in (500, 8000, 128000):
        errs = []
        for seed in range(4):  # average out the luck of a single key
            est = baselines.rise(
                module,
                variables,
                x,
                target=0,
                key=jax.random.key(seed),
                n_masks=n,
                s=GRID,
                p1=P1,
                batch_size=8000,
            )
            errs.append(np.abs(np.asarray(est[0]) - truth))
        mean_err.append(float(np.mean(errs)))
        max_err.append(float(np.max(errs)))
    # Monte Carlo error ~ 1/sqrt(N): each 16x step should cut it about 4x.
    assert mean_err[1] < mean_err[0] / 2 and mean_err[2] < mean_err[1] / 2, mean_err
    assert max_err[2] < 0.04, max_err


def test_rise_peak_inside_region_and_keys_matter(setup):
    module, variables, x, _ = setup
    kw = dict(target=0, n_masks=2000, s=GRID, p1=P1, batch_size=2000)
    a = np.asarray(baselines.rise(module, variables, x, key=jax.random.key(0), **kw))[0]
    b = np.asarray(baselines.rise(module, variables, x, key=jax.random.key(1), **kw))[0]
    row, col = np.unravel_index(a.argmax(), a.shape)
    assert REGION[0].start <= row < REGION[0].stop and REGION[1].start <= col < REGION[1].stop
    assert np.abs(a - b).max() > 1e-3  # a different key draws different masks
