"""noisy_linear_impute vs pytorch-grad-cam's NoisyLinearImputer (SciPy spsolve), and edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from ttame_jax.metrics import noisy_linear_impute, solve_linear_imputation

TOL = 2e-3  # normalised units


def _reference(image, keep):
    """SciPy solution for one HWC image; ``keep`` True = kept pixel."""
    out = NoisyLinearImputer(noise=0.0)(
        torch.tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
        torch.tensor(keep.astype(np.float32)),
    )
    return out.numpy().transpose(1, 2, 0)


def _normalised_images(rng, n, size):
    x = ndi.gaussian_filter(rng.random((n, size, size, 3)), (0, 1.0, 1.0, 0))
    x = (x - x.min()) / (x.max() - x.min())
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((x - mean) / std).astype(np.float32)


def _masks(rng, size):
    """Keep masks: random 10..90 % removed, map ties, holes on borders and corners."""
    masks = [rng.random((size, size)) >= frac for frac in (0.1, 0.3, 0.5, 0.7, 0.9)]
    smooth = ndi.zoom(rng.random((4, 4)), size / 4, order=1)
    tied = np.round(smooth * 3) / 3  # a map with large ties; strict < percentile rule
    masks += [tied < np.percentile(tied, p) for p in (30, 60, 90)]
    holes = np.ones((size, size), bool)
    holes[: size // 3, : size // 3] = False  # top-left corner block
    holes[-2:, :] = False  # bottom border strip
    holes[size // 2 :, -size // 4 :] = False  # right border, down to the corner
    masks.append(holes)
    masks.append(smooth < np.percentile(smooth, 10))  # 90 % removed, one blob kept
    return np.stack(masks)


def test_matches_scipy_reference_small():
    rng = np.random.default_rng(0)
    size = 40
    keep = _masks(rng, size)
    images = _normalised_images(rng, len(keep), size)
    out = np.asarray(noisy_linear_impute(images, keep, jax.random.key(0), noise=0.0))
    for i in range(len(keep)):
        ref = _reference(images[i], keep[i])
        assert np.abs(out[i] - ref).max() <= TOL, f"mask {i}"
        np.testing.assert_array_equal(out[i][keep[i]], images[i][keep[i]])


@pytest.mark.parametrize("removed", [0.1, 0.7])
def test_matches_scipy_reference_224(removed):
    """MoRF-like masks of a 7x7-upsampled map: at 10 % several small scattered holes (the
    level where SciPy is fastest), at 70 % one big removed region with kept islands."""
    rng = np.random.default_rng(1)
    smooth = ndi.zoom(rng.random((7, 7)), 32, order=1)
    keep = (smooth < np.percentile(smooth, 100 * (1 - removed)))[None]
    images = _normalised_images(rng, 1, 224)
    out = np.asarray(noisy_linear_impute(images, keep, jax.random.key(0), noise=0.0))
    assert np.abs(out[0] - _reference(images[0], keep[0])).max() <= TOL


@pytest.fixture(scope="module")
def edge_cases():
    """One batch (one compile): all removed, nothing removed, a single kept pixel."""
    rng = np.random.default_rng(2)
    images = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    images[2] = 0.0
    images[2, 5, 7] = 2.5
    keep = np.zeros((3, 16, 16), bool)
    keep[1] = True
    keep[2, 5, 7] = True
    out, iterations = solve_linear_imputation(images, keep)
    return images, keep, np.asarray(out), np.asarray(iterations)


def test_all_removed_gives_channel_mean_without_nans(edge_cases):
    images, keep, out, iterations = edge_cases
    np.testing.assert_allclose(
        out[0], np.broadcast_to(images[0].mean(axis=(0, 1)), out[0].shape), atol=1e-6
    )
    assert iterations[0] == 0
    noisy = noisy_linear_impute(images, keep, jax.random.key(1), noise=0.01)
    assert np.all(np.isfinite(np.asarray(noisy)))


def test_nothing_removed_is_identity(edge_cases):
    images, _, out, iterations = edge_cases
    np.testing.assert_array_equal(out[1], images[1])
    assert iterations[1] == 0


def test_single_kept_pixel_fills_with_its_value(edge_cases):
    _, _, out, _ = edge_cases
    np.testing.assert_allclose(out[2], 2.5, atol=1e-3)


def test_noise_only_on_removed_pixels_with_requested_scale():
    rng = np.random.default_rng(4)
    images = rng.random((3, 16, 16, 3)).astype(np.float32)
    keep = rng.random((3, 16, 16)) >= 0.5
    clean = np.asarray(noisy_linear_impute(images, keep, jax.random.key(0), noise=0.0))
    noisy = np.asarray(noisy_linear_impute(images, keep, jax.random.key(0), noise=0.05))
    diff = (noisy - clean)[~keep]
    np.testing.assert_array_equal((noisy - clean)[keep], 0.0)
    assert abs(diff.std() - 0.05) < 0.006 and abs(diff.mean()) < 0.006


def test_odd_sizes_without_multigrid_levels():
    rng = np.random.default_rng(5)
    images = _normalised_images(rng, 1, 21)
    keep = rng.random((1, 21, 21)) >= 0.6
    out = np.asarray(noisy_linear_impute(images, keep, jax.random.key(0), noise=0.0))
    assert np.abs(out[0] - _reference(images[0], keep[0])).max() <= TOL


@pytest.mark.parametrize(
    ("images", "keep", "message"),
    [
        (np.zeros((8, 8, 3)), np.ones((8, 8), bool), "NHWC"),
        (np.zeros((1, 8, 8, 3)), np.ones((1, 8, 9), bool), "keep must have shape"),
        (np.zeros((1, 8, 8, 3)), np.ones((1, 8, 8)), "bool mask"),
    ],
)
def test_bad_inputs_raise(images, keep, message):
    with pytest.raises(ValueError, match=message):
        noisy_linear_impute(jnp.asarray(images), jnp.asarray(keep), jax.random.key(0))


def _scipy_system(removed):
    """SciPy sparse matrix of the imputation system on the removed cells of a small grid."""
    import scipy.sparse as sp

    from ttame_jax.metrics.stencil import NEIGHBOUR_WEIGHTS

    h, w = removed.shape
    index = -np.ones((h, w), int)
    index[removed] = np.arange(removed.sum())
    rows, cols, vals = [], [], []
    for y, x in zip(*np.nonzero(removed), strict=True):
        total = 0.0
        for dy, dx, weight in NEIGHBOUR_WEIGHTS:
            if 0 <= y + dy < h and 0 <= x + dx < w:
                total += weight
                if removed[y + dy, x + dx]:
                    rows.append(index[y, x]), cols.append(index[y + dy, x + dx])
                    vals.append(-weight)
        rows.append(index[y, x]), cols.append(index[y, x]), vals.append(total)
    n = int(removed.sum())
    return sp.csc_matrix((vals, (rows, cols)), shape=(n, n))


@pytest.mark.parametrize("size", [7, 10])
def test_coarsest_direct_solve_matches_spsolve(size):
    """The dense pseudo-inverse of the coarsest grid solves the same system as spsolve."""
    from scipy.sparse.linalg import spsolve

    from ttame_jax.metrics.stencil import Level, _direct_solve, coarsest_inverse, weight_sum

    rng = np.random.default_rng(6)
    removed = rng.random((2, size, size)) < 0.7
    removed[1, 1:-1, 1:-1] = True  # one ring of kept cells around a removed block
    rhs = rng.normal(size=(2, 3, size, size)).astype(np.float32) * removed[:, None]
    mask = jnp.asarray(removed[:, None], jnp.float32)
    s = weight_sum(size, size)
    out = np.asarray(_direct_solve(jnp.asarray(rhs), Level(mask, s, coarsest_inverse(mask, s))))
    for i in range(2):
        ref = spsolve(_scipy_system(removed[i]), rhs[i][:, removed[i]].T.astype(np.float64))
        np.testing.assert_allclose(out[i][:, removed[i]], ref.T, atol=2e-4, rtol=1e-4)
        assert np.all(out[i][:, ~removed[i]] == 0)


def test_coarsest_direct_solve_all_unknown_drops_the_constant_mode():
    """Every cell unknown (singular matrix): the pseudo-inverse stays finite and solves the
    system up to constants (a right-hand side orthogonal to them is solved exactly)."""
    from ttame_jax.metrics.stencil import Level, _direct_solve, coarsest_inverse, weight_sum

    rng = np.random.default_rng(7)
    mask = jnp.ones((1, 1, 7, 7), jnp.float32)
    s = weight_sum(7, 7)
    rhs = rng.normal(size=(1, 1, 7, 7)).astype(np.float32)
    rhs -= rhs.mean()  # orthogonal to the null space (constants; A is symmetric)
    x = _direct_solve(jnp.asarray(rhs), Level(mask, s, coarsest_inverse(mask, s)))
    matrix = _scipy_system(np.ones((7, 7), bool)).toarray()
    np.testing.assert_allclose(matrix @ np.asarray(x).reshape(-1), rhs.reshape(-1), atol=1e-4)


def test_full_multigrid_guess_is_already_close():
    """The full-multigrid initial guess (no fine CG iteration) is clearly closer to
    spsolve's solution than the kept pixels' mean; the CG only polishes it."""
    rng = np.random.default_rng(8)
    size = 64
    smooth = ndi.zoom(rng.random((4, 4)), size / 4, order=1)
    keep = (smooth < np.percentile(smooth, 50))[None]
    images = _normalised_images(rng, 1, size)
    out, iterations = solve_linear_imputation(images, keep, max_iter=0)
    assert int(iterations[0]) == 0
    ref = _reference(images[0], keep[0])
    mean_fill = np.where(keep[0][..., None], images[0], images[0][keep[0]].mean(axis=0))
    error = np.abs(np.asarray(out[0]) - ref)
    assert error.max() < 0.6 * np.abs(mean_fill - ref).max()
    assert error.mean() < 0.4 * np.abs(mean_fill - ref).mean()
