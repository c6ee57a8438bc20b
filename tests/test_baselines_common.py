"""Shared parts of the baselines: resizing, scaling, token grids, taps, options, FP."""

from __future__ import annotations

import sys
from typing import ClassVar

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy import ndimage

from ttame_jax import baselines
from ttame_jax.baselines import common
from ttame_jax.baselines.resize import resize

ablationcam_module = sys.modules["ttame_jax.baselines.ablationcam"]


class Tiny(nn.Module):
    """conv (6 channels, tap "features.1" after ReLU) -> global mean -> dense (4 classes)."""

    tap_paths: ClassVar[dict] = {"features.1": ("relu",)}

    @nn.compact
    def __call__(self, x):
        a = Relu(name="relu")(nn.Conv(6, (3, 3), 2, ((1, 1), (1, 1)), name="conv")(x))
        return nn.Dense(4, name="fc")(a.mean((1, 2)))


class Relu(nn.Module):
    def __call__(self, x):
        return nn.relu(x)


@pytest.fixture(scope="module")
def tiny():
    module = Tiny()
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    return module, module.init(jax.random.key(1), x), x


@pytest.mark.parametrize("shape_in, shape_out", [((7, 7), (224, 224)), ((5, 3), (17, 11))])
def test_resize_matches_the_three_references(shape_in, shape_out):
    a = np.random.default_rng(0).random(shape_in).astype(np.float32)
    # cv2.resize takes (width, height).
    np.testing.assert_allclose(resize(a, shape_out), cv2.resize(a, shape_out[::-1]), atol=1e-6)
    up = torch.nn.UpsamplingBilinear2d(size=shape_out)(torch.from_numpy(a)[None, None])
    np.testing.assert_allclose(resize(a, shape_out, "align_corners"), up[0, 0], atol=1e-6)
    zoom = [o / i for i, o in zip(shape_in, shape_out, strict=True)]
    ref = ndimage.zoom(a.astype(np.float64), zoom, order=1, mode="mirror", grid_mode=True)
    np.testing.assert_allclose(resize(a, shape_out, "half_pixel", "mirror"), ref, atol=1e-6)


def test_min_max_by_hand():
    maps = jnp.array([[[1.0, 3.0], [2.0, 5.0]]])
    want = np.array([[[0.0, 2.0], [1.0, 4.0]]]) / (4.0 + 1e-7)
    np.testing.assert_allclose(common.min_max(maps), want, rtol=1e-6)


def test_token_grid_drops_class_token_row_major():
    tokens = jnp.arange(5.0).reshape(1, 5, 1)  # class token 0, patches 1..4
    grid = common.to_grid(jnp.concatenate([tokens, -tokens], -1))
    np.testing.assert_array_equal(grid[0, :, :, 0], [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(grid[0, :, :, 1], [[-1.0, -2.0], [-3.0, -4.0]])
    with pytest.raises(ValueError, match="square grid"):
        common.to_grid(jnp.zeros((1, 6, 2)))


def test_gradient_at_tap_by_hand(tiny):
    module, variables, x = tiny
    _, target, act, grad = common.activation_and_grad(module, variables, x, ("relu",), None)
    # logit_c = sum_k W[k, c] mean_ij A_ijk + b_c  =>  d logit_c / d A_ijk = W[k, c] / (h w)
    w = variables["params"]["fc"]["kernel"]
    h, wd = act.shape[1:3]
    want = w[:, target].T[:, None, None, :] / (h * wd)
    np.testing.assert_allclose(grad, jnp.broadcast_to(want, grad.shape), rtol=1e-6)
    logits = module.apply(variables, x)
    np.testing.assert_array_equal(target, jnp.argmax(logits, -1))


def test_grad_cam_is_the_mean_weighted_cam(tiny):
    module, variables, x = tiny
    _, feats = module.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    act = feats["intermediates"]["relu"]["__call__"][0]
    target = jnp.array([1, 2])
    w = variables["params"]["fc"]["kernel"][:, target].T  # Grad-CAM weights here are W/(hw)
    cam = np.maximum(np.einsum("bc,bhwc->bhw", w, act), 0)
    cam = (cam - cam.min((1, 2), keepdims=True)) / (1e-7 + np.ptp(cam, axis=(1, 2), keepdims=True))
    want = np.stack([cv2.resize(np.float32(c), (16, 16)) for c in cam])
    want = (want - want.min((1, 2), keepdims=True)) / (
        1e-7 + np.ptp(want, axis=(1, 2), keepdims=True)
    )
    got = baselines.grad_cam(module, variables, x, "features.1", target=target)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_grad_cam_ablation_values_by_hand():
    # pytorch-grad-cam run with batch_size=32: channel k gets m - 1e7 * (1 + k mod 32).
    values = ablationcam_module._grad_cam_values(jnp.array([-2.0, 0.0]), 34, 32)
    np.testing.assert_array_equal(values[0, [0, 1, 2]], [-10000002.0, -20000002.0, -30000002.0])
    np.testing.assert_array_equal(values[0, [32, 33]], [-10000002.0, -20000002.0])
    np.testing.assert_array_equal(values[1], np.zeros(34))


@pytest.mark.parametrize("name", ["scorecam", "ablationcam", "rise"])
def test_batch_size_does_not_change_maps(name, tiny):
    module, variables, x = tiny
    opts = {"n_masks": 40} if name == "rise" else {}
    fn = baselines.METHODS[name].fn
    a = fn(module, variables, x, "features.1", batch_size=5, **opts)
    b = fn(module, variables, x, "features.1", batch_size=64, **opts)
    assert a.shape == (2, 16, 16)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_forward_pass_counts(tiny):
    module, variables, x = tiny
    fp = {name: m.fp(module, variables, x, "features.1") for name, m in baselines.METHODS.items()}
    assert fp == {"gradcam": 1, "gradcampp": 1, "scorecam": 6, "ablationcam": 6, "rise": 8000}
    assert baselines.METHODS["rise"].fp(module, variables, x, None, n_masks=4000) == 4000
    with pytest.raises(ValueError, match=r"bad options for method 'scorecam': \['n_masks'\]"):
        baselines.METHODS["scorecam"].check_options("scorecam", {"n_masks": 3})
    baselines.METHODS["rise"].check_options("rise", {"n_masks": 3, "key": None})  # fine


def test_bad_arguments_say_what_is_wrong(tiny):
    module, variables, x = tiny
    with pytest.raises(ValueError, match="valid tap names: features.1"):
        baselines.grad_cam(module, variables, x, "layer4")
    with pytest.raises(TypeError, match="torchvision node name"):
        baselines.score_cam(module, variables, x, None)
    with pytest.raises(ValueError, match="4-D NHWC"):
        baselines.grad_cam(module, variables, x[0], "features.1")
    with pytest.raises(ValueError, match=r"\(2,\) array"):
        baselines.grad_cam(module, variables, x, "features.1", target=[1, 2, 3])
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        baselines.grad_cam_pp(module, variables, x, "features.1", target=4)
    with pytest.raises(ValueError, match="batch_size"):
        baselines.ablation_cam(module, variables, x, "features.1", batch_size=0)
    with pytest.raises(ValueError, match="ablation_value"):
        baselines.ablation_cam(module, variables, x, "features.1", ablation_value="min")
    with pytest.raises(ValueError, match="p1"):
        baselines.rise(module, variables, x, p1=0.0)
