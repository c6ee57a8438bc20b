"""Baselines vs pytorch-grad-cam 1.5.7 on a tiny twin conv net (torch and Flax, same weights).

The net has a ReLU tap (minimum 0: Ablation-CAM ablates to 0) and a pre-ReLU conv
tap (negative activations: Grad-CAM++'s ``sum A`` changes sign, Ablation-CAM uses
pytorch-grad-cam's ``min - 1e7 k`` values). Token (ViT) taps are tested on a small
torchvision ``VisionTransformer`` in ``test_baselines_parity_backbones.py``.

Tolerance: maps agree within 1e-4 (max abs, maps in [0, 1]); what remains is
float32 rounding of two different implementations of the same arithmetic.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from pytorch_grad_cam import AblationCAM, GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from ttame_jax import baselines

TOL = 1e-4
SIZE = 32
CLASSES = 10


class TorchCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.relu2 = torch.nn.ReLU()
        self.fc = torch.nn.Linear(12, CLASSES)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


class ReLU(nn.Module):
    def __call__(self, x):
        return nn.relu(x)


class FlaxCNN(nn.Module):
    tap_paths: ClassVar[dict] = {"conv2": ("conv2",), "relu2": ("relu2",)}

    @nn.compact
    def __call__(self, x):
        pad = ((1, 1), (1, 1))
        x = ReLU(name="relu1")(nn.Conv(8, (3, 3), 2, pad, name="conv1")(x))
        x = ReLU(name="relu2")(nn.Conv(12, (3, 3), 2, pad, name="conv2")(x))
        return nn.Dense(CLASSES, name="fc")(x.mean((1, 2)))


def _t(p):
    return jnp.asarray(p.detach().numpy())


def _conv(m):
    return {"kernel": _t(m.weight).transpose(2, 3, 1, 0), "bias": _t(m.bias)}


def _dense(m):
    return {"kernel": _t(m.weight).T, "bias": _t(m.bias)}


def cnn_pair():
    torch.manual_seed(0)
    tm = TorchCNN().eval()
    params = {"conv1": _conv(tm.conv1), "conv2": _conv(tm.conv2), "fc": _dense(tm.fc)}
    return tm, FlaxCNN(), {"params": params}


def reference(name, torch_model, layer, x_nchw, target=None, **kw):
    """pytorch-grad-cam's maps for method ``name`` (numpy ``(B, H, W)``); AblationCAM runs
    with ``batch_size=8``, as in the T-TAME reference (our default)."""
    cls = {
        "gradcam": GradCAM,
        "gradcampp": GradCAMPlusPlus,
        "scorecam": ScoreCAM,
        "ablationcam": AblationCAM,
    }[name]
    targets = None if target is None else [ClassifierOutputTarget(int(t)) for t in target]
    if name == "ablationcam":
        kw.setdefault("batch_size", 8)
    with cls(torch_model, [getattr(torch_model, layer)]) as cam:
        for key, value in kw.items():
            setattr(cam, key, value)
        return cam(input_tensor=x_nchw, targets=targets)


def ours(name, module, variables, x_nhwc, layer, target=None, **kw):
    fn = baselines.METHODS[name].fn
    return np.asarray(fn(module, variables, x_nhwc, layer, target, **kw))


def test_ablation_value_follows_the_reference_batch_size(images):
    """Issue 12 D10: pytorch-grad-cam's ablation values depend on its batch_size (8 in the
    T-TAME reference, 32 its default); conv2 has 12 channels, so 8 and 32 differ."""
    from ttame_jax.baselines.ablationcam import _grad_cam_values

    tm, fm, variables = cnn_pair()
    x, xt = images
    for b in (8, 32):
        want = reference("ablationcam", tm, "conv2", xt, batch_size=b)
        got = ours("ablationcam", fm, variables, x, "conv2", reference_batch_size=b)
        np.testing.assert_allclose(got, want, atol=TOL)
    # The values themselves (a ReLU after conv2 hides them in these maps): channel k gets
    # m - 1e7 * (1 + k mod b) for a tap whose minimum m is not 0.
    minimum = jnp.asarray([-3.0])
    v8, v32 = (np.asarray(_grad_cam_values(minimum, 12, b))[0] for b in (8, 32))
    np.testing.assert_allclose(v8[9], -3.0 - 2e7, rtol=1e-6)  # 9 mod 8 = 1
    np.testing.assert_allclose(v32[9], -3.0 - 1e8, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(_grad_cam_values(jnp.zeros(1), 12, 8)), 0.0)


@pytest.fixture(scope="module")
def images():
    x = np.random.default_rng(0).normal(size=(3, SIZE, SIZE, 3)).astype(np.float32)
    return x, torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


CAMS = ["gradcam", "gradcampp", "scorecam", "ablationcam"]


@pytest.mark.parametrize("name", CAMS)
@pytest.mark.parametrize("layer", ["relu2", "conv2"])
def test_cnn_matches_pytorch_grad_cam(name, layer, images):
    tm, fm, variables = cnn_pair()
    x, xt = images
    want = reference(name, tm, layer, xt)
    got = ours(name, fm, variables, x, layer)
    assert got.shape == want.shape == (3, SIZE, SIZE)
    np.testing.assert_allclose(got, want, atol=TOL)


@pytest.mark.parametrize("name", CAMS)
def test_explicit_targets_match(name, images):
    tm, fm, variables = cnn_pair()
    x, xt = images
    target = np.array([3, 0, 7])
    want = reference(name, tm, "relu2", xt, target=target)
    got = ours(name, fm, variables, x, "relu2", target=target)
    np.testing.assert_allclose(got, want, atol=TOL)
