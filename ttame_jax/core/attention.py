"""The T-TAME attention mechanism: feature branches + fusion (paper §III-C1, Fig. 3).

Branch i (input the adapted tap ``L_i``, NHWC ``(B, H_i, W_i, C_i)``)::

    1x1 conv (C_i -> C_i, bias) -> BatchNorm -> + L_i (skip) -> ReLU
    -> bilinear resize (half-pixel centres) to (H_e, W_e)          = A_i

Fusion::

    concat_i A_i  (B, H_e, W_e, ΣC_i) -> 1x1 conv (ΣC_i -> K, bias) = c

(computed in the equivalent order "project each branch, then resize": see :class:`Fusion`).

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
kernel and bias, as the reference trains from it; ``fusion_init="zeros"``
(``config.model.fusion_init``, not the paper's) starts the fusion conv at 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ttame_jax.config import FUSION_INITS
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
    """Fusion 1x1 conv ``ΣC_i -> K`` over the resized, concatenated branch outputs.

    The parameters are a conv kernel ``(1, 1, ΣC_i, K)`` and bias ``(K,)``, as
    one conv over the concatenation. Both the 1x1 conv (per-pixel linear map
    over channels) and the bilinear resize (per-channel linear map over
    pixels) are linear, so they commute: each branch is projected with its
    slice of the kernel at its own resolution and only the k output channels
    are resized and summed. This never builds the ``(B, H_e, W_e, ΣC_i)``
    concatenation (3584 channels at 28² for ResNet-50). ``classes`` computes
    only the requested output channels; each is an independent dot product.
    """

    num_classes: int
    init: str = "torch"  # "torch" (U(±1/√fan_in)) | "zeros"

    @nn.compact
    def __call__(
        self,
        branches: Sequence[jnp.ndarray],
        size: tuple[int, int],
        classes: jnp.ndarray | None = None,
    ) -> jnp.ndarray:
        """Args:
          branches: branch outputs ``(B, H_i, W_i, C_i)`` at their own resolution.
          size: ``(H_e, W_e)``.
          classes: ``None`` for all K classes, or int ``(B, k)``: per image the
            classes whose channels to compute.

        Returns:
          ``(B, H_e, W_e, K)`` or ``(B, H_e, W_e, k)`` pre-sigmoid maps ``c``.
        """
        f = sum(h.shape[-1] for h in branches)
        if self.init not in FUSION_INITS:
            raise ValueError(f"fusion init must be one of {FUSION_INITS}, got {self.init!r}")
        zeros = self.init == "zeros"
        kernel_init = nn.initializers.zeros if zeros else _torch_kernel_init
        bias_init = nn.initializers.zeros if zeros else _torch_bias_init(f)
        kernel = self.param("kernel", kernel_init, (1, 1, f, self.num_classes))
        bias = self.param("bias", bias_init, (self.num_classes,))
        kernel = kernel[0, 0]
        if classes is None:
            spec, b = "bhwf,fk->bhwk", bias
        else:
            batch = branches[0].shape[0]
            if classes.ndim != 2 or classes.shape[0] != batch:
                raise ValueError(
                    f"classes must be int (B, k) with B = {batch}, got shape {classes.shape}"
                )
            kernel = jnp.take(kernel, classes, axis=1)  # (F, B, k)
            spec, b = "bhwf,fbk->bhwk", bias[classes][:, None, None, :]
        c, start = b, 0
        for h in branches:
            stop = start + h.shape[-1]
            c = c + resize_bilinear(jnp.einsum(spec, h, kernel[start:stop]), size)
            start = stop
        return c


class AttentionMechanism(nn.Module):
    """Feature branches and fusion; ``s`` = number of input feature maps.

    Attributes:
      num_classes: K, the backbone's number of classes.
      skip, batchnorm, branch_act: Table 6 switches (see module docstring).
      max_resolution: cap on ``(H_e, W_e)``.
      fusion_init: the fusion conv's initialisation, "torch" or "zeros".
    """

    num_classes: int
    skip: bool = True
    batchnorm: bool = True
    branch_act: str = "relu"
    max_resolution: int = 56
    fusion_init: str = "torch"

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
        branches = [self._branch(i, f, train) for i, f in enumerate(features)]
        return Fusion(self.num_classes, self.fusion_init, name="fuser")(branches, size, classes)
