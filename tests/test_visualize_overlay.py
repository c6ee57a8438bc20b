"""Overlay blend against hand-computed jet colours; figures render to PNG files."""

import numpy as np
import pytest
from PIL import Image

from ttame_jax import visualize


def test_blend_matches_hand_values():
    # jet(0) = (0, 0, 0.5), jet(1) = (0.5, 0, 0); 50 % blend on a 0.2 grey image.
    image = np.full((2, 3, 3), 0.2, np.float32)
    saliency = np.array([[0.0, 1.0, 2.0], [-1.0, 0.0, 1.0]], np.float32)  # clipped to [0, 1]
    out = visualize.overlay(image, saliency)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    low = np.round(255 * np.array([0.1, 0.1, 0.1 + 0.25]))
    high = np.round(255 * np.array([0.1 + 0.25, 0.1, 0.1]))
    for ij, want in {(0, 0): low, (0, 1): high, (0, 2): high, (1, 0): low}.items():
        np.testing.assert_array_equal(out[ij], want)
    np.testing.assert_array_equal(visualize.overlay(image, saliency, alpha=0.0)[0, 0], [51] * 3)


def test_uint8_image_and_saved_png(tmp_path):
    image = np.full((5, 4, 3), 51, np.uint8)
    path = visualize.save_overlay(tmp_path / "o.png", image, np.zeros((5, 4)))
    with Image.open(path) as img:
        assert img.size == (4, 5) and img.mode == "RGB"
        np.testing.assert_array_equal(
            np.asarray(img), visualize.overlay(image / 255.0, np.zeros((5, 4)))
        )


def test_clear_errors():
    with pytest.raises(ValueError, match="does not match"):
        visualize.overlay(np.zeros((4, 4, 3)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="one map"):
        visualize.overlay(np.zeros((4, 4, 3)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="RGB image"):
        visualize.overlay(np.zeros((4, 4)), np.zeros((4, 4)))


def test_figures_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    image, maps = rng.random((16, 16, 3)), rng.random((3, 16, 16))
    for name, call in {
        "topk": lambda p: visualize.topk_figure(image, maps, ["a", "b", "c"], save=p),
        "methods": lambda p: visualize.methods_figure(image, {"x": maps[0], "y": maps[1]}, save=p),
        "sanity": lambda p: visualize.sanity_figure(
            image[None], maps[None], ["s1", "s2"], scores=np.ones((1, 2)), save=p
        ),
    }.items():
        fig = call(tmp_path / f"{name}.png")
        with Image.open(tmp_path / f"{name}.png") as img:
            w, h = img.size
        assert (w, h) == tuple(round(v * 100) for v in fig.get_size_inches())
    with pytest.raises(ValueError, match="k titles"):
        visualize.topk_figure(image, maps, ["a"])
    with pytest.raises(ValueError, match="do not fit"):
        visualize.sanity_figure(image[None], maps[None], ["only one"])
