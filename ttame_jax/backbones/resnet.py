"""ResNet-50 (torchvision ``resnet50``, v1.5: stride on the 3x3 conv) in Flax linen.

Submodule names mirror torchvision's state-dict keys: ``layer3.2.conv2`` is the
Flax path ``layer3/2/conv2``; a block's ``downsample.0/.1`` are
``downsample_0/_1``. The stem (``conv1``, ``bn1``, ``relu``, ``maxpool``), the
four stages and ``avgpool`` are submodules, so each can be tapped by name.
BatchNorm uses its running statistics (eval mode; backbones are frozen) unless
``train=True``: then it normalises with the statistics of the batch, as torchvision's
``model.train()`` (the reference's training mode, ``config.model.backbone_mode=
"reference"``); the updated running statistics come back only in a mutable
``batch_stats`` collection, which T-TAME drops.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ttame_jax.backbones import registry
from ttame_jax.backbones.layers import AdaptiveAvgPool, MaxPool, ReLU
from ttame_jax.backbones.validation import check_input

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)
EXPANSION = 4
MIN_SIZE = 32  # total stride of the network

# torch BatchNorm2d(momentum=0.1, eps=1e-5): Flax momentum is 1 - torch's.
_BatchNorm = partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def _conv(features, kernel, stride, dtype, name):
    """Bias-free conv with torch's symmetric padding ``kernel // 2``."""
    p = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        (stride, stride),
        padding=((p, p), (p, p)),
        use_bias=False,
        dtype=dtype,
        name=name,
    )


class Bottleneck(nn.Module):
    """torchvision ``Bottleneck``: 1x1 -> 3x3 (stride) -> 1x1 (x4), plus shortcut."""

    width: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = partial(_BatchNorm, use_running_average=not train, dtype=self.dtype)
        out_ch = self.width * EXPANSION
        y = _conv(self.width, 1, 1, self.dtype, "conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = _conv(self.width, 3, self.stride, self.dtype, "conv2")(y)
        y = nn.relu(norm(name="bn2")(y))
        y = _conv(out_ch, 1, 1, self.dtype, "conv3")(y)
        y = norm(name="bn3")(y)
        if self.downsample:
            x = _conv(out_ch, 1, self.stride, self.dtype, "downsample_0")(x)
            x = norm(name="downsample_1")(x)
        return nn.relu(y + x)


class Stage(nn.Module):
    """torchvision ``layerK``: ``blocks`` bottlenecks named ``"0"``, ``"1"``, ..."""

    width: int
    blocks: int
    stride: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        for b in range(self.blocks):
            first = b == 0
            needs_proj = first and (self.stride != 1 or x.shape[-1] != self.width * EXPANSION)
            x = Bottleneck(
                self.width,
                self.stride if first else 1,
                needs_proj,
                dtype=self.dtype,
                name=str(b),
            )(x, train)
        return x


class ResNet50(nn.Module):
    """torchvision ``resnet50`` (eval mode by default; ``train=True``: BatchNorm on batch
    statistics, as torchvision's ``model.train()``).

    Input ``(B, H, W, 3)`` float32 normalised with the ImageNet mean/std,
    ``H, W >= 32`` (any size works like in torchvision; 224 is the trained one).
    Output logits ``(B, num_classes)``. Taps are NHWC: at 224 ``layer2``
    ``(B, 28, 28, 512)``, ``layer3`` ``(B, 14, 14, 1024)``, ``layer4``
    ``(B, 7, 7, 2048)``, ``avgpool`` ``(B, 1, 1, 2048)``.

    Attributes:
      num_classes: size of ``fc``.
      dtype: computation dtype (parameters and BN statistics stay float32).
    """

    num_classes: int = 1000
    dtype: Any = jnp.float32

    tap_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        name: (name,)
        for name in (
            "conv1",
            "bn1",
            "relu",
            "maxpool",
            "layer1",
            "layer2",
            "layer3",
            "layer4",
            "avgpool",
            "fc",
        )
    }

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, "resnet50", None)
        if min(x.shape[1:3]) < MIN_SIZE:
            raise ValueError(
                f"resnet50 needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {x.shape}"
            )
        x = jnp.asarray(x, self.dtype)
        x = _conv(64, 7, 2, self.dtype, "conv1")(x)
        x = _BatchNorm(use_running_average=not train, dtype=self.dtype, name="bn1")(x)
        x = ReLU(name="relu")(x)
        x = MaxPool(3, 2, padding=1, name="maxpool")(x)
        for k, (width, blocks, stride) in enumerate(STAGES, start=1):
            x = Stage(width, blocks, stride, dtype=self.dtype, name=f"layer{k}")(x, train)
        x = AdaptiveAvgPool(1, name="avgpool")(x)
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


registry.register(
    registry.BackboneSpec(
        name="resnet50",
        kind="cnn",
        builder=ResNet50,
        input_size=224,
        num_classes=1000,
        mean=registry.IMAGENET_MEAN,
        std=registry.IMAGENET_STD,
        taps=("layer2", "layer3", "layer4"),
        weights_file="resnet50-0676ba61.pth",
    )
)
