"""ViT-B/16 (torchvision ``vit_b_16``) in Flax linen.

Flax paths mirror torchvision's module names: ``conv_proj``, ``class_token``,
``encoder/pos_embedding``, ``encoder/layers/encoder_layer_k/{ln_1,
self_attention, ln_2, mlp_0, mlp_3}``, ``encoder/ln``, ``heads_head``.
torch's fused ``in_proj_weight`` of ``self_attention`` becomes the separate
``query``/``key``/``value`` kernels of Flax's ``MultiHeadDotProductAttention``
(done by the converter). LayerNorm eps 1e-6 and exact (erf) GELU as in torch.
No dropout: torchvision's ``vit_b_16`` has ``dropout = attention_dropout = 0.0`` and no
BatchNorm, so its ``model.train()`` computes exactly what eval mode computes; ``train``
is accepted (``config.model.backbone_mode="reference"``) and changes nothing.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ttame_jax.backbones import registry
from ttame_jax.backbones.validation import check_input

PATCH = 16
IMAGE_SIZE = 224
HIDDEN = 768
MLP_DIM = 3072
HEADS = 12
DEPTH = 12

_LayerNorm = partial(nn.LayerNorm, epsilon=1e-6)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``+ mlp(ln_2(.))``.

    Input and output ``(B, 1 + N, D)``.
    """

    num_heads: int
    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = _LayerNorm(dtype=self.dtype, name="ln_1")(x)
        y = nn.MultiHeadDotProductAttention(
            self.num_heads, dtype=self.dtype, deterministic=True, name="self_attention"
        )(y)
        x = x + y
        y = _LayerNorm(dtype=self.dtype, name="ln_2")(x)
        y = nn.Dense(self.mlp_dim, dtype=self.dtype, name="mlp_0")(y)
        y = nn.gelu(y, approximate=False)
        y = nn.Dense(x.shape[-1], dtype=self.dtype, name="mlp_3")(y)
        return x + y


class Layers(nn.Module):
    """torchvision ``encoder.layers``: blocks ``encoder_layer_0 .. encoder_layer_{depth-1}``."""

    depth: int
    num_heads: int
    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for k in range(self.depth):
            x = EncoderBlock(self.num_heads, self.mlp_dim, self.dtype, name=f"encoder_layer_{k}")(x)
        return x


class Encoder(nn.Module):
    """torchvision ``encoder``: adds ``pos_embedding``, runs ``layers``, then ``ln``."""

    depth: int
    num_heads: int
    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        pos = self.param(
            "pos_embedding", nn.initializers.normal(stddev=0.02), (1, *x.shape[1:]), jnp.float32
        )
        x = x + jnp.asarray(pos, self.dtype)
        x = Layers(self.depth, self.num_heads, self.mlp_dim, self.dtype, name="layers")(x)
        return _LayerNorm(dtype=self.dtype, name="ln")(x)


def _tap_table() -> dict[str, tuple[str, ...]]:
    table = {"conv_proj": ("conv_proj",)}
    for k in range(DEPTH):
        block = ("encoder", "layers", f"encoder_layer_{k}")
        # ".ln" is the reference implementation's name for ln_1 (the paper's taps).
        table[f"encoder.layers.encoder_layer_{k}.ln"] = (*block, "ln_1")
        table[f"encoder.layers.encoder_layer_{k}.ln_1"] = (*block, "ln_1")
        table[f"encoder.layers.encoder_layer_{k}.ln_2"] = (*block, "ln_2")
        table[f"encoder.layers.encoder_layer_{k}"] = block
    table["encoder.ln"] = ("encoder", "ln")
    table["encoder"] = ("encoder",)
    table["heads.head"] = ("heads_head",)
    return table


class ViT_B_16(nn.Module):  # torchvision's class name
    """torchvision ``vit_b_16`` in eval mode.

    Input ``(B, 224, 224, 3)`` float32 normalised with the ImageNet mean/std
    (exactly 224: the position embedding is fixed to 14x14 patches + class
    token). Output logits ``(B, num_classes)``. Taps are token sequences
    ``(B, 197, 768)`` (class token first, patches row-major), except
    ``conv_proj`` ``(B, 14, 14, 768)``.

    ``train`` is accepted for the reference's training mode and changes nothing (the
    module docstring says why).

    The size attributes default to ViT-B/16; other values give the same architecture at
    another size (DeiT-Ti/S are ``hidden`` 192/384, ``num_heads`` 3/6, ``mlp_dim`` 4 x
    ``hidden``); ``tap_paths`` names blocks up to ViT-B/16's 12 (a shallower model
    has only the first ``depth``).

    Attributes:
      num_classes: size of ``heads.head``.
      dtype: computation dtype (parameters stay float32).
      image_size, patch: input side and patch side in pixels.
      hidden, depth, num_heads, mlp_dim: token width, blocks, attention heads, MLP width.
    """

    num_classes: int = 1000
    dtype: Any = jnp.float32
    image_size: int = IMAGE_SIZE
    patch: int = PATCH
    hidden: int = HIDDEN
    depth: int = DEPTH
    num_heads: int = HEADS
    mlp_dim: int = MLP_DIM

    tap_paths: ClassVar[dict[str, tuple[str, ...]]] = _tap_table()

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # dropout rate 0 and no BatchNorm: train mode = eval mode
        check_input(x, "vit_b_16", self.image_size)
        x = jnp.asarray(x, self.dtype)
        x = nn.Conv(
            self.hidden,
            (self.patch, self.patch),
            (self.patch, self.patch),
            padding="VALID",
            dtype=self.dtype,
            name="conv_proj",
        )(x)
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)  # row-major patches, as torch's flatten(2).permute
        cls = self.param("class_token", nn.initializers.zeros, (1, 1, d), jnp.float32)
        x = jnp.concatenate([jnp.broadcast_to(jnp.asarray(cls, self.dtype), (b, 1, d)), x], 1)
        x = Encoder(self.depth, self.num_heads, self.mlp_dim, self.dtype, name="encoder")(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="heads_head")(x[:, 0])


VIT_B_16_SPEC = registry.BackboneSpec(
    name="vit_b_16",
    kind="vit",
    builder=ViT_B_16,
    input_size=IMAGE_SIZE,
    num_classes=1000,
    mean=registry.IMAGENET_MEAN,
    std=registry.IMAGENET_STD,
    taps=tuple(f"encoder.layers.encoder_layer_{k}.ln" for k in (9, 10, 11)),
    weights_file="vit_b_16-c867db91.pth",
)
registry.register(VIT_B_16_SPEC)

# DeiT-B (timm ``deit_base_patch16_224``, Touvron et al. 2021): ViT-B/16's architecture
# trained by another recipe, with ImageNet's mean/std as torchvision. The T-TAME reference
# computed the ViT rows of Grad-CAM, Grad-CAM++, Score-CAM and Ablation-CAM on it, at timm's
# ``blocks[-1].norm1`` (our ``encoder.layers.encoder_layer_11.ln``); ``eval.cam_backbone``.
# Weights: timm's checkpoint (``convert_timm``; DeiT's release file holds it under "model").
registry.register(
    dataclasses.replace(
        VIT_B_16_SPEC,
        name="deit_base_patch16_224",
        weights_file="deit_base_patch16_224-b5f2ef4d.pth",
        weights_url="https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth",
        cam_layer="encoder.layers.encoder_layer_11.ln",
    )
)
