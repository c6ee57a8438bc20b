"""Data loading per CPU core: ttame_jax's ImageNet loader vs torchvision's ``DataLoader``.

Generates, deterministically into a temporary folder, two image folders of JPEGs (quality
90, smooth colour fields + noise): ``--small`` images of 500x375 (ImageNet's most common
size) and ``--large`` images of 1000x750. On each folder and for both preprocessing paths,

* eval: resize the short side to 256, centre crop 224, to float;
* train: resize the short side to 256, random crop 224, random flip, to float (shuffled),

it runs, one pass per repeat (batch ``--batch``, after one warm-up pass; the loaders take
turns within each repeat):

* ours: ``data.imagefolder.build_source(...).batches`` with one decoding thread
  (``--threads``), exact (the default) and with ``jpeg_draft=True``;
* torchvision: ``ImageFolder`` + ``Resize(256)`` + ``CenterCrop(224)`` (eval) or
  ``RandomCrop(224)`` + ``RandomHorizontalFlip()`` (train) + ``ToTensor()``, in a
  ``DataLoader`` with ``num_workers`` 0 (``torch.set_num_threads(1)``) and 1 (torch's
  default non-persistent worker, forked per pass).

It prints images/s (wall, best repeat) and images per CPU-second (the process's CPU time
plus its reaped workers', best repeat: the rate per core, which contention from
other jobs affects less than the wall time), each ratio to torchvision ``num_workers=0``,
then the deviation of the eval output from torchvision's on the same files (max and mean
absolute difference in 1/255; the exact path must be 0), the CPU milliseconds per stage
of one image, the CPU model, the load average before and after, and the date.

    python benchmarks/dataload.py [--small 96] [--large 32] [--repeats 5] [--batch 32]
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import tempfile
import time

import numpy as np
from PIL import Image

from ttame_jax.data import imagefolder, preprocess
from ttame_jax.machine import cpu_model

S = 224


def write_jpegs(root: str, count: int, size=(500, 375), classes: int = 4) -> None:
    """``count`` JPEGs (quality 90) of ``size`` in ``root/train/class_k/``: smooth + noise."""
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(count):
        folder = os.path.join(root, "train", f"class_{i % classes}")
        os.makedirs(folder, exist_ok=True)
        base = np.asarray(
            Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize((w, h))
        )
        noise = rng.normal(0, 12, (h, w, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def _cpu_s() -> float:
    """CPU seconds of this process (all threads) and of its reaped child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(runs: dict, count: int, repeats: int) -> dict:
    """Images per wall second and per CPU second of each run, each from its best of
    ``repeats`` passes (after a warm-up pass). The runs take turns within each repeat, so
    a change in the machine's load hits them alike."""
    for run in runs.values():
        run()
    best = {}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), _cpu_s()
            n = run()
            wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
            assert n == count, (n, count)
            w0, c0 = best.get(name, (wall, cpu))
            best[name] = (min(w0, wall), min(c0, cpu))
    return {k: {"img_s": count / w, "img_cpu_s": count / c} for k, (w, c) in best.items()}


def ours(root: str, augment: bool, threads: int, draft: bool, batch: int):
    source = imagefolder.build_source(
        root, "train", input_size=S, seed=0, num_workers=threads, jpeg_draft=draft
    )
    epoch = iter(range(1_000_000))

    def run() -> int:
        batches = source.batches(batch, epoch=next(epoch), shuffle=augment, augment=augment)
        return sum(len(b["image"]) for b in batches)

    return run


def _torch_transform(augment: bool):
    from torchvision import transforms as T

    crop = [T.RandomCrop(S), T.RandomHorizontalFlip()] if augment else [T.CenterCrop(S)]
    return T.Compose([T.Resize(preprocess.resize_size(S)), *crop, T.ToTensor()])


def torchvision_loader(root: str, augment: bool, workers: int, batch: int):
    import torch
    from torchvision import datasets

    data = datasets.ImageFolder(os.path.join(root, "train"), transform=_torch_transform(augment))
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch, shuffle=augment, num_workers=workers
    )
    return lambda: sum(len(images) for images, _ in loader)


def deviation(root: str) -> dict:
    """Eval output of ours (exact, draft) minus torchvision's on every file, in 1/255."""
    from torchvision.datasets.folder import pil_loader

    transform = _torch_transform(False)
    out = {}
    for draft in (False, True):
        source = imagefolder.build_source(root, "train", input_size=S, seed=0, jpeg_draft=draft)
        diffs = []
        for b in source.batches(32):
            for i, image in zip(b["index"], b["image"], strict=True):
                ref = transform(pil_loader(source.describe(int(i)))).numpy().transpose(1, 2, 0)
                diffs.append(np.abs(image - ref) * 255)
        d = np.stack(diffs)
        key = "draft" if draft else "exact"
        out[key] = {"max": float(d.max()), "mean": float(d.mean()), "p99": np.percentile(d, 99)}
    return out


def stages(path: str, repeats: int = 30) -> dict:
    """CPU milliseconds per stage of one image, one thread (best of ``repeats``, by turns)."""
    r = preprocess.resize_size(S)
    full = preprocess.load_image(path)
    resized = preprocess.resize_short_side(full, r)
    work = {
        "decode": lambda: preprocess.load_image(path),
        "resize": lambda: preprocess.resize_short_side(full, r),
        "crop+float": lambda: preprocess.eval_transform(resized, S),
        "draft decode+resize": lambda: preprocess.load_image(path, r),
    }
    best = dict.fromkeys(work, float("inf"))
    for _ in range(repeats):
        for name, fn in work.items():
            t = time.thread_time()  # CPU time: preemption by other jobs does not count
            fn()
            best[name] = min(best[name], 1e3 * (time.thread_time() - t))
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=96, help="500x375 JPEGs")
    p.add_argument("--large", type=int, default=32, help="1000x750 JPEGs")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", default="1", help="our decoding threads, e.g. 1,2")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # num_workers=0: the main process is the one core
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes")
    print(f"{date}, CPU: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print(f"S={S}, batch {a.batch}, best of {a.repeats} passes (taking turns) after a warm-up\n")
    header = "| JPEGs | path | loader | img/s | img per CPU-s | vs torchvision w0 (CPU-s) |"
    rows, extra = [header, "|---|---|---|---|---|---|"], []
    with tempfile.TemporaryDirectory(prefix="ttame_dataload_") as tmp:
        for count, size in ((a.small, (500, 375)), (a.large, (1000, 750))):
            if count < 1:
                continue
            root = os.path.join(tmp, f"{size[0]}x{size[1]}")
            write_jpegs(root, count, size)
            what = f"{count} x {size[0]}x{size[1]}"
            for augment in (False, True):
                runs = {}
                for w in (0, 1):
                    runs[f"torchvision w{w}"] = torchvision_loader(root, augment, w, a.batch)
                for t in (int(x) for x in a.threads.split(",")):
                    runs[f"ours {t} thread(s)"] = ours(root, augment, t, False, a.batch)
                    runs[f"ours {t} thread(s), draft"] = ours(root, augment, t, True, a.batch)
                res = measure(runs, count, a.repeats)
                ref = res["torchvision w0"]["img_cpu_s"]
                for name, r in res.items():
                    rows.append(
                        f"| {what} | {'train' if augment else 'eval'} | {name} | "
                        f"{r['img_s']:.0f} | {r['img_cpu_s']:.0f} | {r['img_cpu_s'] / ref:.2f}x |"
                    )
            dev = deviation(root)
            first = os.path.join(root, "train", "class_0", "00000.jpg")
            ms = stages(first)
            extra.append(
                f"| {what} | {dev['exact']['max']:.0f} | {dev['draft']['max']:.0f} | "
                f"{dev['draft']['mean']:.3f} | {dev['draft']['p99']:.0f} | "
                + " | ".join(f"{v:.2f}" for v in ms.values())
                + " |"
            )
    print("\n".join(rows))
    print(
        "\nEval output vs torchvision on the same files (|difference| in 1/255), and "
        "CPU ms per image and stage (one thread):\n"
    )
    print(
        "| JPEGs | exact max | draft max | draft mean | draft p99 | decode | resize | "
        "crop+float | draft decode+resize |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(extra))
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
