"""GPU readiness check: one command, a few minutes, one JSON + one Markdown table.

Measures, with random weights and synthetic inputs (images/s; each measurement has a
warm-up call that compiles, excluded from the timing, then the median of a few timed
repeats, with ``jax.block_until_ready`` / ``torch.cuda.synchronize()`` around them):

* the T-TAME train step (``training.train_step.build_steps`` + ``schedule.OneCycle`` +
  ``core.model.build``; loss "reference", SGD/Nesterov) for each backbone (default
  ResNet-50 and ViT-B/16, 224x224) and batch (default 32 and 128):

  - ours, float32;
  - ours, bfloat16 backbone compute (``config.model.backbone_dtype="bfloat16"``, see
    ``ttame_jax/core/precision.py``; weights, attention and loss stay float32), or "n/a"
    where the backbone cannot compute in bfloat16;
  - PyTorch on CUDA, the reference implementation's step (``benchmarks/train_step.py``
    ``reference_step``) with AMP: ``torch.autocast("cuda", torch.float16)`` + ``GradScaler``,
    as the reference's Lightning ``precision="16-mixed"``;

* ``ttame_jax.explain`` (jitted, top-1 maps), float32;
* the ROAD imputer (``metrics.percentile_keep`` + ``metrics.solve_linear_imputation``)
  at 224x224 over the 7 ROAD levels (one image = its 7 imputations);
* data loading on all CPU cores from a generated folder of ImageNet-sized JPEGs
  (500x375): ours (``data.imagefolder.build_source(...).batches``, threads) vs torchvision
  ``ImageFolder`` + ``DataLoader`` (processes), both with the training transform (resize
  short side 256, random crop 224, random flip, to float) and ``num_workers`` = all cores;
  persistent workers started in the warm-up pass, one repeat = one pass.

A time guard skips what would not finish within ``--budget-s`` (rows marked
"skipped: time budget"); the JSON and the table are rewritten after every measurement,
so a run killed by a timeout still leaves its results. Measurements run in priority
order: train steps float32 (ours, PyTorch AMP; smaller batches first), ROAD, loader,
explain, then the bfloat16 train steps.

On the GPU machine (about 4-5 minutes; the outer timeout leaves room for start-up)::

    PYTHONPATH=. timeout 330 python benchmarks/device_check.py --out "$OUT"

Columns: images/s and s/iter from the timed median; "compile s" is the warm-up call
(JAX: compile + one run; PyTorch: model set-up + one step). If the budget skips rows,
rerun the rest alone, e.g. ``--batches 128`` or ``--backbones vit_b_16``.

Options: ``--backbones resnet50,vit_b_16 --batches 32,128 --repeats 3 --steps 5
--budget-s 270 --jpegs 256 --road-images 16``. ``--quick`` runs everything at tiny sizes
on the CPU (small synthetic backbones, batch 2, 2 steps, 4 JPEGs, ROAD at 64x64) to
test the script itself::

    PYTHONPATH=. python benchmarks/device_check.py --quick --out /tmp/device_check

Needs only jax, flax, optax, numpy, pillow (+ torch/torchvision for the PyTorch rows);
it imports no ttame_jax module that needs ml_collections, tqdm or matplotlib.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # the time guard counts from here (imports included)

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402

# JAX and PyTorch share the GPU: JAX allocates on demand instead of taking 75 % up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "--quick" in sys.argv[1:]:  # before JAX starts its backends
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dataload import write_jpegs  # noqa: E402
from train_step import reference_step  # noqa: E402

import ttame_jax  # noqa: E402
from ttame_jax.backbones import get_spec, load_pretrained  # noqa: E402
from ttame_jax.config import LossConfig, ModelConfig  # noqa: E402
from ttame_jax.core.explainer import Explainer, explain  # noqa: E402
from ttame_jax.core.model import build  # noqa: E402
from ttame_jax.core.precision import ComputeDtypeError  # noqa: E402
from ttame_jax.data import imagefolder  # noqa: E402
from ttame_jax.metrics import percentile_keep, solve_linear_imputation  # noqa: E402
from ttame_jax.training import sharding  # noqa: E402
from ttame_jax.training.schedule import OneCycle  # noqa: E402
from ttame_jax.training.train_step import build_steps  # noqa: E402

ROAD_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
SKIP_BUDGET = "skipped: time budget"
COLUMNS = ("measurement", "backbone", "batch", "impl", "dtype", "images/s", "s/iter", "compile s")


# ---------------------------------------------------------------- timing


def timed(run: Callable[[], None], repeats: int, per_repeat: int) -> float:
    """Median seconds per item over ``repeats`` calls of ``run`` (``per_repeat`` items each).

    ``run`` must block until its work is done (``block_until_ready`` / ``synchronize``).
    """
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / per_repeat


def warm(run: Callable[[], None]) -> float:
    """Runs ``run`` once (compile / warm-up) and returns its seconds."""
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


# ---------------------------------------------------------------- measurements


def _images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(batch, size, size, 3)).astype(np.float32)


def train_ours(name: str, batch: int, dtype: str, a) -> dict:
    """The T-TAME train step; ``dtype``: ``config.model.backbone_dtype``."""
    spec = get_spec(name)
    model = build(spec, ModelConfig(backbone_dtype=dtype))
    mesh = sharding.make_mesh()
    steps = build_steps(model, LossConfig(), OneCycle(10_000, 1e-3), 5e-4, True, mesh, 0)
    bb = sharding.replicate(load_pretrained(name, "random"), mesh)
    x = sharding.shard_batch(_images(batch, spec.input_size), mesh)
    try:
        state = sharding.replicate(steps.init(jax.random.key(0), bb), mesh)
    except ComputeDtypeError:
        return {"status": f"n/a (the backbone cannot compute in {dtype})"}
    metrics = {}

    def run(n):
        nonlocal state, metrics
        for _ in range(n):
            state, metrics = steps.train(state, bb, x)
        jax.block_until_ready((state, metrics))

    compile_s = warm(lambda: run(1))
    sec = timed(lambda: run(a.steps), a.repeats, a.steps)
    note = "" if bool(metrics["finite"]) else "non-finite loss"
    return {"compile_s": compile_s, "sec_per_iter": sec, "images_per_s": batch / sec, "note": note}


def train_torch_amp(name: str, batch: int, a) -> dict:
    try:
        import torch
    except ImportError:
        return {"status": "skipped: torch not installed"}
    if not torch.cuda.is_available():
        return {"status": "skipped: no CUDA"}
    try:
        import torchvision

        getattr(torchvision.models, name)
    except (ImportError, AttributeError):
        return {"status": f"n/a (no torchvision model {name})"}
    t = time.perf_counter()
    held = [reference_step(name, batch, "cuda", torch.float16)]  # includes a warm-up step
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t

    def run():
        for _ in range(a.steps):
            held[0]()
        torch.cuda.synchronize()

    try:
        sec = timed(run, a.repeats, a.steps)
    finally:
        held.clear()  # frees the model and activations before the next measurement
        torch.cuda.empty_cache()
    return {"compile_s": compile_s, "sec_per_iter": sec, "images_per_s": batch / sec}


def explain_ours(name: str, batch: int, a) -> dict:
    spec = get_spec(name)
    model = build(spec, None)
    bb = load_pretrained(name, "random")
    x = jnp.asarray(_images(batch, spec.input_size))
    attn_vars = jax.jit(model.init)(jax.random.key(0), bb, x[:1])
    params = Explainer.from_model(model, bb, attn_vars)
    fn = jax.jit(lambda p, v: explain(p, v).maps)  # top-1 maps (B, S, S)
    out = []

    def run(n):
        for _ in range(n):
            out.append(fn(params, x))
        jax.block_until_ready(out)
        out.clear()

    compile_s = warm(lambda: run(1))
    sec = timed(lambda: run(a.steps), a.repeats, a.steps)
    return {"compile_s": compile_s, "sec_per_iter": sec, "images_per_s": batch / sec}


def road_inputs(n: int, size: int, seed: int = 0):
    """Smooth random normalised images (n, S, S, 3) and MoRF keep masks (7n, S, S)."""
    rng = np.random.default_rng(seed)
    small = jnp.asarray(rng.random((n, size // 8, size // 8, 3)), jnp.float32)
    images = jax.image.resize(small, (n, size, size, 3), "bilinear")
    images = (images - jnp.asarray([0.485, 0.456, 0.406])) / jnp.asarray([0.229, 0.224, 0.225])
    maps = jax.image.resize(
        jnp.asarray(rng.random((n, 7, 7)), jnp.float32), (n, size, size), "bilinear"
    )
    keep = jnp.concatenate([percentile_keep(maps, r, "morf") for r in ROAD_LEVELS])
    return jnp.tile(images, (len(ROAD_LEVELS), 1, 1, 1)), keep


def road_ours(n: int, size: int, a) -> dict:
    images, keep = road_inputs(n, size)
    iterations = []

    def run():
        out, its = solve_linear_imputation(images, keep)
        jax.block_until_ready(out)
        iterations.append(np.asarray(its))

    compile_s = warm(run)
    sec = timed(run, a.repeats, n)
    its = np.concatenate(iterations)
    note = f"{n} images x {len(ROAD_LEVELS)} levels per call, CG iterations {its.min()}-{its.max()}"
    return {"compile_s": compile_s, "sec_per_iter": sec, "images_per_s": 1 / sec, "note": note}


def loader_ours(root: str, count: int, a) -> dict:
    source = imagefolder.build_source(root, "train", input_size=224, seed=0, num_workers=a.workers)

    def run():
        n = 0
        for b in source.batches(a.loader_batch, shuffle=True, augment=True):
            n += len(b["image"])
        assert n == count, (n, count)

    compile_s = warm(run)
    sec = timed(run, a.repeats, count)
    return {"compile_s": compile_s, "sec_per_iter": sec, "images_per_s": 1 / sec}


def loader_torch(root: str, count: int, a) -> dict:
    try:
        import torch
        from torchvision import datasets, transforms
    except ImportError:
        return {"status": "skipped: torch/torchvision not installed"}
    transform = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.RandomCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ]
    )
    data = datasets.ImageFolder(os.path.join(root, "train"), transform=transform)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=a.loader_batch,
        shuffle=True,
        num_workers=a.workers,
        persistent_workers=a.workers > 0,
    )

    def run():
        n = 0
        for images, _ in loader:
            n += len(images)
        assert n == count, (n, count)

    compile_s = warm(run)
    sec = timed(run, a.repeats, count)
    return {"compile_s": compile_s, "sec_per_iter": sec, "images_per_s": 1 / sec}


# ---------------------------------------------------------------- report


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "ttame_jax": ttame_jax.__version__}
    for dist in (
        "jax",
        "jaxlib",
        "jax-cuda12-plugin",
        "jax-cuda13-plugin",
        "flax",
        "optax",
        "orbax-checkpoint",
        "numpy",
        "scipy",
        "pillow",
        "torch",
        "torchvision",
        "timm",
    ):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def _gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    dev = jax.devices()[0]
    return dev.device_kind if dev.platform == "gpu" else "none"


def _torch_settings() -> dict:
    try:
        import torch
    except ImportError:
        return {}
    return {
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "num_threads": torch.get_num_threads(),
    }


def _fmt(v, digits=2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"# ttame-jax device check, {report['date']}",
        "",
        f"GPU: {env['gpu']}; jax.devices(): {env['jax_devices']}; CPU cores: {env['cpu_count']}; "
        f"elapsed {report['elapsed_s']:.0f} s of budget {report['settings']['budget_s']:.0f} s"
        + (" (--quick)" if report["settings"]["quick"] else ""),
        "",
        "| " + " | ".join((*COLUMNS, "status / note")) + " |",
        "|" + "---|" * 3 + "---|---|" + "---:|" * 3 + "---|",
    ]
    for r in report["rows"]:
        status = r["status"] if r["status"] != "ok" else r.get("note", "")
        lines.append(
            "| "
            + " | ".join(
                [
                    r["measurement"],
                    r["backbone"],
                    str(r["batch"]),
                    r["impl"],
                    r["dtype"],
                    _fmt(r.get("images_per_s")),
                    _fmt(r.get("sec_per_iter"), 4),
                    _fmt(r.get("compile_s"), 1),
                    status,
                ]
            )
            + " |"
        )
    lines.append("")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    return "\n".join(lines) + "\n"


def write(report: dict, out: str) -> None:
    report["elapsed_s"] = time.perf_counter() - _T0
    with open(os.path.join(out, "device_check.json.tmp"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    os.replace(os.path.join(out, "device_check.json.tmp"), os.path.join(out, "device_check.json"))
    with open(os.path.join(out, "device_check.md"), "w") as f:
        f.write(markdown(report))


# ---------------------------------------------------------------- main


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "device_check")
    p.add_argument("--budget-s", type=float, default=270.0)
    p.add_argument("--quick", action="store_true", help="tiny sizes on the CPU (tests)")
    p.add_argument("--backbones", default=None, help="default resnet50,vit_b_16")
    p.add_argument("--batches", default=None, help="default 32,128")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (median); default 3")
    p.add_argument("--steps", type=int, default=None, help="steps per repeat; default 5")
    p.add_argument("--jpegs", type=int, default=None, help="generated JPEGs; default 256")
    p.add_argument("--loader-batch", type=int, default=None, help="default 32")
    p.add_argument("--workers", type=int, default=None, help="default all CPU cores")
    p.add_argument("--road-images", type=int, default=None, help="default 16")
    p.add_argument("--road-size", type=int, default=None, help="default 224")
    a = p.parse_args(argv)
    full = dict(
        backbones="resnet50,vit_b_16",
        batches="32,128",
        repeats=3,
        steps=5,
        jpegs=256,
        loader_batch=32,
        road_images=16,
        road_size=224,
    )
    quick = dict(
        backbones="synthetic_cnn,synthetic_vit",
        batches="2",
        repeats=2,
        steps=2,
        jpegs=4,
        loader_batch=2,
        road_images=2,
        road_size=64,
    )
    for k, v in (quick if a.quick else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.backbones = [b for b in a.backbones.split(",") if b]
    a.batches = [int(b) for b in str(a.batches).split(",") if b]
    a.workers = a.workers or os.cpu_count() or 1
    return a


def main(argv=None) -> dict:
    a = parse(argv)
    os.makedirs(a.out, exist_ok=True)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "environment": {
            "jax_devices": [str(d) for d in jax.devices()],
            "jax_backend": jax.default_backend(),
            "gpu": _gpu_name(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "versions": _versions(),
            "torch": _torch_settings(),
        },
        "settings": {
            **{k: v for k, v in vars(a).items()},
            "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
            "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS"),
            "multiprocessing_start_method": multiprocessing.get_start_method(),
            "train_step": "build_steps(build(spec), LossConfig() [variant reference], "
            "OneCycle(10000, 1e-3), weight_decay 5e-4, nesterov, 1-device mesh), random "
            "weights, uniform [0,1) images at the backbone's input size",
            "torch_step": "benchmarks/train_step.py reference_step, CUDA, autocast float16 + "
            "GradScaler",
            "explain": "jax.jit(explain(params, x).maps), top-1 maps, float32",
            "road": "percentile_keep(morf) + solve_linear_imputation, 7 levels "
            f"{list(ROAD_LEVELS)}",
            "loader": "train transform (resize 256, random crop 224, flip, float), shuffled, "
            "one pass per repeat; torchvision: persistent workers (started in the warm-up "
            "pass), ours: a thread pool per pass; JPEGs 500x375 quality 90",
            "timing": "warm-up call excluded; median of `repeats` repeats of `steps` calls",
        },
        "rows": [],
    }
    durations: dict[str, float] = {}  # measurement kind -> longest seconds so far

    def measure(measurement, backbone, batch, impl, dtype, fn, kind):
        """Runs ``fn`` unless the longest ``kind`` measurement so far would pass the budget."""
        row = {
            "measurement": measurement,
            "backbone": backbone,
            "batch": batch,
            "impl": impl,
            "dtype": dtype,
        }
        elapsed = time.perf_counter() - _T0
        if kind != "n/a" and elapsed + durations.get(kind, 5.0) > a.budget_s:
            row["status"] = SKIP_BUDGET
        else:
            t = time.perf_counter()
            try:
                result = fn()
                row.update({"status": "ok", **result})
            except Exception as err:  # noqa: BLE001 - one failure must not lose the rest
                row["status"] = f"error: {type(err).__name__}: {err}"[:300]
                row["traceback"] = traceback.format_exc()
            durations[kind] = max(durations.get(kind, 0.0), time.perf_counter() - t)
        report["rows"].append(row)
        write(report, a.out)
        print(
            f"[{time.perf_counter() - _T0:6.1f}s] {measurement} {backbone} B={batch} {impl} "
            f"{dtype}: {row['status']} {_fmt(row.get('images_per_s'))} img/s",
            flush=True,
        )

    # 1. train step, float32 ours vs PyTorch AMP (the comparison that matters most);
    #    smallest batch of every backbone first, so a short budget loses large batches.
    for b in a.batches:
        for name in a.backbones:
            fn = functools.partial(train_ours, name, b, "float32", a)
            measure("train step", name, b, "ours (jax)", "float32", fn, kind="train")
            fn = functools.partial(train_torch_amp, name, b, a)
            measure("train step", name, b, "pytorch reference", "AMP float16", fn, kind="torch")
    # 2. ROAD imputer
    fn = functools.partial(road_ours, a.road_images, a.road_size, a)
    size = f"{a.road_size}x{a.road_size}"
    measure("ROAD imputer", size, a.road_images, "ours (jax)", "float32", fn, kind="road")
    # 3. data loader
    with tempfile.TemporaryDirectory(prefix="ttame_device_check_") as root:
        write_jpegs(root, a.jpegs)
        what = f"{a.jpegs} JPEGs, {a.workers} workers"
        fn = functools.partial(loader_ours, root, a.jpegs, a)
        measure("data loader", what, a.loader_batch, "ours (threads)", "float32", fn, "loader")
        fn = functools.partial(loader_torch, root, a.jpegs, a)
        impl = "torchvision DataLoader"
        measure("data loader", what, a.loader_batch, impl, "float32", fn, kind="loader")
    # 4. explain
    for b in a.batches:
        for name in a.backbones:
            fn = functools.partial(explain_ours, name, b, a)
            measure("explain", name, b, "ours (jax)", "float32", fn, kind="explain")
    # 5. train step with a bfloat16 backbone (last: nice to have)
    for b in a.batches:
        for name in a.backbones:
            fn = functools.partial(train_ours, name, b, "bfloat16", a)
            measure("train step", name, b, "ours (jax)", "bfloat16 backbone", fn, kind="train")

    for r in report["rows"]:  # ours / PyTorch AMP, for the table
        if r["measurement"] == "train step" and r["impl"] == "ours (jax)" and "images_per_s" in r:
            ref = next(
                (
                    q
                    for q in report["rows"]
                    if q["impl"] == "pytorch reference"
                    and q["backbone"] == r["backbone"]
                    and q["batch"] == r["batch"]
                ),
                None,
            )
            if ref and "images_per_s" in ref:
                ratio = f"{r['images_per_s'] / ref['images_per_s']:.2f}x PyTorch AMP"
                r["note"] = "; ".join(filter(None, (r.get("note"), ratio)))
    write(report, a.out)
    print()
    print(markdown(report), flush=True)
    print(f"wrote {os.path.join(a.out, 'device_check.json')} and device_check.md")
    return report


if __name__ == "__main__":
    main()
