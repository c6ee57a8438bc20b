"""Forward-pass time of our Flax backbones vs torchvision's, same weights and inputs.

Usage::

    python benchmarks/backbones.py [--batch 8] [--repeats 5] [--backbones vgg16,resnet50]
        [--threads 0]

For each backbone: a random-init torchvision model (eval mode) and our module
with the converted weights run on the same NHWC/NCHW batch. Ours is
``module.apply`` jitted three ways and timed after compilation with
``block_until_ready``: plain ``jax.jit`` (XLA's default CPU options: what you get when
you jit the module yourself), ``ttame_jax.xla_cpu.jit`` ("project": YNNPACK fusion off,
what the package's explain/trainer/evaluator use) and ``conv_jit`` ("conv": also no
operand swap, used by Score-CAM); see docs/performance.md. torch runs under
``torch.inference_mode()``. Threads:
``--threads 0`` (default) leaves both libraries their defaults (XLA every core,
torch ``torch.get_num_threads()``), ``--threads 1`` gives each one thread (use it
on a shared, busy CPU; see ``benchmarks/_threads.py``). The three are timed
round-robin, ``repeats`` times each, and the medians are printed as a Markdown
table with ratio = ours / torchvision (< 1: ours is faster) and the max logit
difference (a sanity check, not a test).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import _threads

THREADS = _threads.from_argv(sys.argv, default=0)
_threads.pin(THREADS)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from ttame_jax.backbones import convert_torchvision, create, get_spec  # noqa: E402
from ttame_jax.xla_cpu import CPU_CONV_OPTIONS, CPU_OPTIONS  # noqa: E402

_threads.pin_torch(THREADS)


def time_call(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(name: str, batch: int, repeats: int) -> dict:
    size = get_spec(name).input_size
    torch.manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():  # ViT's head starts at zero: make the logit check meaningful
        for p in ref.parameters():
            if not p.abs().any():
                p.normal_(0.0, 0.02)
    variables = jax.device_put(convert_torchvision(name, ref.state_dict()))
    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
    x_jax, x_torch = jnp.asarray(x), torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

    forward = jax.jit(create(name).apply)
    forward_project = jax.jit(create(name).apply, compiler_options=CPU_OPTIONS)
    forward_conv = jax.jit(create(name).apply, compiler_options=CPU_CONV_OPTIONS)
    t0 = time.perf_counter()
    ours = forward(variables, x_jax).block_until_ready()  # compile + first run
    compile_s = time.perf_counter() - t0
    diff_project = float(
        np.abs(np.asarray(forward_project(variables, x_jax)) - np.asarray(ours)).max()
    )
    forward_conv(variables, x_jax).block_until_ready()

    def run_ours():
        forward(variables, x_jax).block_until_ready()

    def run_project():
        forward_project(variables, x_jax).block_until_ready()

    def run_conv():
        forward_conv(variables, x_jax).block_until_ready()

    def run_torch():
        with torch.inference_mode():
            return ref(x_torch)

    theirs = run_torch().numpy()  # warm-up
    t_ours, t_project, t_conv, t_torch = [], [], [], []
    for _ in range(repeats):  # alternate, so background load hits all alike
        t_ours.append(time_call(run_ours))
        t_project.append(time_call(run_project))
        t_conv.append(time_call(run_conv))
        t_torch.append(time_call(run_torch))
    return dict(
        name=name,
        ours=statistics.median(t_ours),
        project=statistics.median(t_project),
        conv=statistics.median(t_conv),
        torch=statistics.median(t_torch),
        compile=compile_s,
        diff=float(np.abs(np.asarray(ours) - theirs).max()),
        diff_project=diff_project,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--backbones", default="vgg16,resnet50,vit_b_16")
    p.add_argument("--threads", type=int, default=0, help="1: one thread each (0 = defaults)")
    args = p.parse_args()

    print(
        f"batch {args.batch}, {args.repeats} repeats, jax {jax.__version__} "
        f"({jax.devices()[0].platform}), torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, --threads {args.threads}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}\n"
    )
    print(
        "| backbone | jax.jit (ms) | project jit (ms) | conv jit (ms) | torchvision (ms) "
        "| ratio jax.jit | **ratio project** | ratio conv | compile (s) | logit diff "
        "| project vs jax.jit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.backbones.split(","):
        r = bench(name.strip(), args.batch, args.repeats)
        print(
            f"| {r['name']} | {1e3 * r['ours']:.0f} | {1e3 * r['project']:.0f} "
            f"| {1e3 * r['conv']:.0f} | {1e3 * r['torch']:.0f} | {r['ours'] / r['torch']:.2f} "
            f"| **{r['project'] / r['torch']:.2f}** | {r['conv'] / r['torch']:.2f} "
            f"| {r['compile']:.1f} | {r['diff']:.1e} | {r['diff_project']:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
