"""Backbones of the paper as Flax modules numerically equal to torchvision.

Public API: :func:`create`, :func:`get_spec`, :func:`available`,
:func:`extract`, :func:`convert_torchvision`, :func:`convert_timm`,
:func:`load_pretrained`.
"""

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

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackboneSpec",
    "available",
    "create",
    "extract",
    "get_spec",
    "register",
    "resolve_taps",
]
