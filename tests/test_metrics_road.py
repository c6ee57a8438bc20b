"""ROAD selection semantics of both compat modes, seen through a model that counts changes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttame_jax.metrics import road, road_summary

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
LEVELS = (0.1, 0.5, 0.9)


def _setup():
    rng = np.random.default_rng(0)
    images = rng.random((2, 16, 16, 3)).astype(np.float32)
    maps = rng.random((2, 16, 16)).astype(np.float32)
    maps[1, :, :8] = 1.0  # image 1: half the pixels tied at the maximum
    original = (images - np.float32(0.5)) / np.float32(0.25)

    def changed_fraction_model(x):
        """softmax[0] = share of pixels that differ from the original (normalised) image."""
        changed = jnp.any(jnp.abs(x - original) > 1e-6, axis=-1).mean(axis=(1, 2))
        p = jnp.clip(changed, 1e-6, 1 - 1e-6)
        return jnp.stack([jnp.log(p), jnp.log(1 - p)], axis=-1)

    return images, maps, changed_fraction_model


@pytest.mark.parametrize("compat", ["grad-cam", "road"])
def test_removed_share_per_compat(compat):
    images, maps, model = _setup()
    out = road(
        model,
        images,
        maps,
        jnp.array([0, 0]),
        jax.random.key(0),
        mean=MEAN,
        std=STD,
        levels=LEVELS,
        compat=compat,
    )
    for order in ("morf", "lerf"):
        removed = np.asarray(out[f"{order}_prob"])  # noise changes every removed pixel
        if compat == "road":  # exactly int(H W r) pixels, ties or not
            expected = np.array([int(256 * r) / 256 for r in LEVELS])
            np.testing.assert_allclose(removed, np.stack([expected, expected]), atol=1e-5)
        else:  # strict '<' percentile: the tied half goes at once under MoRF
            score = maps if order == "morf" else 1.0 - maps
            expected = [
                [(s >= np.percentile(s, 100 - 100 * r)).mean() for r in LEVELS] for s in score
            ]
            np.testing.assert_allclose(removed, expected, atol=1e-5)
    tied_share = 0.5 if compat == "grad-cam" else int(256 * 0.1) / 256
    np.testing.assert_allclose(out["morf_prob"][1, 0], tied_share, atol=1e-5)
    summary = road_summary(out, LEVELS)
    assert set(summary) == {"morf", "lerf"}
    assert summary["morf"]["prob_mean"] == pytest.approx(
        100 * float(np.mean(np.asarray(out["morf_prob"]))), 1e-4
    )


def test_bad_compat_and_levels():
    images, maps, model = _setup()
    with pytest.raises(ValueError, match="compat"):
        road(model, images, maps, None, jax.random.key(0), mean=MEAN, std=STD, compat="x")
    with pytest.raises(ValueError, match="removed fractions"):
        road(model, images, maps, None, jax.random.key(0), mean=MEAN, std=STD, levels=(10,))
