"""Registry of backbones: what each one is and how to build it.

Every backbone is described by a :class:`BackboneSpec`. The spec is static
(hashable) data: other parts of the library (T-TAME, metrics, baselines) read
the input size, normalisation, default feature taps and the mapping from
torchvision node names to Flax module paths from it, and never import a model
module directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import flax.linen as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Static description of one backbone.

    Attributes:
      name: registry name, e.g. ``"resnet50"``.
      kind: ``"cnn"`` or ``"vit"`` (decides the feature adapter and masking).
      builder: ``builder(**kw) -> nn.Module`` taking NHWC, normalised input.
      input_size: square input resolution in pixels.
      num_classes: number of output logits.
      mean, std: per-channel normalisation applied to [0, 1] images.
      taps: the paper's default feature taps (torchvision node names).
      weights_file: torchvision's checkpoint file name for pretrained weights
        (``None`` for backbones that have none).
      weights_url: where that file is published (``None``: torchvision's download folder).
      class_names: optional class names for reports (``None``: ImageNet-1k
        names are looked up for 1000-class backbones).
      cam_layer: the tap the CAM baselines explain by default (``None``: the last
        T-TAME tap). VGG-16's is ``features.29``, the ReLU after conv5_3 at 14×14, as
        in the T-TAME reference, not the 7×7 max-pool ``features.30``.
    """

    name: str
    kind: str
    builder: Callable[..., nn.Module]
    input_size: int
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    taps: tuple[str, ...]
    weights_file: str | None = None
    class_names: tuple[str, ...] | None = None
    cam_layer: str | None = None
    weights_url: str | None = None

    @property
    def tap_paths(self) -> Mapping[str, tuple[str, ...]]:
        """torchvision node name -> Flax module path, read from the module class."""
        return self.builder().tap_paths

    def __post_init__(self):
        if self.kind not in ("cnn", "vit"):
            raise ValueError(f"BackboneSpec.kind must be 'cnn' or 'vit', got {self.kind!r}")


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    """Adds ``spec`` to the registry (re-registering a name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


def available() -> tuple[str, ...]:
    """Names of all registered backbones, sorted."""
    _ensure_builtin()
    return tuple(sorted(_REGISTRY))


def get_spec(name: str) -> BackboneSpec:
    """Returns the spec of ``name`` or raises ``ValueError`` listing known names."""
    _ensure_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; known backbones: {', '.join(available())}"
        ) from None


def create(name: str, **kw) -> nn.Module:
    """Builds the Flax module of backbone ``name`` (extra kwargs go to its builder)."""
    return get_spec(name).builder(**kw)


def _ensure_builtin():
    # Importing the model modules registers them; done lazily so that importing
    # the registry alone stays cheap and free of import cycles.
    from ttame_jax.backbones import _builtin  # noqa: F401
