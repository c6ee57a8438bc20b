"""ROAD imputation speed: ttame_jax's multigrid-PCG imputer vs pytorch-grad-cam's SciPy one.

Same 8 images (224x224, normalised), same smooth maps, all 7 removed fractions with the
MoRF percentile rule: 56 imputations per side, noise 0, one run each (ours after one warm-up
call that compiles). Prints a Markdown table with images/s, the speed ratio and the max
absolute deviation between the two outputs.

    python benchmarks/road.py [--images 8] [--size 224]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import scipy.ndimage as ndi
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    images, keep = make_inputs(args.images, args.size)
    n = len(images)

    run_ours(images, keep)  # warm-up: compiles for this batch shape
    start = time.perf_counter()
    ours, iterations = run_ours(images, keep)
    t_ours = time.perf_counter() - start

    start = time.perf_counter()
    ref = run_reference(images, keep)
    t_ref = time.perf_counter() - start

    dev = np.abs(ours - ref).max()
    print(
        f"{args.images} images x {len(LEVELS)} levels = {n} imputations at "
        f"{args.size}x{args.size}, backend {jax.default_backend()}, "
        f"CG iterations {iterations.min()}-{iterations.max()}\n"
    )
    print("| imputer | images/s | seconds | max abs deviation (normalised units) |")
    print("|---|---:|---:|---:|")
    rows = [
        ("pytorch-grad-cam NoisyLinearImputer (SciPy spsolve)", t_ref, "-"),
        ("ttame_jax noisy_linear_impute (multigrid PCG)", t_ours, f"{dev:.1e}"),
    ]
    for name, seconds, deviation in rows:
        print(f"| {name} | {n / seconds:.2f} | {seconds:.1f} | {deviation} |")
    print(f"| **ratio** | **{t_ref / t_ours:.1f}x** | | |")


if __name__ == "__main__":
    main()
