"""Insertion/deletion AUC on a model whose answer is known by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from ttame_jax.metrics import auc, gaussian_blur, insertion_deletion

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def left_half_model(x):
    """Softmax of class 0 = 2 * mean pixel value (= share of the bright left half left)."""
    m = jnp.clip(2.0 * x.mean(axis=(1, 2, 3)), 1e-6, 1 - 1e-6)
    return jnp.stack([jnp.log(m), jnp.log(1 - m)], axis=-1)


def test_auc_of_straight_lines():
    np.testing.assert_allclose(auc(jnp.linspace(1.0, 0.0, 11)), 0.5, atol=1e-6)
    np.testing.assert_allclose(auc(jnp.ones(5)), 1.0, atol=1e-6)


def test_blur_keeps_constants():
    x = jnp.full((1, 16, 16, 3), 0.3)
    np.testing.assert_allclose(gaussian_blur(x), 0.3, atol=1e-6)


@pytest.mark.parametrize(("good_map", "expected"), [(True, 0.25), (False, 0.75)])
def test_deletion_known_answer(good_map, expected):
    images = np.zeros((1, 8, 8, 3), np.float32)
    images[:, :, :4] = 1.0  # evidence: left half
    maps = np.zeros((1, 8, 8), np.float32)
    maps[:, :, :4] = 1.0
    if not good_map:
        maps = 1.0 - maps
    out = insertion_deletion(
        left_half_model,
        images,
        maps,
        jnp.array([0]),
        mean=MEAN,
        std=STD,
        steps=8,
        substrate="zero",
        chunk=3,
    )
    # good map: deletes the left half in the first 4 of 8 steps, p falls 1 -> 0 then stays:
    # AUC = 0.5 * 0.5 = 0.25; reversed map: p stays 1 for 4 steps, then falls: 0.75.
    np.testing.assert_allclose(out["deletion_auc"], [expected], atol=1e-4)
    curve = np.asarray(out["deletion_curve"][0])
    assert curve.shape == (9,) and curve[0] == pytest.approx(1.0, abs=1e-4)
    # insertion starts from the blurred image and ends at the original (p = 1)
    assert out["insertion_curve"][0, -1] == pytest.approx(1.0, abs=1e-4)


def test_mean_substrate_is_normalisation_mean():
    images = np.full((1, 4, 4, 3), 0.9, np.float32)
    mean = (0.25, 0.25, 0.25)
    out = insertion_deletion(
        lambda x: left_half_model(x * STD[0] + 0.25),
        images,
        np.ones((1, 4, 4)),
        jnp.array([0]),
        mean=mean,
        std=STD,
        steps=1,
    )
    # after deleting everything the image is the mean colour: p = 2 * 0.25 = 0.5
    assert out["deletion_curve"][0, -1] == pytest.approx(0.5, abs=1e-4)
