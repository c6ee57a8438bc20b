"""SSIM against hand-computed cases (Wang et al. 2004), Spearman edge cases, unit order."""

import jax
import numpy as np
import pytest

from ttame_jax import backbones
from ttame_jax.sanity import similarity
from ttame_jax.sanity.cascade import call_order, units

C1, C2 = 0.01**2, 0.03**2


def _antisymmetric(seed=0, size=11):
    """A pattern p with p[i, j] = -p[10 - i, j]: its Gaussian-weighted mean is exactly 0."""
    half = np.random.default_rng(seed).uniform(-0.2, 0.2, (size // 2, size))
    return np.concatenate([half, np.zeros((1, size)), -half[::-1]])


def test_gaussian_window_is_wangs():
    w = similarity.gaussian_window()
    r = np.arange(11) - 5
    expected = np.exp(-(r**2) / 4.5)
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-12)


def test_identical_images_give_one():
    x = np.random.default_rng(0).random((32, 40))
    assert similarity.ssim(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("a, b", [(0.2, 0.7), (0.0, 1.0), (0.5, 0.5)])
def test_constant_images(a, b):
    # No variance anywhere: SSIM = (2ab + C1) / (a^2 + b^2 + C1) in every window.
    got = similarity.ssim(np.full((16, 16), a), np.full((16, 16), b))
    assert got == pytest.approx((2 * a * b + C1) / (a * a + b * b + C1), rel=1e-10)


def test_single_window_shift_and_sign_flip():
    # One 11x11 window, x = m + p with weighted mean(p) = 0 (so mu_x = m).
    p, m = _antisymmetric(), 0.5
    w2 = np.outer(similarity.gaussian_window(), similarity.gaussian_window())
    var = float((w2 * p * p).sum())
    # y = x + s: only the luminance term changes; the structure terms cancel.
    s = 0.25
    want = (2 * m * (m + s) + C1) / (m * m + (m + s) ** 2 + C1)
    assert similarity.ssim(m + p, m + p + s) == pytest.approx(want, rel=1e-10)
    # y = m - p: same mean and variance, covariance -var.
    want = (C2 - 2 * var) / (2 * var + C2)
    assert similarity.ssim(m + p, m - p) == pytest.approx(want, rel=1e-10)
    assert want < -0.9


def test_ssim_errors():
    with pytest.raises(ValueError, match="at least 11x11"):
        similarity.ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="one shape"):
        similarity.ssim(np.zeros((12, 12)), np.zeros((12, 13)))


def test_spearman_ranks_and_constant_maps():
    x = np.random.default_rng(1).random((8, 8))
    assert similarity.spearman(x, np.exp(3 * x)) == pytest.approx(1.0)
    assert similarity.spearman(x, -x) == pytest.approx(-1.0)
    assert np.isnan(similarity.spearman(x, np.zeros_like(x)))


def _units(name):
    spec, module = backbones.get_spec(name), backbones.create(name)
    x = jax.ShapeDtypeStruct((1, spec.input_size, spec.input_size, 3), np.float32)
    variables = jax.eval_shape(module.init, jax.random.key(0), x)
    order = call_order(lambda v, x: module.apply(v, x), variables, x)
    return [".".join(u) for u in units(variables["params"], order)]


def test_units_follow_the_forward_pass_not_the_key_order():
    # The params dicts are key-sorted (bn1 < conv1, features_10 < features_2).
    assert _units("synthetic_cnn") == ["conv1", "bn1", "layer1.0", "layer2.0", "layer3.0", "fc"]
    features = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert _units("vgg16") == [f"features_{i}" for i in features] + [
        "classifier_0", "classifier_3", "classifier_6"
    ]  # fmt: skip
