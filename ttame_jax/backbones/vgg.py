"""VGG-16 (torchvision ``vgg16``, configuration "D", no BatchNorm) in Flax linen.

Submodule names mirror torchvision's: ``features.N`` is ``features_N``,
``classifier.N`` is ``classifier_N``, so the weight converter is a table and
every node of ``features`` (convs, ReLUs, max-pools) can be tapped by name.
torchvision's ``Dropout`` layers are ``classifier_2`` / ``classifier_5``: the identity
by default (eval mode), active with ``train=True`` (the reference's training mode,
``config.model.backbone_mode="reference"``; needs a ``"dropout"`` PRNG key).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ttame_jax.backbones import registry
from ttame_jax.backbones.layers import AdaptiveAvgPool, MaxPool, ReLU
from ttame_jax.backbones.validation import check_input

# Output channels per conv, "M" = 2x2 max-pool (torchvision cfgs["D"]).
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
MIN_SIZE = 32  # five 2x2 pools need at least 32 pixels per side


def feature_layers(cfg=VGG16_CFG) -> list[tuple[int, str, int | None]]:
    """``(torchvision index, "conv"|"relu"|"pool", out channels)`` for ``features``."""
    layers, i = [], 0
    for c in cfg:
        if c == "M":
            layers.append((i, "pool", None))
            i += 1
        else:
            layers += [(i, "conv", c), (i + 1, "relu", None)]
            i += 2
    return layers


_CLASSIFIER_TAPS = ("classifier.0", "classifier.1", "classifier.3", "classifier.4", "classifier.6")


class VGG16(nn.Module):
    """torchvision ``vgg16`` (eval mode by default).

    Input ``(B, H, W, 3)`` float32 normalised with the ImageNet mean/std;
    ``H, W >= 32`` (torchvision's adaptive average pool makes the classifier
    input 7x7 for any size; 224 is what the weights were trained at).
    Output logits ``(B, num_classes)``. Taps are NHWC, e.g. ``features.30``:
    ``(B, 7, 7, 512)`` at 224.

    ``train=True`` is torchvision's ``model.train()``: the two dropout layers zero each
    activation with probability ``dropout`` and scale the rest by ``1 / (1 - dropout)``
    (key from the ``"dropout"`` PRNG stream). VGG-16 has no BatchNorm, so nothing else
    changes.

    Attributes:
      num_classes: size of ``classifier.6``.
      dtype: computation dtype (parameters stay float32).
      dropout: drop probability of ``classifier.2`` / ``classifier.5`` in train mode
        (torchvision's ``dropout`` argument, 0.5).
    """

    num_classes: int = 1000
    dtype: Any = jnp.float32
    dropout: float = 0.5

    tap_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        **{f"features.{i}": (f"features_{i}",) for i, _, _ in feature_layers()},
        "avgpool": ("avgpool",),
        **{t: (t.replace(".", "_"),) for t in _CLASSIFIER_TAPS},
    }

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, "vgg16", None)
        if min(x.shape[1:3]) < MIN_SIZE:
            raise ValueError(f"vgg16 needs images of at least {MIN_SIZE}x{MIN_SIZE}, got {x.shape}")
        x = jnp.asarray(x, self.dtype)
        for i, kind, ch in feature_layers():
            name = f"features_{i}"
            if kind == "conv":
                x = nn.Conv(ch, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=name)(x)
            elif kind == "relu":
                x = ReLU(name=name)(x)
            else:
                x = MaxPool(2, 2, name=name)(x)
        x = AdaptiveAvgPool(7, name="avgpool")(x)
        # Flattened in NHWC order; the converter permutes classifier.0's rows
        # from torch's NCHW flatten order to match.
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(4096, dtype=self.dtype, name="classifier_0")(x)
        x = ReLU(name="classifier_1")(x)
        x = nn.Dropout(self.dropout, deterministic=not train, name="classifier_2")(x)
        x = nn.Dense(4096, dtype=self.dtype, name="classifier_3")(x)
        x = ReLU(name="classifier_4")(x)
        x = nn.Dropout(self.dropout, deterministic=not train, name="classifier_5")(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier_6")(x)


registry.register(
    registry.BackboneSpec(
        name="vgg16",
        kind="cnn",
        builder=VGG16,
        input_size=224,
        num_classes=1000,
        mean=registry.IMAGENET_MEAN,
        std=registry.IMAGENET_STD,
        taps=("features.16", "features.23", "features.30"),
        weights_file="vgg16-397923af.pth",
        cam_layer="features.29",  # the reference's CAM layer (issue 12 D1)
    )
)
