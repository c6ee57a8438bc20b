"""XLA CPU compile options for convolution-heavy jitted functions (``conv_jit``).

Two defaults of the XLA CPU compiler in jax 0.10 make convolutional networks slow
on CPU (measured with ``benchmarks/conv.py`` and ``benchmarks/backbones.py``; see
docs/performance.md):

1. YNNPACK fusion (``xla_cpu_experimental_ynn_fusion_type``, on by default) turns
   the whole convolution stack into one YNNPACK graph; VGG-16's forward then takes
   1.8-2.3x torch's time, against 1.0x with XLA's own (Eigen) convolutions.
2. The algebraic simplifier (HLO pass ``algsimp``) swaps a convolution's operands
   when the kernel window is larger than the input, e.g. ResNet-50's ``layer4``
   3x3 convolutions on 2x2 maps (64 px inputs, as in the Score-CAM benchmark);
   the swapped convolution runs about 100x slower (1.3 s instead of 13 ms for
   32 x 2 x 2 x 512 -> 512).

Turning both off changes no result beyond float32 rounding (the same operations
in another order). Disabling ``algsimp`` costs little in a convolutional forward
pass but is not a global default: on GPU the simplifier matters, and elsewhere in
this project it is untested. So only functions that run many backbone forward
passes opt in, through :func:`conv_jit`, and only on the CPU backend.
"""

from __future__ import annotations

import functools

import jax

# Compiler options (XLA DebugOptions fields) that :func:`conv_jit` sets on CPU.
CPU_CONV_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "",  # no YNNPACK fusion: Eigen convolutions
    "xla_disable_hlo_passes": "algsimp",  # no convolution operand swap (see above)
}


def conv_jit(fun, **jit_kwargs):
    """``jax.jit(fun, **jit_kwargs)`` compiled with :data:`CPU_CONV_OPTIONS` on CPU.

    The backend is read at call time (``jax.default_backend()``), so importing a
    module that uses this decorator initialises no backend. Inside an outer
    ``jax.jit`` the options do not apply (the outer compilation's do).
    """
    plain = jax.jit(fun, **jit_kwargs)
    tuned = jax.jit(fun, compiler_options=CPU_CONV_OPTIONS, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return (tuned if jax.default_backend() == "cpu" else plain)(*args, **kwargs)

    return call
