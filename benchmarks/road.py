"""ROAD imputation speed: ttame_jax's multigrid-PCG imputer vs pytorch-grad-cam's SciPy one.

Same 8 images (224x224, normalised), same smooth maps, all 7 removed fractions with the
MoRF percentile rule: 56 imputations per side, noise 0. Each level (8 images) is timed on
its own, ours after one warm-up call that compiles; ``--repeats`` > 1 keeps the fastest
run of each side per level. Prints a Markdown table per level and overall (images/s, the
speed ratio in wall time and per CPU-second — XLA may use every core, SciPy uses one —, CG
iterations, max absolute deviation between the two outputs), the CPU
model and the load average before and after.

    python benchmarks/road.py [--images 8] [--size 224] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import scipy.ndimage as ndi
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from ttame_jax.machine import cpu_model
from ttame_jax.metrics import percentile_keep, solve_linear_imputation

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def make_inputs(n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = ndi.gaussian_filter(rng.random((n, size, size, 3)), (0, 2, 2, 0))
    images = (images - images.min()) / (images.max() - images.min())
    normed = ((images - MEAN) / STD).astype(np.float32)
    maps = np.stack([ndi.zoom(rng.random((7, 7)), size / 7, order=1) for _ in range(n)])
    maps = (maps - maps.min((1, 2), keepdims=True)) / np.ptp(maps, (1, 2), keepdims=True)
    keep = np.concatenate(
        [np.asarray(percentile_keep(maps.astype(np.float32), r, "morf")) for r in LEVELS]
    )
    return np.tile(normed, (len(LEVELS), 1, 1, 1)), keep


def run_ours(images, keep):
    out, iterations = solve_linear_imputation(images, keep)
    return np.asarray(jax.block_until_ready(out)), np.asarray(iterations)


def run_reference(images, keep):
    imputer = NoisyLinearImputer(noise=0.0)
    out = []
    for image, mask in zip(images, keep, strict=True):
        chw = torch.tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        out.append(imputer(chw, torch.tensor(mask.astype(np.float32))).numpy().transpose(1, 2, 0))
    return np.stack(out)


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _timed(fn, *args, repeats: int):
    """Fastest wall time of ``repeats`` calls, the process CPU time of that call, the output."""
    best, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        out = fn(*args)
        wall = time.perf_counter() - start
        if wall < best:
            best, cpu = wall, time.process_time() - cpu_start
    return (best, cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    images, keep = make_inputs(args.images, args.size)
    n = args.images
    load_before = _load()
    run_ours(images[:n], keep[:n])  # warm-up: compiles for this batch shape

    rows = []
    for i, level in enumerate(LEVELS):
        x, k = images[i * n : (i + 1) * n], keep[i * n : (i + 1) * n]
        t_ours, (ours, iterations) = _timed(run_ours, x, k, repeats=args.repeats)
        t_ref, ref = _timed(run_reference, x, k, repeats=args.repeats)
        dev = np.abs(ours - ref).max()
        rows.append((f"{round(100 * level)} %", t_ref, t_ours, iterations, dev))
    t_ref = tuple(sum(r[1][i] for r in rows) for i in (0, 1))
    t_ours = tuple(sum(r[2][i] for r in rows) for i in (0, 1))
    all_its = np.concatenate([r[3] for r in rows])
    rows.append(("all", t_ref, t_ours, all_its, max(r[4] for r in rows)))

    print(
        f"{n} images x {len(LEVELS)} MoRF levels = {n * len(LEVELS)} imputations at "
        f"{args.size}x{args.size}, backend {jax.default_backend()}, {cpu_model()}, "
        f"best of {args.repeats}, load average (1/5/15 min) {load_before} before, "
        f"{_load()} after\n"
    )
    print(
        "| removed | pytorch-grad-cam (SciPy spsolve) images/s | ttame_jax images/s "
        "| ratio (wall) | ratio per CPU-second | CG iterations "
        "| max abs deviation (normalised units) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (ref_s, ref_cpu), (ours_s, ours_cpu), its, dev in rows:
        count = len(its)
        bold = "**" if name == "all" else ""
        print(
            f"| {bold}{name}{bold} | {count / ref_s:.2f} | {count / ours_s:.1f} "
            f"| {bold}{ref_s / ours_s:.1f}x{bold} | {ref_cpu / ours_cpu:.1f}x "
            f"| {its.min()}-{its.max()} | {dev:.1e} |"
        )


if __name__ == "__main__":
    main()
