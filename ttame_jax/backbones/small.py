"""Small backbones for the synthetic ground-truth benchmark, trained from scratch.

- ``synthetic_cnn``: a ResNet-18-like network with one BasicBlock per stage
  (``conv1 -> layer1 (32 px) -> layer2 (16 px) -> layer3 (8 px) -> fc``).
- ``synthetic_vit``: a hybrid ViT: ``synthetic_cnn``'s stem gives an 8 x 8
  token grid, then a class token and 4 pre-LN encoder blocks; it reuses
  ``vit_b_16``'s :class:`~ttame_jax.backbones.vit.Encoder`, so the Flax paths
  are torchvision's (``encoder/layers/encoder_layer_k/ln_1`` ...).

Both take NHWC float32 input normalised with the synthetic data's own
mean / std (:data:`ttame_jax.data.synthetic.MEAN`, ``STD``), not ImageNet's,
and are registered with the 8 synthetic class names. ``train=True`` switches
BatchNorm to batch statistics (for :mod:`ttame_jax.training.classifier`).
"""

from __future__ import annotations

import functools
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ttame_jax.backbones.registry import BackboneSpec, register
from ttame_jax.backbones.validation import check_input
from ttame_jax.backbones.vit import Encoder
from ttame_jax.data import synthetic

INPUT_SIZE = 64


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock``: two 3x3 convs with BatchNorm and a residual."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = functools.partial(
            nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5
        )
        pad = ((1, 1), (1, 1))
        s = (self.strides, self.strides)
        y = nn.Conv(self.features, (3, 3), s, padding=pad, use_bias=False, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = nn.Conv(self.features, (3, 3), padding=pad, use_bias=False, name="conv2")(y)
        y = norm(name="bn2")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), s, use_bias=False, name="downsample_0")(x)
            x = norm(name="downsample_1")(x)
        return nn.relu(y + x)


class Stage(nn.Module):
    """One ResNet stage (torchvision ``layerK``): ``blocks`` BasicBlocks named 0, 1, ..."""

    features: int
    blocks: int
    strides: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i in range(self.blocks):
            x = BasicBlock(self.features, self.strides if i == 0 else 1, name=str(i))(x, train)
        return x


def resnet_stem(x, train: bool, widths: tuple[int, int, int], blocks: int):
    """``conv1 -> bn1 -> relu -> layer1 .. layer3`` (strides 1, 2, 2): 64 px -> 8 x 8.

    Called inside a compact ``__call__``, so the modules belong to the caller with
    these (torchvision) names: the hybrid ViT's stem has the CNN's parameter paths.
    """
    x = nn.Conv(widths[0], (3, 3), (2, 2), padding=((1, 1), (1, 1)), use_bias=False, name="conv1")(
        x
    )
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn1")(x)
    x = nn.relu(x)
    for k, (width, stride) in enumerate(zip(widths, (1, 2, 2), strict=True), start=1):
        x = Stage(width, blocks, stride, name=f"layer{k}")(x, train)
    return x


class SyntheticCNN(nn.Module):
    """Small ResNet: ``(B, 64, 64, 3)`` normalised -> logits ``(B, 8)``.

    ``conv1`` (3x3, stride 2) -> ``layer1`` (stride 1) -> ``layer2``, ``layer3``
    (stride 2) -> global mean -> ``fc``. Taps (NHWC, default widths):
    ``layer1`` 16@32², ``layer2`` 32@16², ``layer3`` 64@8².
    """

    num_classes: int = synthetic.NUM_CLASSES
    widths: tuple[int, int, int] = (16, 32, 64)
    blocks: int = 1  # BasicBlocks per stage

    tap_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        name: (name,) for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "fc")
    }

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, "synthetic_cnn", INPUT_SIZE)
        x = resnet_stem(x, train, self.widths, self.blocks)
        return nn.Dense(self.num_classes, name="fc")(jnp.mean(x, axis=(1, 2)))


_VIT_DEPTH = 4


def _vit_taps(depth: int) -> dict[str, tuple[str, ...]]:
    taps = {"conv_proj": ("conv_proj",)}
    for k in range(depth):
        node = f"encoder.layers.encoder_layer_{k}"
        block = ("encoder", "layers", f"encoder_layer_{k}")
        taps[f"{node}.ln"] = (*block, "ln_1")  # the paper's taps (reference name of ln_1)
        taps[f"{node}.ln_1"] = (*block, "ln_1")
        taps[node] = block  # block outputs
    taps["encoder.ln"] = ("encoder", "ln")
    return taps


class SyntheticViT(nn.Module):
    """Small hybrid ViT: ``(B, 64, 64, 3)`` normalised -> logits ``(B, 8)``.

    The ViT paper's hybrid architecture (Dosovitskiy et al. 2021, sec. 3.1): the
    patch embedding ``conv_proj`` (1x1) reads the 8 x 8 feature map of a ResNet
    stem, here ``synthetic_cnn``'s own ``conv1 .. layer3`` (same names and shapes,
    so the trained CNN's weights start it, as the paper's hybrids started from a
    trained ResNet). Then a class token, ``encoder`` (4 pre-LN blocks,
    torchvision's names) and ``heads_head`` on the class token, which the blocks'
    attention must fill from the 64 patch tokens. A plain patch-embedding ViT
    stays at chance for hundreds of steps on this data, more than the budget of
    the benchmark allows. Taps: token sequences ``(B, 1 + 64, hidden)`` (class
    token first).
    """

    num_classes: int = synthetic.NUM_CLASSES
    stem_widths: tuple[int, int, int] = SyntheticCNN.widths
    hidden: int = 64
    num_heads: int = 2
    mlp_dim: int = 128

    tap_paths: ClassVar[dict[str, tuple[str, ...]]] = _vit_taps(_VIT_DEPTH)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, "synthetic_vit", INPUT_SIZE)
        x = resnet_stem(x, train, self.stem_widths, blocks=1)
        x = nn.Conv(self.hidden, (1, 1), name="conv_proj")(x)
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)  # row-major patches, as torchvision
        cls = self.param("class_token", nn.initializers.zeros, (1, 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], axis=1)
        x = Encoder(_VIT_DEPTH, self.num_heads, self.mlp_dim, name="encoder")(x)
        return nn.Dense(self.num_classes, name="heads_head")(x[:, 0])


_COMMON = dict(
    input_size=INPUT_SIZE,
    num_classes=synthetic.NUM_CLASSES,
    mean=synthetic.MEAN,
    std=synthetic.STD,
    class_names=synthetic.CLASS_NAMES,
)
register(
    BackboneSpec(
        name="synthetic_cnn",
        kind="cnn",
        builder=SyntheticCNN,
        taps=("layer1", "layer2", "layer3"),
        **_COMMON,
    )
)
register(
    BackboneSpec(
        name="synthetic_vit",
        kind="vit",
        builder=SyntheticViT,
        taps=tuple(f"encoder.layers.encoder_layer_{k}.ln" for k in range(1, _VIT_DEPTH)),
        **_COMMON,
    )
)
