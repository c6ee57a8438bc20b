"""Cost of ``ttame_jax.explain`` relative to a plain backbone forward (goal: <= 1.15x).

Both are jitted with ``ttame_jax.xla_cpu.jit`` (the package's own jit), same batch
(default 8 images at the backbone's input size), same random-init weights, same run;
wall time is the minimum over ``--repeats`` round-robin rounds after one warm-up
(compile) call each. ``explain`` does the backbone forward with feature taps, the
attention branches, the fusion channel of the top-1 class only, min-max and the resize
to input resolution. "all-K fwd" is the eval-mode ``TTAME.forward`` that computes all K
fusion channels at feature resolution (what the reference implementation does at
inference); "explain all" is ``explain(all_classes=True)``: all K maps min-max scaled
and resized to input resolution, a ``(B, K, S, S)`` float32 output (1.6 GB for
ResNet-50 at batch 8, whose writing alone is a large part of its time on a CPU).

    python benchmarks/explain_cost.py [--backbones vgg16,resnet50,vit_b_16] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax import xla_cpu
from ttame_jax.backbones import get_spec, load_pretrained
from ttame_jax.core.explainer import Explainer, explain
from ttame_jax.core.model import build


def _interleaved_min_times(fns: dict, repeats: int) -> dict:
    """Min wall time of each zero-argument jitted call, run round-robin.

    Round-robin order and the minimum make the ratio robust to other load on a
    shared machine: every contender sees the same background in each round.
    """
    for fn in fns.values():
        jax.block_until_ready(fn())  # compile + warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


def measure(name: str, batch: int, repeats: int) -> dict:
    spec = get_spec(name)
    model = build(spec)
    backbone_vars = load_pretrained(name, "random", seed=0)
    x = jnp.asarray(
        np.random.default_rng(0).uniform(size=(batch, spec.input_size, spec.input_size, 3)),
        jnp.float32,
    )
    attn_vars = jax.jit(model.init)(jax.random.key(1), backbone_vars, x)
    params = Explainer.from_model(model, backbone_vars, attn_vars)
    mean, std = jnp.asarray(spec.mean), jnp.asarray(spec.std)

    # All four compiled the project's way (ttame_jax.xla_cpu.jit: YNNPACK fusion off on CPU).
    backbone = xla_cpu.jit(lambda v, x: model.backbone.apply(v, (x - mean) / std))
    explain_jit = xla_cpu.jit(explain, static_argnames=("all_classes",))
    forward = xla_cpu.jit(model.forward)
    return _interleaved_min_times(
        {
            "backbone": lambda: backbone(backbone_vars, x),
            "explain": lambda: explain_jit(params, x),
            "all_k": lambda: forward(attn_vars, backbone_vars, x),
            "explain_all": lambda: explain_jit(params, x, all_classes=True).maps,
        },
        repeats,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="vgg16,resnet50,vit_b_16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    device = jax.devices()[0].device_kind
    print(
        f"device: {device}, batch {args.batch}, min of {args.repeats} interleaved rounds, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'backbone':<10} {'forward ms':>11} {'explain ms':>11} {'ratio':>7} "
        f"{'all-K fwd ms':>13} {'ratio':>7} {'explain all ms':>15} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for name in args.backbones.split(","):
        r = measure(name, args.batch, args.repeats)
        print(
            f"{name:<10} {1e3 * r['backbone']:>11.1f} {1e3 * r['explain']:>11.1f} "
            f"{r['explain'] / r['backbone']:>6.2f}x {1e3 * r['all_k']:>13.1f} "
            f"{r['all_k'] / r['backbone']:>6.2f}x {1e3 * r['explain_all']:>15.1f} "
            f"{r['explain_all'] / r['backbone']:>6.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
