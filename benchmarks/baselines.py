"""Explanation throughput of ttame_jax.baselines vs pytorch-grad-cam, same weights and images.

One random-init torchvision backbone (weights converted with
``convert_torchvision``), one batch of random normalised images, each method run
by both libraries in the same process on the same CPU. Ours: median wall time of
``--repeats`` calls after one warm-up call (the warm-up's extra time is the
compile time, reported separately); pytorch-grad-cam: median of ``--repeats``
calls (torch is warmed up once with an untimed forward and backward pass).
RISE has no pytorch-grad-cam implementation (n/a).

Score-CAM and Ablation-CAM cost one backbone pass per channel (2048 at ResNet-50's
``layer4``), so the default input is 64 px to finish in minutes on a small CPU;
``--size 224`` is the paper's setting. FP is the forward-pass count per image.

Threads: by default both libraries run single-threaded (``--threads 1``): on a
shared, oversubscribed CPU torch's OpenMP threads spin-wait and slow down up to
10x, which would flatter us. ``--threads 0`` keeps each library's defaults.

    python benchmarks/baselines.py [--backbone resnet50|vit_b_16] [--size 64] [--batch 1]
        [--methods gradcam,gradcampp,scorecam,ablationcam,rise] [--rise-masks 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time

import _threads  # noqa: E402  (benchmarks/_threads.py)

THREADS = _threads.from_argv(sys.argv)
_threads.pin(THREADS)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from pytorch_grad_cam import AblationCAM, GradCAM, GradCAMPlusPlus, ScoreCAM  # noqa: E402
from pytorch_grad_cam.ablation_layer import AblationLayerVit  # noqa: E402

from ttame_jax import backbones, baselines  # noqa: E402

_threads.pin_torch(THREADS)
REFERENCE = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
}
TORCH_LAYER = {
    "resnet50": ("layer4", lambda m: m.layer4),
    "vit_b_16": ("encoder.layers.encoder_layer_11.ln", lambda m: m.encoder.layers[-1].ln_1),
}


def vit_reshape(t):
    b, n, d = t.shape
    side = int(round((n - 1) ** 0.5))
    return t[:, 1:, :].reshape(b, side, side, d).permute(0, 3, 1, 2)


def build(name: str):
    """Random-init torchvision model and our module with the same (converted) weights."""
    torch.manual_seed(0)
    tm = getattr(torchvision.models, name)().eval()
    if name == "vit_b_16":  # torchvision zero-inits the head: constant logits otherwise
        with torch.no_grad():
            tm.heads.head.weight.normal_(0.0, 0.05)
    variables = jax.device_put(backbones.convert_torchvision(name, tm.state_dict()))
    return tm, backbones.create(name), variables


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_ours(method, module, variables, x, layer, options, repeats):
    def call():
        jax.block_until_ready(method.fn(module, variables, x, layer, **options))

    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    steady = median_time(call, repeats)
    return steady, max(first - steady, 0.0)


def time_reference(name, tm, torch_layer, x, vit, repeats):
    kw = {"reshape_transform": vit_reshape} if vit else {}
    if name == "ablationcam" and vit:
        kw["ablation_layer"] = AblationLayerVit()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with REFERENCE[name](tm, [torch_layer], **kw) as cam:

        def call():
            with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bars
                cam(input_tensor=xt, targets=None)

        return median_time(call, repeats)


def run(args) -> list[dict]:
    tm, module, variables = build(args.backbone)
    layer, torch_layer_of = TORCH_LAYER[args.backbone]
    x = np.random.default_rng(0).normal(size=(args.batch, args.size, args.size, 3))
    x = x.astype(np.float32)
    tm(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).sum().backward()  # torch warm-up
    tm.zero_grad()
    rows = []
    for name in args.methods.split(","):
        method = baselines.METHODS[name]
        options = {"n_masks": args.rise_masks} if name == "rise" else {}
        if name in ("scorecam", "ablationcam", "rise"):
            options["batch_size"] = args.chunk
        ours, compile_s = time_ours(method, module, variables, x, layer, options, args.repeats)
        ref = None
        if name in REFERENCE:
            vit = args.backbone == "vit_b_16"
            ref = time_reference(name, tm, torch_layer_of(tm), x, vit, args.repeats)
        fp = method.fp(module, variables, x, layer, **options)
        rows.append(dict(method=name, fp=fp, ours=args.batch / ours, compile=compile_s,
                         ref=None if ref is None else args.batch / ref))  # fmt: skip
        print(f"# {name}: done", flush=True)
    return rows


def table(rows, args) -> str:
    lines = [
        f"{args.backbone} @ {args.size}px, batch {args.batch}, jax {jax.__version__} "
        f"({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), --threads {args.threads}",
        "",
        "| method | FP | ours (img/s) | pytorch-grad-cam (img/s) | ours / ref | compile (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = "n/a" if r["ref"] is None else f"{r['ref']:.3g}"
        ratio = "n/a" if r["ref"] is None else f"{r['ours'] / r['ref']:.2f}x"
        lines.append(
            f"| {r['method']} | {r['fp']} | {r['ours']:.3g} | {ref} | {ratio} | "
            f"{r['compile']:.1f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50", choices=sorted(TORCH_LAYER))
    parser.add_argument("--size", type=int, default=64, help="input px (ViT-B/16: 224 only)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--methods", default="gradcam,gradcampp,scorecam,ablationcam,rise")
    parser.add_argument("--rise-masks", type=int, default=512, help="N (paper: 8000)")
    parser.add_argument("--chunk", type=int, default=32, help="our batch_size per pass")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads for torch; 1 also makes XLA single-threaded (0 = library defaults)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.backbone == "vit_b_16" and args.size != 224:
        parser.error("vit_b_16 takes 224 px input only: pass --size 224")
    unknown = set(args.methods.split(",")) - set(baselines.METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {sorted(baselines.METHODS)}")
    print(table(run(args), args))


if __name__ == "__main__":
    main()
