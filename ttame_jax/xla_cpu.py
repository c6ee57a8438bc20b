"""XLA CPU compile options for the project's jitted functions (``jit``, ``conv_jit``).

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

Turning either off changes no result beyond float32 rounding (the same operations
in another order). The first is off for every function of the project that runs a
backbone (:func:`jit`, :data:`CPU_OPTIONS`). The second is not a global default
(without ``algsimp``, ``explain(all_classes=True)`` at 224 px took 7.4x a forward
instead of 2.3x): only functions that are nothing but many backbone passes opt in,
through :func:`conv_jit`. Both apply on the CPU backend only.

A function you jit yourself (``jax.jit(module.apply)``) gets XLA's defaults; wrap it
in :func:`jit` instead, or set ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=``
for the whole process before jax starts.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import jax

try:  # private, but the only way to ask "is a transformation tracing right now?"
    from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:  # pragma: no cover - other jax versions
    _trace_state_clean = None

# Compiler options (XLA DebugOptions fields) that :func:`jit` sets on CPU.
CPU_OPTIONS = {
    # No YNNPACK graph fusion: convolutions run as XLA's own (Eigen) kernels. Measured
    # 2026-12-02 on the AMD EPYC 2-core machine, batch 8 at 224 px: VGG-16 forward
    # 3.1 -> 1.55 s (torch 1.76 s), ResNet-50 0.69 -> 0.52 s, ResNet-50 ``explain``
    # 0.75 -> 0.52 s, ``explain(all_classes=True)`` 1.46 -> 1.20 s.
    "xla_cpu_experimental_ynn_fusion_type": "",
    # LLVM at -O1 instead of XLA's default: 13-18 % less compile time (ResNet-50 1.58 ->
    # 1.35 s, ViT-B/16 3.4 -> 2.9 s, the 64 px ROAD imputer 3.6 -> 2.9 s) with the same
    # run time (ResNet-50 forward 453 vs 454 ms, ViT-B/16 1794 vs 1809 ms); the main job
    # compiles ~100 programs once each (375 -> 343 s with it set process-wide). -O0 is
    # 8x slower to run.
    "xla_backend_optimization_level": 1,
}

# :data:`CPU_OPTIONS` plus no algebraic-simplifier operand swap, for the functions that
# are nothing but many backbone passes (:func:`conv_jit`).
CPU_CONV_OPTIONS = {**CPU_OPTIONS, "xla_disable_hlo_passes": "algsimp"}


def jit(fun=None, /, *, options: dict = CPU_OPTIONS, **jit_kwargs):
    """``jax.jit(fun, **jit_kwargs)``, compiled with ``options`` on the CPU backend.

    The project's jit for every function that runs a backbone (``explain``, the trainer's
    steps, the evaluator's methods, the baselines). On other backends it is plain
    ``jax.jit``. The backend is read at call time (``jax.default_backend()``), so
    importing a module that uses this decorator initialises no backend. Called inside
    an outer ``jax.jit`` (or ``grad``, ``vmap``) it is a plain nested ``jax.jit``: jax
    accepts compiler options on top-level jits only, and the outer compilation's options
    apply. Usable as ``@jit``, ``@jit(static_argnames=...)`` or ``jit(f, ...)``.
    """
    if fun is None:
        return functools.partial(jit, options=options, **jit_kwargs)
    plain = jax.jit(fun, **jit_kwargs)
    tuned = jax.jit(fun, compiler_options=options, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        top = _top_level(args, kwargs) and jax.default_backend() == "cpu"
        return (tuned if top else plain)(*args, **kwargs)

    return call


def _top_level(args, kwargs) -> bool:
    """True when no jax transformation is tracing this call."""
    if _trace_state_clean is not None:
        return _trace_state_clean()
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs)))


def conv_jit(fun=None, /, **jit_kwargs):
    """:func:`jit` with :data:`CPU_CONV_OPTIONS` (YNNPACK fusion and ``algsimp`` off)."""
    return jit(fun, options=CPU_CONV_OPTIONS, **jit_kwargs)


# Accelerator plugins: with one installed, jax may pick a GPU/TPU backend, where the
# process-wide flags of :func:`use_for_process` would change kernel compilation.
_ACCELERATOR_MODULES = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")


def use_for_process(options: dict = CPU_OPTIONS) -> bool:
    """Sets ``options`` for every compilation of this process (``XLA_FLAGS``), CPU only.

    For the command line (``ttame``, ``train.py``): the main job also compiles jax's own
    small programs (initialisers, eager ops), which :func:`jit` does not reach; with the
    flags set process-wide it took 343 s instead of 356 s. Does nothing, and returns
    False, when jax's backends are already initialised (flags are read once), when
    ``JAX_PLATFORMS`` names anything but ``cpu`` or an accelerator plugin is installed.
    A flag already in ``XLA_FLAGS`` is left as the user set it.
    """
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return False
    if os.environ.get("JAX_PLATFORMS", "cpu").strip() not in ("", "cpu"):
        return False
    if any(importlib.util.find_spec(m) is not None for m in _ACCELERATOR_MODULES):
        return False
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f"--{k}={v}" for k, v in options.items() if f"--{k}=" not in flags]
    os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()
    return True
