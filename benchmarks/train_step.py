"""Throughput of one T-TAME training step, ours (jitted JAX) vs a PyTorch reference.

For each backbone (random weights, frozen, eval mode) and a batch of B images
at the backbone's input size, one step = backbone forward with taps ->
attention -> mask -> backbone forward on the masked images -> loss (reference
variant) -> gradient w.r.t. the attention -> SGD/Nesterov update.

* ours: ``ttame_jax.training.train_step.build_steps(...).train`` (jitted, the
  state donated), timed after one warm-up call (compile time shown separately);
* reference: the same step in PyTorch eager mode, written the way the public
  reference implementation computes it (torchvision model with forward hooks,
  all K fusion channels, ``torch.optim.SGD(nesterov=True)``), same B and sizes.

Also shown: the plain backbone forward (JAX) and the step's cost in backbone
forwards. Run (a few minutes on a 2-core CPU)::

    python benchmarks/train_step.py                      # vgg16, resnet50, vit_b_16, B=8
    python benchmarks/train_step.py --dtype=bfloat16 --no-torch   # GPU: bf16 backbone
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable

import jax
import numpy as np

from ttame_jax.backbones import get_spec, load_pretrained
from ttame_jax.config import LossConfig, ModelConfig
from ttame_jax.core.model import build
from ttame_jax.core.precision import backbone_inputs, backbone_module
from ttame_jax.training import sharding
from ttame_jax.training.schedule import OneCycle
from ttame_jax.training.train_step import build_steps


def _time(fn, iters: int) -> float:
    """Seconds per call of ``fn`` (already warmed up), median of ``iters`` calls."""
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_jax(name: str, batch: int, iters: int, dtype: str) -> dict:
    spec = get_spec(name)
    # dtype: the backbone's compute dtype (config.model.backbone_dtype); attention and
    # loss stay float32.
    model = build(spec, ModelConfig(backbone_dtype=dtype))
    mesh = sharding.make_mesh()
    steps = build_steps(model, LossConfig(), OneCycle(10_000, 1e-3), 5e-4, True, mesh, 0)
    bb = sharding.replicate(load_pretrained(name, "random"), mesh)
    x = np.random.default_rng(0).uniform(size=(batch, *(spec.input_size,) * 2, 3))
    x = sharding.shard_batch(x.astype(np.float32), mesh)
    state = sharding.replicate(steps.init(jax.random.key(0), bb), mesh)

    t = time.perf_counter()
    state, m = steps.train(state, bb, x)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t

    def one_step():
        nonlocal state
        state, metrics = steps.train(state, bb, x)
        jax.block_until_ready(metrics)

    step_s = _time(one_step, iters)
    module = backbone_module(spec, dtype)
    forward = jax.jit(lambda v, xn: module.apply(*backbone_inputs(module, v, xn, dtype)))
    jax.block_until_ready(forward(bb, x))
    fwd_s = _time(lambda: jax.block_until_ready(forward(bb, x)), iters)
    return {"compile_s": compile_s, "step_s": step_s, "fwd_s": fwd_s}


def reference_step(
    name: str, batch: int, device: str = "cpu", amp_dtype=None
) -> Callable[[], None]:
    """One PyTorch T-TAME step written the reference implementation's way, ready to call.

    Builds the torchvision backbone (random weights, frozen, eval mode) with forward
    hooks on the taps, the attention mechanism with all K fusion channels and
    ``torch.optim.SGD(nesterov=True)``, on ``device`` with a fixed random batch of
    ``batch`` images, runs one step (warm-up) and returns ``step()``, which runs one more
    (asynchronously on CUDA: synchronise before reading a clock).

    ``amp_dtype`` (e.g. ``torch.float16``): mixed precision as the reference's Lightning
    ``precision="16-mixed"``: the step's forward passes and loss under
    ``torch.autocast(dtype=amp_dtype)``, the backward pass through a ``GradScaler``.
    ``None``: float32 throughout.
    """
    import torch
    import torch.nn.functional as F
    import torchvision

    spec = get_spec(name)
    dev = torch.device(device)
    net = getattr(torchvision.models, name)(weights=None).eval().requires_grad_(False).to(dev)
    feats: dict[str, torch.Tensor] = {}
    for tap in spec.taps:
        # The reference's ViT tap "...encoder_layer_k.ln" is the block's ln_1 module.
        module = tap[: -len(".ln")] + ".ln_1" if tap.endswith(".ln") else tap
        net.get_submodule(module).register_forward_hook(
            lambda m, i, o, t=tap: feats.__setitem__(t, o)
        )
    s = spec.input_size
    x = torch.rand(batch, 3, s, s, device=dev)
    mean = torch.tensor(spec.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=dev).view(1, 3, 1, 1)

    def to_map(f):  # ViT tokens (B, 1+N, D) -> (B, D, √N, √N); CNN maps unchanged
        if f.ndim == 3:
            n = int((f.shape[1] - 1) ** 0.5)
            return f[:, 1:].transpose(1, 2).reshape(f.shape[0], f.shape[2], n, n)
        return f

    with torch.no_grad():
        net((x - mean) / std)
    chans = [to_map(feats[t]).shape[1] for t in spec.taps]
    res = min(56, max(to_map(feats[t]).shape[-1] for t in spec.taps))
    convs = torch.nn.ModuleList(torch.nn.Conv2d(c, c, 1) for c in chans)
    bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(c) for c in chans)
    fuse = torch.nn.Conv2d(sum(chans), spec.num_classes, 1)
    attn = torch.nn.ModuleList([convs, bns, fuse]).to(dev)
    opt = torch.optim.SGD(attn.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    amp = amp_dtype is not None
    scaler = torch.amp.GradScaler(dev.type, enabled=amp)
    autocast = functools.partial(torch.autocast, dev.type, dtype=amp_dtype, enabled=amp)
    vit = spec.kind == "vit"
    rows = torch.arange(batch, device=dev)

    def loss_fn():
        with torch.no_grad():
            y = net((x - mean) / std).argmax(1)
        branches = []
        for tap, conv, bn in zip(spec.taps, convs, bns, strict=True):
            f = to_map(feats[tap])
            b = F.relu(bn(conv(f)) + f)
            branches.append(F.interpolate(b, (res, res), mode="bilinear", align_corners=False))
        a = torch.sigmoid(fuse(torch.cat(branches, 1)))  # (B, K, He, We)
        mask = F.interpolate(a[rows, y][:, None], (s, s), mode="bilinear")
        masked = mask * ((x - mean) / std) if vit else (mask * x - mean) / std
        logits = net(masked)
        psi = a[:, y]  # (B, B, He, We): every image's maps for the batch's classes
        dh, dw = psi[..., 1:, :] - psi[..., :-1, :], psi[..., :, 1:] - psi[..., :, :-1]
        tv = (dh.pow(2).sum() + dw.pow(2).sum()) / (2 * batch)
        return 1.5 * F.cross_entropy(logits, y) + 2 * (psi + 5e-4).pow(0.3).mean() + 0.01 * tv

    def step():
        with autocast():
            loss = loss_fn()
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    step()
    return step


def bench_torch(name: str, batch: int, iters: int) -> float:
    """Seconds per reference PyTorch T-TAME step (eager, float32, CPU)."""
    return _time(reference_step(name, batch), iters)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="vgg16,resnet50,vit_b_16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3, help="timed steps (median)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    args = parser.parse_args()
    if not args.no_torch:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)

    dev = jax.devices()[0]
    print(f"device: {dev.platform} ({dev.device_kind}) x{jax.device_count()}, batch {args.batch}")
    print(f"dtype (backbone compute): {args.dtype}, timed steps: {args.iters} (median)\n")
    print(
        "| backbone | ours step img/s | reference (torch) img/s | ours / reference | "
        "backbone fwd img/s | step = N forwards | compile s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.backbones.split(","):
        ours = bench_jax(name, args.batch, args.iters, args.dtype)
        ref = None if args.no_torch else bench_torch(name, args.batch, args.iters)
        ips = args.batch / ours["step_s"]
        ref_ips = "n/a" if ref is None else f"{args.batch / ref:.2f}"
        ratio = "n/a" if ref is None else f"{ref / ours['step_s']:.2f}x"
        print(
            f"| {name} | {ips:.2f} | {ref_ips} | {ratio} | {args.batch / ours['fwd_s']:.2f} | "
            f"{ours['step_s'] / ours['fwd_s']:.1f} | {ours['compile_s']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
