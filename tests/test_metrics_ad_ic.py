"""AD/IC on hand-made confidences: a fake model whose softmax equals the mean pixel value."""

import jax.numpy as jnp
import numpy as np
import pytest

from ttame_jax.metrics import ad_ic, ad_ic_summary

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # normalisation = identity


def mean_pixel_model(x):
    """Two classes with softmax [m, 1 - m], m = mean pixel value of each image."""
    m = jnp.clip(x.mean(axis=(1, 2, 3)), 1e-6, 1 - 1e-6)
    return jnp.stack([jnp.log(m), jnp.log(1 - m)], axis=-1)


@pytest.fixture
def setup():
    images = np.full((2, 4, 4, 3), 0.8, np.float32)
    maps = np.ones((2, 4, 4), np.float32)
    maps[:, :, 2:] = 0.5  # left half 1.0, right half 0.5
    return images, maps


def test_ad_ic_hand_computed(setup):
    images, maps = setup
    target = jnp.array([0, 1])
    out = ad_ic(mean_pixel_model, images, maps, target, mean=MEAN, std=STD)
    # Y: class 0 -> 0.8, class 1 -> 0.2
    np.testing.assert_allclose(out["confidence"], [0.8, 0.2], atol=1e-6)
    # 100 %: soft mask, mean = 0.8 * 0.75 = 0.6;  50 %: t = 0.75, right half zeroed,
    # mean = 0.4;  15 %: t = 1.0 (ties at the top stay), same as 50 %.
    m = np.array([0.6, 0.4, 0.4])
    np.testing.assert_allclose(out["masked_confidence"], np.stack([m, 1 - m]), atol=1e-6)
    np.testing.assert_allclose(out["drop"][0], (0.8 - m) / 0.8, atol=1e-6)
    np.testing.assert_allclose(out["drop"][1], 0.0, atol=1e-6)  # confidence went up
    np.testing.assert_array_equal(out["increase"], [[0, 0, 0], [1, 1, 1]])
    summary = ad_ic_summary(out)
    assert summary["AD"]["100%"] == pytest.approx(100 * 0.25 / 2, abs=1e-4)
    assert summary["AD"]["15%"] == pytest.approx(100 * 0.5 / 2, abs=1e-4)
    assert summary["IC"] == pytest.approx({"100%": 50.0, "50%": 50.0, "15%": 50.0})


def test_default_target_is_top1(setup):
    images, maps = setup
    out = ad_ic(mean_pixel_model, images, maps, mean=MEAN, std=STD)
    np.testing.assert_array_equal(out["target"], [0, 0])


def test_zero_confidence_gives_zero_drop(setup):
    images, maps = setup
    images = np.zeros_like(images)  # m clipped to 1e-6: Y ~ 0 for class 0
    out = ad_ic(mean_pixel_model, images, maps, jnp.array([0, 0]), mean=MEAN, std=STD)
    assert np.all(np.isfinite(np.asarray(out["drop"])))


def test_shape_errors(setup):
    images, maps = setup
    with pytest.raises(ValueError, match="upsample"):
        ad_ic(mean_pixel_model, images, maps[:, :2, :2], mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="one class index"):
        ad_ic(mean_pixel_model, images, maps, jnp.zeros((3,), int), mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="one value per channel"):
        ad_ic(mean_pixel_model, images, maps, mean=(0.0,), std=STD)
