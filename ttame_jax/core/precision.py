"""The frozen backbone's compute dtype (``config.model.backbone_dtype``).

With ``"bfloat16"`` the backbone passes of T-TAME (the clean pass that gives the
logits and the feature taps ``L_i``, the masked pass of the loss, and ``explain``) run
in bfloat16 on the float32 weights, and their outputs return to float32 at once: the
feature adapter, the attention mechanism (``c``, ``A = sigmoid(c)``), the masking and the
loss compute in float32. The gradient of the loss reaches the attention parameters
through the bfloat16 masked pass (mixed precision; bfloat16 has float32's exponent
range, so no loss scaling is needed).

A backbone runs in bfloat16 in one of two ways:

* its builder has a ``dtype`` field (``resnet50``, ``vgg16``, ``vit_b_16``): it is built
  with ``dtype=bfloat16``; its layers cast the float32 weights per operation (BatchNorm
  statistics stay float32; Flax normalises in float32 and returns bfloat16);
* otherwise its variables and input are cast to bfloat16 and its Flax layers, built
  with Flax's default ``dtype=None``, infer bfloat16 from them (``synthetic_cnn``).

A backbone that computes in float32 anyway (layers with a fixed float32 ``dtype``,
e.g. ``synthetic_vit``'s encoder) is refused with an error rather than run silently
in float32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


class ComputeDtypeError(ValueError):
    """The backbone did not compute in ``config.model.backbone_dtype``."""


def has_dtype_field(module) -> bool:
    """Whether a backbone module takes a compute ``dtype`` (a dataclass field)."""
    return any(f.name == "dtype" for f in dataclasses.fields(module))


def backbone_module(spec, dtype: str):
    """The backbone's Flax module computing in ``dtype`` where its builder allows it."""
    module = spec.builder()
    if dtype != "float32" and has_dtype_field(module):
        return spec.builder(dtype=jnp.dtype(dtype))
    return module


def _cast_floats(tree, dtype):
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def backbone_inputs(module, variables, x, dtype: str):
    """``(variables, x)`` as ``module`` (from :func:`backbone_module`) takes them in ``dtype``:
    ``x`` cast; the variables cast only for a module without a ``dtype`` field."""
    if dtype == "float32":
        return variables, x
    if not has_dtype_field(module):
        variables = _cast_floats(variables, dtype)
    return variables, x.astype(dtype)


def to_float32(logits, tree, dtype: str, name: str):
    """``(logits, tree)`` back in float32 after a backbone pass in ``dtype``.

    Raises:
      ComputeDtypeError: ``dtype`` is not float32 but the logits came out in float32 (the
        backbone ignored the compute dtype).
    """
    if dtype == "float32":
        return logits, tree
    if logits.dtype != jnp.dtype(dtype):
        raise ComputeDtypeError(
            f"config.model.backbone_dtype={dtype!r}, but backbone {name!r} computed its logits "
            f"in {logits.dtype}: its layers fix their dtype. Give its module a `dtype` field "
            f"that every layer uses (as resnet50, vgg16 and vit_b_16 have), or use "
            f"backbone_dtype='float32'"
        )
    return _cast_floats((logits, tree), jnp.float32)
