"""Backbones of the paper as Flax modules numerically equal to torchvision.

Public API: :func:`create`, :func:`get_spec`, :func:`available`,
:func:`extract`, :func:`convert_torchvision`, :func:`convert_timm`,
:func:`load_pretrained`.
"""

from ttame_jax.backbones.convert import convert_timm, convert_torchvision
from ttame_jax.backbones.extract import extract, resolve_taps
from ttame_jax.backbones.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    available,
    create,
    get_spec,
    register,
)
from ttame_jax.backbones.weights import load_pretrained, torch_hub_checkpoints_dir

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackboneSpec",
    "available",
    "convert_timm",
    "convert_torchvision",
    "create",
    "extract",
    "get_spec",
    "load_pretrained",
    "register",
    "resolve_taps",
    "torch_hub_checkpoints_dir",
]
