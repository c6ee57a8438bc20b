"""The T-TAME attention mechanism: feature branches + fusion (paper §III-C1, Fig. 3).

Branch i (input the adapted tap ``L_i``, NHWC ``(B, H_i, W_i, C_i)``)::

    1x1 conv (C_i -> C_i, bias) -> BatchNorm -> + L_i (skip) -> ReLU
    -> bilinear resize (half-pixel centres) to (H_e, W_e)          = A_i

Fusion::

    concat_i A_i  (B, H_e, W_e, ΣC_i) -> 1x1 conv (ΣC_i -> K, bias) = c

``c`` is the pre-sigmoid explanation tensor; training uses ``sigmoid(c)``,
inference a per-class min-max of ``c``. Parameter names follow the reference
implementation's state dict (``convs.i``, ``bns.i``, ``fuser``), so its
checkpoints convert with a name table.

Table 6 ablations are switches: ``skip=False``; ``skip=False, batchnorm=False``;
``branch_act="sigmoid"``; 1/2/3 taps is the number of inputs.

BatchNorm: batch statistics when ``train=True`` (and the running averages are
updated), running averages otherwise; torch momentum 0.1 is Flax momentum 0.9,
eps 1e-5. (Flax updates the running variance with the biased batch variance,
torch with the unbiased one; the factor n/(n-1) is 1 + 4e-5 for n = 32·28·28.)

Initialisation follows torch's ``Conv2d`` default, U(-1/√fan_in, 1/√fan_in) for
kernel and bias, as the reference trains from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ttame_jax.core.adapter import explanation_size
from ttame_jax.core.resize import resize_bilinear

# torch Conv2d default: kaiming_uniform(a=√5) == U(±1/√fan_in).
_torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _torch_bias_init(fan_in: int):
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Fusion(nn.Module):
    """Fusion 1x1 conv ``ΣC_i -> K``, optionally evaluated for chosen classes only.

    The parameters are a conv kernel ``(1, 1, ΣC_i, K)`` and bias ``(K,)``. Since
    each output channel is an independent dot product, ``classes`` computes
    only the requested channels; explaining the top-1 class then costs
    ``ΣC_i`` MACs per pixel instead of ``ΣC_i·K``.
    """

    num_classes: int

    @nn.compact
    def __call__(self, h: jnp.ndarray, classes: jnp.ndarray | None = None) -> jnp.ndarray:
        """Args:
          h: ``(B, H_e, W_e, F)`` concatenated branch outputs, F = ΣC_i.
          classes: ``None`` for all K classes, or int ``(B, k)``: per image the
            classes whose channels to compute.

        Returns:
          ``(B, H_e, W_e, K)`` or ``(B, H_e, W_e, k)`` pre-sigmoid maps ``c``.
        """
        f = h.shape[-1]
        kernel = self.param("kernel", _torch_kernel_init, (1, 1, f, self.num_classes))
        bias = self.param("bias", _torch_bias_init(f), (self.num_classes,))
        kernel = kernel[0, 0]
        if classes is None:
            return jnp.einsum("bhwf,fk->bhwk", h, kernel) + bias
        if classes.ndim != 2 or classes.shape[0] != h.shape[0]:
            raise ValueError(
                f"classes must be int (B, k) with B = {h.shape[0]}, got shape {classes.shape}"
            )
        w = jnp.take(kernel, classes, axis=1)  # (F, B, k)
        return jnp.einsum("bhwf,fbk->bhwk", h, w) + bias[classes][:, None, None, :]


class AttentionMechanism(nn.Module):
    """Feature branches and fusion; ``s`` = number of input feature maps.

    Attributes:
      num_classes: K, the backbone's number of classes.
      skip, batchnorm, branch_act: Table 6 switches (see module docstring).
      max_resolution: cap on ``(H_e, W_e)``.
    """

    num_classes: int
    skip: bool = True
    batchnorm: bool = True
    branch_act: str = "relu"
    max_resolution: int = 56

    def _branch(self, i: int, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        c = x.shape[-1]
        y = nn.Conv(
            c,
            (1, 1),
            kernel_init=_torch_kernel_init,
            bias_init=_torch_bias_init(c),
            name=f"convs_{i}",
        )(x)
        if self.batchnorm:
            y = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bns_{i}"
            )(y)
        if self.skip:
            y = y + x
        if self.branch_act == "relu":
            return nn.relu(y)
        if self.branch_act == "sigmoid":
            return nn.sigmoid(y)
        raise ValueError(f"branch_act must be 'relu' or 'sigmoid', got {self.branch_act!r}")

    @nn.compact
    def __call__(
        self,
        features: Sequence[jnp.ndarray],
        train: bool = False,
        classes: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """Args:
          features: the s adapted feature maps ``L_i``, each ``(B, H_i, W_i, C_i)``.
          train: BatchNorm on batch statistics (needs ``mutable=["batch_stats"]``).
          classes: see :class:`Fusion`; ``None`` computes all K classes.

        Returns:
          pre-sigmoid ``c``: ``(B, H_e, W_e, K)``, or ``(B, H_e, W_e, k)`` for ``classes``.
        """
        features = list(features)
        size = explanation_size((f.shape for f in features), self.max_resolution)
        branches = [
            resize_bilinear(self._branch(i, f, train), size) for i, f in enumerate(features)
        ]
        h = jnp.concatenate(branches, axis=-1)
        return Fusion(self.num_classes, name="fuser")(h, classes)
