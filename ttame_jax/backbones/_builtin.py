"""Imports every built-in backbone module so that each registers its spec."""

from ttame_jax.backbones import resnet, small, vgg, vit  # noqa: F401
