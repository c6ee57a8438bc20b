"""Cost of ``ttame_jax.explain`` relative to a plain backbone forward (goal: <= 1.15x).

Both are jitted, same batch (default 8 images at the backbone's input size),
same random-init weights, same run; wall time is the median of ``--repeats``
calls after one warm-up (compile) call. ``explain`` does the backbone forward
with feature taps, the attention branches, the fusion channel of the top-1
class only, min-max and the resize to input resolution. The last column is the
eval-mode ``TTAME.forward`` that computes all K fusion channels at feature
resolution (what the reference implementation does at inference), for comparison.

    python benchmarks/explain_cost.py [--backbones vgg16,resnet50,vit_b_16] [--batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ttame_jax.backbones import get_spec, load_pretrained
from ttame_jax.core.explainer import Explainer, explain
from ttame_jax.core.model import build


def _median_time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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

    backbone = jax.jit(lambda v, x: model.backbone.apply(v, (x - mean) / std))
    t_backbone = _median_time(backbone, backbone_vars, x, repeats=repeats)
    t_explain = _median_time(jax.jit(explain), params, x, repeats=repeats)
    t_all = _median_time(jax.jit(model.forward), attn_vars, backbone_vars, x, repeats=repeats)
    return {"backbone": t_backbone, "explain": t_explain, "all_k": t_all}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="vgg16,resnet50,vit_b_16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(f"device: {jax.devices()[0].device_kind}, batch {args.batch}, median of {args.repeats}")
    header = (
        f"{'backbone':<10} {'forward ms':>11} {'explain ms':>11} {'ratio':>7} "
        f"{'all-K fwd ms':>13} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for name in args.backbones.split(","):
        r = measure(name, args.batch, args.repeats)
        print(
            f"{name:<10} {1e3 * r['backbone']:>11.1f} {1e3 * r['explain']:>11.1f} "
            f"{r['explain'] / r['backbone']:>6.2f}x {1e3 * r['all_k']:>13.1f} "
            f"{r['all_k'] / r['backbone']:>6.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
