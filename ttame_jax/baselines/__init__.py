"""Baseline explanation methods in JAX, with pytorch-grad-cam's semantics.

Every method has the call shape ``fn(module, variables, x, layer, target=None,
**options) -> (B, H, W)`` maps in [0, 1] at input resolution, where ``x`` is the
NHWC float32 batch normalised with the backbone's mean/std and ``layer`` a
torchvision node name (``"layer4"``, ``"encoder.layers.encoder_layer_11.ln"``).

:data:`METHODS` maps the names used by reports (``gradcam``, ``gradcampp``,
``scorecam``, ``ablationcam``, ``rise``) to a :class:`Method`: the function and its
forward-pass count ``fp(module, variables, x, layer, **options) -> int`` (the FP
column of the paper's tables).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple

from ttame_jax.baselines.ablationcam import ablation_cam, ablation_cam_fp
from ttame_jax.baselines.gradcam import grad_cam, grad_cam_fp
from ttame_jax.baselines.gradcampp import grad_cam_pp, grad_cam_pp_fp
from ttame_jax.baselines.rise_sampling import rise, rise_fp
from ttame_jax.baselines.scorecam import score_cam, score_cam_fp


class Method(NamedTuple):
    """A baseline: ``fn`` computes maps, ``fp`` counts its backbone forward passes."""

    fn: Callable
    count: Callable

    def check_options(self, name: str, options) -> None:
        """Raises ``ValueError`` naming every option ``fn`` does not take (typos are not
        ignored) and the options it does take."""
        params = inspect.signature(self.fn).parameters
        fixed = ("module", "variables", "x", "layer", "target")
        takes = [p for p in params if p not in fixed]
        unknown = sorted(k for k in options if k not in takes)
        if unknown:
            raise ValueError(
                f"bad options for method {name!r}: {unknown}; it takes {', '.join(takes)}"
            )

    def fp(self, module, variables, x, layer, **options) -> int:
        """Forward passes one explanation costs with these ``options``."""
        return self.count(module, variables, x, layer, **options)


METHODS: dict[str, Method] = {
    "gradcam": Method(grad_cam, grad_cam_fp),
    "gradcampp": Method(grad_cam_pp, grad_cam_pp_fp),
    "scorecam": Method(score_cam, score_cam_fp),
    "ablationcam": Method(ablation_cam, ablation_cam_fp),
    "rise": Method(rise, rise_fp),
}

__all__ = [
    "METHODS",
    "Method",
    "ablation_cam",
    "grad_cam",
    "grad_cam_pp",
    "rise",
    "score_cam",
]
