"""Mapping tables from torchvision / timm state-dict keys to Flax variable paths.

A table is a list of :class:`Rule`: one checkpoint key, the Flax path(s) it
fills (``("params", "layer1", "0", "conv1", "kernel")``) and a pure NumPy
function that turns the torch array into the Flax array(s). The engine that
applies a table and checks it lives in :mod:`ttame_jax.backbones.convert`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from ttame_jax.backbones import resnet, vgg, vit

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Rule:
    key: str
    paths: tuple[Path, ...]
    fn: Callable[[np.ndarray], tuple[np.ndarray, ...]]


def _one(f):
    return lambda w: (f(w),)


_same = _one(lambda w: w)
# torch Conv2d (out, in, kh, kw) -> Flax (kh, kw, in, out); Linear (out, in) -> (in, out).
_conv = _one(lambda w: w.transpose(2, 3, 1, 0))
_linear = _one(lambda w: w.T)
# A 1x1 conv used as a linear layer (timm ConvMlp.fc2): (out, in, 1, 1) -> (in, out).
_conv1x1_as_linear = _one(lambda w: w.reshape(w.shape[0], w.shape[1]).T)


def _fc_after_nchw_flatten(w, channels=512, size=7):
    """VGG ``classifier.0``: torch flattens (C, H, W); we flatten NHWC (H, W, C).

    ``w`` is ``(out, C*H*W)`` (torchvision Linear) or ``(out, C, H, W)`` (timm's
    7x7 conv): view it as a conv kernel, move to (H, W, C, out) and flatten the
    rows in NHWC order. A plain transpose would silently scramble the features.
    """
    k = w.reshape(w.shape[0], channels, size, size).transpose(2, 3, 1, 0)
    return k.reshape(size * size * channels, w.shape[0])


def _qkv_split(w, heads=vit.HEADS):
    """torch fused ``in_proj_weight`` / timm ``qkv.weight`` (3D, D) -> q, k, v (D, H, D/H)."""
    d = w.shape[-1]
    if w.shape != (3 * d, d):
        raise ValueError(f"expected (3D, D), got {w.shape}")
    return tuple(part.T.reshape(d, heads, d // heads) for part in np.split(w, 3))


def _qkv_bias_split(b, heads=vit.HEADS):
    """Fused q/k/v bias (3D,) -> three (H, D/H)."""
    return tuple(part.reshape(heads, -1) for part in np.split(b, 3))


def _out_proj(w, heads=vit.HEADS):
    """Attention output projection: torch (D_out, D_in) -> Flax (H, D_in/H, D_out)."""
    return (w.T.reshape(heads, -1, w.shape[0]),)


def _p(*names) -> Path:
    return ("params", *names)


def conv(key: str, path: Path, bias: bool = True) -> list[Rule]:
    rules = [Rule(f"{key}.weight", (_p(*path, "kernel"),), _conv)]
    return rules + ([Rule(f"{key}.bias", (_p(*path, "bias"),), _same)] if bias else [])


def linear(key: str, path: Path, weight_fn=_linear) -> list[Rule]:
    return [
        Rule(f"{key}.weight", (_p(*path, "kernel"),), weight_fn),
        Rule(f"{key}.bias", (_p(*path, "bias"),), _same),
    ]


def norm(key: str, path: Path, batch_stats: bool = False) -> list[Rule]:
    """LayerNorm / BatchNorm affine parameters (+ BN running statistics)."""
    rules = [
        Rule(f"{key}.weight", (_p(*path, "scale"),), _same),
        Rule(f"{key}.bias", (_p(*path, "bias"),), _same),
    ]
    if batch_stats:
        rules += [
            Rule(f"{key}.running_mean", (("batch_stats", *path, "mean"),), _same),
            Rule(f"{key}.running_var", (("batch_stats", *path, "var"),), _same),
        ]
    return rules


def vgg16_table(fc: tuple[str, str, str], fc1_fn=_linear) -> list[Rule]:
    """VGG-16; ``fc`` are the checkpoint names of classifier.0 / .3 / .6."""
    rules = []
    for i, kind, _ in vgg.feature_layers():
        if kind == "conv":
            rules += conv(f"features.{i}", (f"features_{i}",))
    rules += linear(fc[0], ("classifier_0",), _one(_fc_after_nchw_flatten))
    rules += linear(fc[1], ("classifier_3",), fc1_fn)
    rules += linear(fc[2], ("classifier_6",))
    return rules


def resnet50_table() -> list[Rule]:
    """ResNet-50; torchvision and timm use the same key names."""
    rules = conv("conv1", ("conv1",), bias=False) + norm("bn1", ("bn1",), True)
    for k, (_, blocks, _) in enumerate(resnet.STAGES, start=1):
        for b in range(blocks):
            key, path = f"layer{k}.{b}", (f"layer{k}", str(b))
            for j in (1, 2, 3):
                rules += conv(f"{key}.conv{j}", (*path, f"conv{j}"), bias=False)
                rules += norm(f"{key}.bn{j}", (*path, f"bn{j}"), True)
            if b == 0:
                rules += conv(f"{key}.downsample.0", (*path, "downsample_0"), bias=False)
                rules += norm(f"{key}.downsample.1", (*path, "downsample_1"), True)
    return rules + linear("fc", ("fc",))


# Checkpoint names of ViT-B/16 parts; "{k}" is the block index.
TORCHVISION_VIT = dict(
    cls="class_token", pos="encoder.pos_embedding", patch="conv_proj",
    block="encoder.layers.encoder_layer_{k}", ln_1="ln_1", ln_2="ln_2",
    qkv_w="self_attention.in_proj_weight", qkv_b="self_attention.in_proj_bias",
    out="self_attention.out_proj", fc1="mlp.0", fc2="mlp.3", ln="encoder.ln", head="heads.head",
)  # fmt: skip
TIMM_VIT = dict(
    cls="cls_token", pos="pos_embed", patch="patch_embed.proj", block="blocks.{k}",
    ln_1="norm1", ln_2="norm2", qkv_w="attn.qkv.weight", qkv_b="attn.qkv.bias",
    out="attn.proj", fc1="mlp.fc1", fc2="mlp.fc2", ln="norm", head="head",
)  # fmt: skip


def vit_b_16_table(
    n: dict[str, str], depth: int = vit.DEPTH, num_heads: int = vit.HEADS
) -> list[Rule]:
    """ViT-B/16 with checkpoint names ``n`` (:data:`TORCHVISION_VIT` or :data:`TIMM_VIT`);
    ``depth`` and ``num_heads``: the module's, for other sizes of the same architecture."""
    split = functools.partial(_qkv_split, heads=num_heads)
    split_bias = functools.partial(_qkv_bias_split, heads=num_heads)
    out_proj = functools.partial(_out_proj, heads=num_heads)
    rules = [
        Rule(n["cls"], (_p("class_token"),), _same),
        Rule(n["pos"], (_p("encoder", "pos_embedding"),), _same),
        *conv(n["patch"], ("conv_proj",)),
    ]
    for k in range(depth):
        key, path = n["block"].format(k=k), ("encoder", "layers", f"encoder_layer_{k}")
        att = (*path, "self_attention")
        rules += norm(f"{key}.{n['ln_1']}", (*path, "ln_1"))
        qkv = ("query", "key", "value")
        rules += [
            Rule(f"{key}.{n['qkv_w']}", tuple(_p(*att, q, "kernel") for q in qkv), split),
            Rule(f"{key}.{n['qkv_b']}", tuple(_p(*att, q, "bias") for q in qkv), split_bias),
        ]
        rules += linear(f"{key}.{n['out']}", (*att, "out"), out_proj)
        rules += norm(f"{key}.{n['ln_2']}", (*path, "ln_2"))
        rules += linear(f"{key}.{n['fc1']}", (*path, "mlp_0"))
        rules += linear(f"{key}.{n['fc2']}", (*path, "mlp_3"))
    return rules + norm(n["ln"], ("encoder", "ln")) + linear(n["head"], ("heads_head",))


def _vit_table(names: dict[str, str]) -> Callable[..., list[Rule]]:
    def table(depth=vit.DEPTH, num_heads=vit.HEADS, **_):
        return vit_b_16_table(names, depth, num_heads)

    return table


# source -> backbone name -> ``table(**model_kw)``: the rules for the module built with the
# same keyword arguments as ``create(name, **model_kw)`` (only the ViT's read any).
TABLES: dict[str, dict[str, Callable[..., list[Rule]]]] = {
    "torchvision": {
        "vgg16": lambda **_: vgg16_table(("classifier.0", "classifier.3", "classifier.6")),
        "resnet50": lambda **_: resnet50_table(),
        "vit_b_16": _vit_table(TORCHVISION_VIT),
    },
    "timm": {
        "vgg16": lambda **_: vgg16_table(
            ("pre_logits.fc1", "pre_logits.fc2", "head.fc"), _conv1x1_as_linear
        ),
        "resnet50": lambda **_: resnet50_table(),
        "vit_b_16": _vit_table(TIMM_VIT),
        "deit_base_patch16_224": _vit_table(TIMM_VIT),
    },
}
