"""Frozen (hashable) forms of the ``config.model`` and ``config.loss`` sections.

The trainer's configs are ``ml_collections.ConfigDict`` objects, which are
mutable and unhashable. The T-TAME model is a static object (it is closed over
or passed as a static argument to ``jax.jit``), so it keeps these frozen copies
instead. Both accept a ConfigDict, a plain mapping or an instance of themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

_MASKING = ("auto", "cnn", "vit")
_BRANCH_ACT = ("relu", "sigmoid")
_VARIANTS = ("reference", "paper")
_VIT_ADAPTERS = ("drop-class-token", "class-token-product")  # = core.adapter.VIT_ADAPTERS


def _as_dict(cfg: Any, section: str) -> dict:
    if cfg is None:
        return {}
    if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        return dict(cfg.to_dict())
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(
        f"config.{section} must be a ConfigDict, a dict or a {section} config dataclass, "
        f"got {type(cfg).__name__}"
    )


def _from(cls, cfg, section: str):
    if isinstance(cfg, cls):
        return cfg
    values = _as_dict(cfg, section)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown field(s) {unknown} in config.{section}; known fields: {sorted(known)}"
        )
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """``config.model``: which taps and which attention variant (paper Table 6).

    Attributes:
      taps: torchvision node names of the feature taps; empty = the backbone's
        default ``spec.taps`` (the paper's s = 3 layers).
      skip: the skip connection ``+ L_i`` in each feature branch.
      batchnorm: the BatchNorm after each branch's 1x1 conv.
      branch_act: ``"relu"`` (paper) or ``"sigmoid"`` (Table 6 ablation).
      max_resolution: cap on the explanation resolution ``(H_e, W_e)``.
      masking: ``"auto"`` (by backbone kind), ``"cnn"`` (eq. 13) or ``"vit"`` (eq. 14).
      vit_adapter: ViT feature adapter: ``"drop-class-token"`` (paper) or
        ``"class-token-product"`` (patch tokens times the class token, as the reference
        implementation's ``TTAME`` version); ignored for CNNs.
    """

    taps: tuple[str, ...] = ()
    skip: bool = True
    batchnorm: bool = True
    branch_act: str = "relu"
    max_resolution: int = 56
    masking: str = "auto"
    vit_adapter: str = "drop-class-token"

    def __post_init__(self):
        object.__setattr__(self, "taps", tuple(self.taps))
        if self.branch_act not in _BRANCH_ACT:
            raise ValueError(
                f"config.model.branch_act must be one of {_BRANCH_ACT}, got {self.branch_act!r}"
            )
        if self.masking not in _MASKING:
            raise ValueError(
                f"config.model.masking must be one of {_MASKING}, got {self.masking!r}"
            )
        if self.vit_adapter not in _VIT_ADAPTERS:
            raise ValueError(
                f"config.model.vit_adapter must be one of {_VIT_ADAPTERS}, got {self.vit_adapter!r}"
            )
        if int(self.max_resolution) < 1:
            raise ValueError(
                f"config.model.max_resolution must be a positive integer, got {self.max_resolution}"
            )
        if len(set(self.taps)) != len(self.taps):
            raise ValueError(f"config.model.taps has duplicates: {self.taps}")

    @classmethod
    def from_config(cls, cfg) -> ModelConfig:
        """Builds it from ``config.model`` (ConfigDict, dict or ModelConfig)."""
        return _from(cls, cfg, "model")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """``config.loss``: the weights of the training loss (see ``core/loss.py``).

    Attributes:
      variant: ``"reference"`` (public implementation, default) or ``"paper"``
        (literal eqs. 11, 15-17).
      ce: weight of the cross-entropy term (λ1).
      area: weight of the area / energy term (λ2).
      tv: weight of the smoothness term. Paper variant: λ2·λ3, i.e. λ3 = tv / area.
      border: weight of the border penalty inside the smoothness term (reference only).
      area_power: exponent of the area term (λ4).
      area_eps: added to Ψ before the power in the area term (reference only).
    """

    variant: str = "reference"
    ce: float = 1.5
    area: float = 2.0
    tv: float = 0.01
    border: float = 0.3
    area_power: float = 0.3
    area_eps: float = 0.0005

    def __post_init__(self):
        if self.variant not in _VARIANTS:
            raise ValueError(
                f"config.loss.variant must be one of {_VARIANTS}, got {self.variant!r}"
            )
        for name in ("ce", "area", "tv", "border", "area_eps"):
            if getattr(self, name) < 0:
                raise ValueError(f"config.loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.area_power <= 0:
            raise ValueError(f"config.loss.area_power must be > 0, got {self.area_power}")

    @classmethod
    def from_config(cls, cfg) -> LossConfig:
        """Builds it from ``config.loss`` (ConfigDict, dict or LossConfig)."""
        return _from(cls, cfg, "loss")
