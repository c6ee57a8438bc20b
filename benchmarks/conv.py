"""One 3x3 convolution per VGG-16 layer shape: XLA (jax.lax) vs torch (oneDNN), same threads.

The minimal benchmark behind the VGG-16 forward ratio (``benchmarks/backbones.py``)
and Score-CAM's (``benchmarks/baselines.py``). For each of VGG-16's 13 convolution
shapes (batch ``--batch``, 3x3, stride 1, padding 1, float32), plus ResNet-50's
``layer4`` 3x3 convolution on a 2x2 map (its size for a 64 px input, as in the
Score-CAM benchmark), it times, each with bias and ReLU:

- ``xla``: ``jax.jit`` of ``lax.conv_general_dilated`` NHWC x HWIO (our backbones'
  layout) with XLA's default CPU options;
- ``xla opt``: the same compiled with ``ttame_jax.xla_cpu.CPU_CONV_OPTIONS`` (no
  YNNPACK fusion, no algebraic-simplifier operand swap);
- ``xla nchw``: default options, NCHW x OIHW (torch's layout);
- ``torch``: ``F.conv2d`` in NCHW (``nn.Conv2d``'s default) and ``torch cl`` in
  ``channels_last`` memory format (oneDNN's preferred NHWC).

Each is the median of ``--repeats`` calls, all run round-robin so background load
hits them alike. Both libraries use the same number of CPU threads (``--threads``,
default 1; see ``benchmarks/_threads.py``). Prints ms, GFLOP/s and the ratio of each
XLA column to the faster torch layout (> 1: XLA is slower).

    python benchmarks/conv.py [--batch 8] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import _threads

THREADS = _threads.from_argv(sys.argv)
_threads.pin(THREADS)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ttame_jax.xla_cpu import CPU_CONV_OPTIONS  # noqa: E402

_threads.pin_torch(THREADS)

# (input side, C_in, C_out): VGG-16's 13 3x3 convolutions at 224 px, then ResNet-50's
# layer4 3x3 convolution at 64 px input (2x2 map: the kernel is larger than the input).
SHAPES = (
    (224, 3, 64), (224, 64, 64),
    (112, 64, 128), (112, 128, 128),
    (56, 128, 256), (56, 256, 256), (56, 256, 256),
    (28, 256, 512), (28, 512, 512), (28, 512, 512),
    (14, 512, 512), (14, 512, 512), (14, 512, 512),
    (2, 512, 512),
)  # fmt: skip
VGG16_ROWS = 13


def gflop(batch: int, side: int, cin: int, cout: int) -> float:
    return 2.0 * batch * side * side * cin * cout * 9 / 1e9


def _median_times(fns: dict, repeats: int) -> dict:
    for fn in fns.values():
        fn()  # compile / warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def _conv_relu(x, w, b, layout):
    lhs, rhs = layout
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=(lhs, rhs, lhs))
    return jax.nn.relu(y + (b if lhs == "NHWC" else b[:, None, None]))


def calls(batch: int, side: int, cin: int, cout: int) -> dict:
    """Zero-argument timed calls, one per column."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, side, side, cin)).astype(np.float32)
    w = (rng.normal(size=(3, 3, cin, cout)) / (3 * cin**0.5)).astype(np.float32)
    b = rng.normal(size=(cout,)).astype(np.float32)
    nhwc, nchw = ("NHWC", "HWIO"), ("NCHW", "OIHW")
    args = (jnp.asarray(x), jnp.asarray(w), jnp.asarray(b))
    args_nchw = (jnp.asarray(x.transpose(0, 3, 1, 2)), jnp.asarray(w.transpose(3, 2, 0, 1)), b)
    xla = jax.jit(_conv_relu, static_argnums=3)
    xla_opt = jax.jit(_conv_relu, static_argnums=3, compiler_options=CPU_CONV_OPTIONS)

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
    bt = torch.from_numpy(b)
    xt_cl = xt.contiguous(memory_format=torch.channels_last)
    wt_cl = wt.contiguous(memory_format=torch.channels_last)

    def torch_call(x, w):
        with torch.inference_mode():
            return F.relu(F.conv2d(x, w, bt, padding=1))

    return {
        "xla": lambda: xla(*args, nhwc).block_until_ready(),
        "xla opt": lambda: xla_opt(*args, nhwc).block_until_ready(),
        "xla nchw": lambda: xla(*args_nchw, nchw).block_until_ready(),
        "torch": lambda: torch_call(xt, wt),
        "torch cl": lambda: torch_call(xt_cl, wt_cl),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for both (0 = defaults)")
    args = p.parse_args()
    print(
        f"batch {args.batch}, 3x3 conv + bias + ReLU, float32, median of {args.repeats}; "
        f"jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads, "
        f"oneDNN {torch.backends.mkldnn.is_available()}), --threads {args.threads}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| side | C_in -> C_out | GFLOP | xla ms | xla opt ms | xla nchw ms | torch ms | "
        "torch cl ms | torch GFLOP/s | xla / torch | xla opt / torch |"
    )
    print("|---:|---|" + "---:|" * 9)
    total = dict.fromkeys(("xla", "xla opt", "torch"), 0.0)
    for i, shape in enumerate(SHAPES):
        r = _median_times(calls(args.batch, *shape), args.repeats)
        g = gflop(args.batch, *shape)
        best = min(r["torch"], r["torch cl"])
        if i < VGG16_ROWS:
            total["xla"] += r["xla"]
            total["xla opt"] += r["xla opt"]
            total["torch"] += best
        side, cin, cout = shape
        print(
            f"| {side} | {cin} -> {cout} | {g:.2f} | {1e3 * r['xla']:.1f} | "
            f"{1e3 * r['xla opt']:.1f} | {1e3 * r['xla nchw']:.1f} | {1e3 * r['torch']:.1f} | "
            f"{1e3 * r['torch cl']:.1f} | {g / best:.0f} | {r['xla'] / best:.2f} | "
            f"{r['xla opt'] / best:.2f} |",
            flush=True,
        )
    print(
        f"\nVGG-16's 13 convolutions: xla {total['xla']:.2f} s, xla opt {total['xla opt']:.2f} s, "
        f"torch (faster layout) {total['torch']:.2f} s; ratios {total['xla'] / total['torch']:.2f} "
        f"and {total['xla opt'] / total['torch']:.2f}; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
