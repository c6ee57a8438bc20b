"""Baselines vs pytorch-grad-cam 1.5.7 on tiny twin models (torch and Flax, same weights).

Two small models keep these tests fast while covering both code paths:

- a conv net (NHWC feature maps) with a ReLU tap (minimum 0: Ablation-CAM ablates
  to 0) and a pre-ReLU conv tap (negative values: pytorch-grad-cam's ``min - 1e7 k``
  ablation values);
- a token model shaped like a ViT (class token + 4x4 patch tokens, pre-norm block
  whose ``ln_1`` is the tap), explained with pytorch-grad-cam's ViT
  ``reshape_transform`` and ``AblationLayerVit``.

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
from pytorch_grad_cam.ablation_layer import AblationLayerVit
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


class TorchTokens(torch.nn.Module):
    """Patch embedding, class token, one pre-norm block with token mixing, head."""

    def __init__(self, dim=16, patch=8):
        super().__init__()
        self.conv_proj = torch.nn.Conv2d(3, dim, patch, stride=patch)
        self.class_token = torch.nn.Parameter(torch.randn(1, 1, dim))
        self.pos = torch.nn.Parameter(torch.randn(1, 1 + (SIZE // patch) ** 2, dim))
        self.ln_1 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.mix = torch.nn.Linear(dim, dim)
        self.ln = torch.nn.LayerNorm(dim, eps=1e-6)
        self.head = torch.nn.Linear(dim, CLASSES)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], 1) + self.pos
        y = self.ln_1(x)
        x = x + torch.tanh(self.mix(y)) + y.mean(1, keepdim=True) ** 2
        return self.head(self.ln(x)[:, 0])


class FlaxTokens(nn.Module):
    tap_paths: ClassVar[dict] = {"ln_1": ("ln_1",)}

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(16, (8, 8), 8, "VALID", name="conv_proj")(x)
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        cls = self.param("class_token", nn.initializers.zeros, (1, 1, d))
        pos = self.param("pos", nn.initializers.zeros, (1, 1 + h * w, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], 1) + pos
        y = nn.LayerNorm(1e-6, name="ln_1")(x)
        x = x + jnp.tanh(nn.Dense(d, name="mix")(y)) + y.mean(1, keepdims=True) ** 2
        return nn.Dense(CLASSES, name="head")(nn.LayerNorm(1e-6, name="ln")(x)[:, 0])


def _t(p):
    return jnp.asarray(p.detach().numpy())


def _conv(m):
    return {"kernel": _t(m.weight).transpose(2, 3, 1, 0), "bias": _t(m.bias)}


def _dense(m):
    return {"kernel": _t(m.weight).T, "bias": _t(m.bias)}


def _norm(m):
    return {"scale": _t(m.weight), "bias": _t(m.bias)}


def cnn_pair():
    torch.manual_seed(0)
    tm = TorchCNN().eval()
    params = {"conv1": _conv(tm.conv1), "conv2": _conv(tm.conv2), "fc": _dense(tm.fc)}
    return tm, FlaxCNN(), {"params": params}


def token_pair():
    torch.manual_seed(1)
    tm = TorchTokens().eval()
    with torch.no_grad():  # non-trivial LayerNorm affine
        tm.ln_1.weight.normal_(1.0, 0.3)
        tm.ln_1.bias.normal_(0.0, 0.3)
    params = {
        "conv_proj": _conv(tm.conv_proj),
        "class_token": _t(tm.class_token),
        "pos": _t(tm.pos),
        "ln_1": _norm(tm.ln_1),
        "mix": _dense(tm.mix),
        "ln": _norm(tm.ln),
        "head": _dense(tm.head),
    }
    return tm, FlaxTokens(), {"params": params}


def vit_reshape(t):
    b, n, d = t.shape
    side = int(round((n - 1) ** 0.5))
    return t[:, 1:, :].reshape(b, side, side, d).permute(0, 3, 1, 2)


def reference(name, torch_model, layer, x_nchw, target=None, vit=False):
    """pytorch-grad-cam's maps for method ``name`` (numpy ``(B, H, W)``)."""
    kw = {"reshape_transform": vit_reshape} if vit else {}
    if name == "ablationcam" and vit:
        kw["ablation_layer"] = AblationLayerVit()
    cls = {
        "gradcam": GradCAM,
        "gradcampp": GradCAMPlusPlus,
        "scorecam": ScoreCAM,
        "ablationcam": AblationCAM,
    }[name]
    targets = None if target is None else [ClassifierOutputTarget(int(t)) for t in target]
    with cls(torch_model, [getattr(torch_model, layer)], **kw) as cam:
        return cam(input_tensor=x_nchw, targets=targets)


def ours(name, module, variables, x_nhwc, layer, target=None):
    return np.asarray(baselines.METHODS[name].fn(module, variables, x_nhwc, layer, target))


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
def test_tokens_match_pytorch_grad_cam_with_vit_reshape(name, images):
    tm, fm, variables = token_pair()
    x, xt = images
    want = reference(name, tm, "ln_1", xt, vit=True)
    got = ours(name, fm, variables, x, "ln_1")
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
