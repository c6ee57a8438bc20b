"""T-TAME's seed-to-seed spread on the synthetic benchmark, and what decides it (issue 12 A).

Setting: the default benchmark's ``synthetic_cnn`` (or ``--backbone synthetic_vit``),
trained once with the ``synthetic`` config by
:func:`ttame_jax.benchmark.backbones.get_or_train`, cached in ``--backbone-dir`` and frozen;
T-TAME trained with the benchmark's recipe (``configs/synthetic.py``: 2 epochs x 50 steps,
batch 32, OneCycle max lr 1e-2). A seed is the run's ``train.seed``: the attention's
initialisation, the data order and the generated training sample change; the backbone and
the test images do not. Each *variant* applies config overrides on top of that recipe
with the paper's fusion init (:data:`BASE`, :data:`VARIANTS`); every (variant, seed) is
one run.

Per run, on every single-object test image (``data.test_size`` = 400, about 300 of them)
whose top-1 class is its label, T-TAME's map of that class (min-max normalised, at image
size, as the evaluator scores it):

- **pointing** and **mass** inside the evidence (:mod:`ttame_jax.benchmark.localization`);
- the **ring contrast** of each image: mean map inside the evidence mask minus the mean map
  in the ring of pixels within :data:`RING_WIDTH` = 4 px of it (outside it). The objects
  have a radius of 6.5-9.5 px in the 64 px images and the CNN's maps are computed at
  32 x 32 (one map cell = 2 px; the ViT's at 8 x 8), so for the CNN the ring is 2 map
  cells wide, about half an object radius: the band where an inverted map peaks, and
  close enough to exclude most clutter;
- a class is **inverted** when the mean ring contrast of its images is below 0: its map is
  on average higher around the object than on it.

The same contrast is also measured for the *initial* attention (before any step; the
trainer initialises it with ``jax.random.key(train.seed)``), to see whether the init
already decides which classes invert (``init`` in each run's JSON).

Results: one ``result.json`` per run in ``OUT/<variant>/seed_<s>/`` (the T-TAME run dir
too; a finished run is reused, so an interrupted sweep resumes), and ``OUT/sweep.json``
with every run and the per-variant summary. The numbers are in docs/benchmark.md, "Seed
spread". Run (each run ~30-60 s on 2 idle cores)::

    python benchmarks/seed_sweep.py --out /tmp/sweep                      # baseline, 10 seeds
    python benchmarks/seed_sweep.py --out /tmp/sweep --variants baseline,psi_own --seeds 10
    python benchmarks/seed_sweep.py --list                                 # the variants
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import time

import numpy as np

from ttame_jax.fileio import atomic_write_json
from ttame_jax.machine import cpu_model

# The sweep's base: the benchmark's recipe with the paper's fusion init (the recipe adopted
# fusion_init="zeros" from this sweep; "baseline" is the recipe before that).
BASE = {"model.fusion_init": "torch"}
# Variant name -> (config overrides on BASE, the hypothesis it tests).
VARIANTS: dict[str, tuple[dict, str]] = {
    "baseline": ({}, "the benchmark's recipe with the paper's (torch) fusion init"),
    "lr_3e-3": ({"train.max_lr": 3e-3}, "lr: OneCycle max lr 3e-3 instead of 1e-2"),
    "lr_3e-2": ({"train.max_lr": 3e-2}, "lr: OneCycle max lr 3e-2 instead of 1e-2"),
    "warmup_0.05": ({"train.pct_start": 0.05}, "warm-up: 5 % of the steps instead of 30 %"),
    "warmup_0.6": ({"train.pct_start": 0.6}, "warm-up: 60 % of the steps instead of 30 %"),
    "steps_x3": ({"train.steps_per_epoch": 150}, "steps: 300 instead of 100"),
    "psi_own": (
        {"loss.psi_selection": "own"},
        "Ψ selection: each image's own class only (no other images' classes pushed down)",
    ),
    "psi_paper": (
        {"loss.variant": "paper"},
        "Ψ selection and loss as printed in the paper (own class + B-1 random others)",
    ),
    "no_bn": ({"model.batchnorm": False}, "no BatchNorm in the feature branches"),
    "taps_layer3": ({"model.taps": ("layer3",)}, "taps: layer3 only (8 x 8 maps)"),
    "taps_layer23": ({"model.taps": ("layer2", "layer3")}, "taps: layer2 + layer3 (16 x 16)"),
    "fusion_zeros": (
        {"model.fusion_init": "zeros"},
        "fusion-layer init: zero kernel and bias (no random sign per class at step 0); "
        "the benchmark's recipe now",
    ),
    "mask_normalised": (
        {"model.masking": "vit"},
        "masked-input statistics: mask after standardising (the masked-out pixels take the "
        "data mean, not black)",
    ),
}
RING_WIDTH = 4.0  # pixels of the 64 px image (see the module docstring)
BACKBONES = ("synthetic_cnn", "synthetic_vit")
# Faster runs, same result: no per-epoch validation, no TensorBoard, no progress bars.
QUIET = {
    "train.validate_every_epoch": False,
    "train.tensorboard": False,
    "train.progress_bar": False,
    "train.log_every": 1000,
    "benchmark.progress": False,
    "eval.progress": False,
}


def sweep_config(variant: str):
    """The benchmark config with BASE and the variant's overrides (a checked Config)."""
    from ttame_jax import configs

    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; use any of: {', '.join(VARIANTS)}")
    return configs.load("synthetic", {**QUIET, **BASE, **VARIANTS[variant][0]})


def test_images(config, backbone: str) -> dict[str, np.ndarray]:
    """Every single-object test image (image, label, evidence)."""
    from ttame_jax.backbones import get_spec
    from ttame_jax.benchmark import localization, samples
    from ttame_jax.evaluation.inputs import open_split

    source = open_split(config, "test", get_spec(backbone).input_size)
    batch = samples.pick(source, len(source), two_objects=False)
    assert localization.single_object(batch).all()
    return batch


def score(explainer, images: dict[str, np.ndarray], num_classes: int, batch: int = 100) -> dict:
    """Pointing, mass and per-class ring contrast of ``explainer`` on ``images``."""
    from ttame_jax.benchmark import localization as loc
    from ttame_jax.core.explainer import explain

    maps, target = [], []
    for i in range(0, len(images["image"]), batch):
        out = explain(explainer, images["image"][i : i + batch])
        maps.append(np.asarray(out.maps, np.float32))
        target.append(np.asarray(out.target))
    maps, target = np.concatenate(maps), np.concatenate(target)
    label, evidence = images["label"], images["evidence"]
    right = target == label
    contrast = loc.ring_contrast(maps[right], evidence[right], RING_WIDTH)
    per_class = [
        float(np.nanmean(contrast[label[right] == k])) if np.any(label[right] == k) else None
        for k in range(num_classes)
    ]
    return {
        "pointing": float(loc.pointing_game(maps[right], evidence[right]).mean()),
        "mass": float(loc.mass_inside(maps[right], evidence[right]).mean()),
        "class_contrast": per_class,
        "inverted": [k for k, c in enumerate(per_class) if c is not None and c < 0],
        "num_images": int(right.sum()),
        "misclassified": int((~right).sum()),
    }


def initial_scores(tcfg, images, num_classes) -> dict:
    """:func:`score` of the attention as the trainer initialises it (step 0)."""
    import jax
    import jax.numpy as jnp

    from ttame_jax.backbones import load_pretrained
    from ttame_jax.core.explainer import Explainer
    from ttame_jax.core.model import build

    model = build(tcfg.backbone.name, tcfg.model)
    bvars = load_pretrained(tcfg.backbone.name, tcfg.backbone.weights)
    size = model.spec.input_size
    attn = model.init(jax.random.key(tcfg.train.seed), bvars, jnp.zeros((1, size, size, 3)))
    return score(Explainer.from_model(model, bvars, attn), images, num_classes)


def run_one(variant, seed, backbone, weights, out, images, class_names) -> dict:
    """Trains T-TAME (variant, seed) and scores it; reuses a finished ``result.json``."""
    from ttame_jax.benchmark import pipeline
    from ttame_jax.core.explainer import load

    folder = os.path.join(out, variant, f"seed_{seed}")
    result_file = os.path.join(folder, "result.json")
    if os.path.exists(result_file):
        with open(result_file) as f:
            return json.load(f)
    tcfg = pipeline.ttame_config(sweep_config(variant), backbone, weights, seed=seed)
    run_dir = os.path.join(folder, "ttame")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's per-run log lines
        pipeline.train_ttame(tcfg, run_dir)
    train_s = time.perf_counter() - start
    k = len(class_names)
    result = {
        "backbone": backbone,
        "variant": variant,
        "seed": seed,
        **score(load(run_dir), images, k),
        "init": initial_scores(tcfg, images, k),
        "train_seconds": round(train_s, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(result_file, result, sort_keys=False)
    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)  # 1 per run
    return result


def cached_runs(out: str, exclude) -> dict[str, list[dict]]:
    """Finished runs of other variants already in ``out`` (so sweep.json has them all)."""
    found = {}
    for v in VARIANTS:
        folder = os.path.join(out, v)
        if v in exclude or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder), key=lambda n: int(n.split("_")[-1])):
            path = os.path.join(folder, name, "result.json")
            if os.path.exists(path):
                with open(path) as f:
                    found.setdefault(v, []).append(json.load(f))
    return found


def summarize(runs: list[dict]) -> dict:
    """Mean and min-max of pointing, mass and the inversion count; the worst seed."""
    p = np.array([r["pointing"] for r in runs])
    m = np.array([r["mass"] for r in runs])
    n = np.array([len(r["inverted"]) for r in runs])
    worst = min(runs, key=lambda r: (r["pointing"], r["seed"]))
    init_inv = [set(r["init"]["inverted"]) for r in runs]
    kept = [len(a & set(r["inverted"])) for a, r in zip(init_inv, runs, strict=True)]
    at_init = sum(len(a) for a in init_inv)
    classes = sum(len(r["class_contrast"]) for r in runs)
    return {
        "seeds": [r["seed"] for r in runs],
        "pointing": {
            "mean": p.mean(),
            "std": p.std(ddof=1) if len(p) > 1 else 0.0,
            "min": p.min(),
            "max": p.max(),
        },
        "mass": {"mean": m.mean(), "min": m.min(), "max": m.max()},
        "inverted": {"mean": n.mean(), "min": int(n.min()), "max": int(n.max())},
        "worst_seed": {
            "seed": worst["seed"],
            "pointing": worst["pointing"],
            "inverted": worst["inverted"],
        },
        # Of the classes inverted after training, how many were already inverted at init.
        "inverted_at_init_too": int(sum(kept)),
        "inverted_total": int(n.sum()),
        # P(inverted after training | inverted at init) and | not inverted at init.
        "p_inverted_given_init_inverted": sum(kept) / at_init if at_init else None,
        "p_inverted_given_init_not": (n.sum() - sum(kept)) / (classes - at_init)
        if classes > at_init
        else None,
    }


def _line(r: dict, names) -> str:
    inv = ", ".join(names[k] for k in r["inverted"]) or "-"
    return (
        f"{r['variant']:>16} seed {r['seed']:>2}: pointing {100 * r['pointing']:5.1f} %  "
        f"mass {100 * r['mass']:5.1f} %  inverted {len(r['inverted'])} [{inv}]  "
        f"(at init {len(r['init']['inverted'])}; {r['seconds']:.0f} s)"
    )


def _summary_line(name: str, s: dict) -> str:
    p, m, n, w = s["pointing"], s["mass"], s["inverted"], s["worst_seed"]
    return (
        f"{name:>16} ({len(s['seeds'])} seeds): pointing {100 * p['mean']:.1f} ± "
        f"{100 * p['std']:.1f} % ({100 * p['min']:.1f}-{100 * p['max']:.1f}), mass "
        f"{100 * m['mean']:.1f} % ({100 * m['min']:.1f}-{100 * m['max']:.1f}), inverted "
        f"{n['mean']:.1f} ({n['min']}-{n['max']}), worst seed {w['seed']} "
        f"({100 * w['pointing']:.1f} %, {len(w['inverted'])} inverted); inverted classes "
        f"already inverted at init: {s['inverted_at_init_too']}/{s['inverted_total']}"
        f"{_rates(s)}"
    )


def _rates(s: dict) -> str:
    a, b = s["p_inverted_given_init_inverted"], s["p_inverted_given_init_not"]
    if a is None or b is None:
        return ""
    return f"; P(inverted | inverted at init) {a:.2f}, P(inverted | not at init) {b:.2f}"


def markdown_table(summary: dict[str, dict]) -> str:
    """The docs/benchmark.md table: one row per variant."""
    rows = [
        "| variant | seeds | pointing % mean (min–max) | mass % mean (min–max) "
        "| inverted classes mean (min–max) | worst seed: pointing %, inverted |",
        "|---|---|---|---|---|---|",
    ]
    for v, s in summary.items():
        p, m, n, w = s["pointing"], s["mass"], s["inverted"], s["worst_seed"]
        rows.append(
            f"| `{v}` | {len(s['seeds'])} | {100 * p['mean']:.1f} ({100 * p['min']:.1f}–"
            f"{100 * p['max']:.1f}) | {100 * m['mean']:.1f} ({100 * m['min']:.1f}–"
            f"{100 * m['max']:.1f}) | {n['mean']:.1f} ({n['min']}–{n['max']}) | seed "
            f"{w['seed']}: {100 * w['pointing']:.1f}, {len(w['inverted'])} |"
        )
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/seed_sweep", help="results folder (resumable)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--variants", default="baseline", help="comma-separated, see --list")
    parser.add_argument(
        "--backbone", default=BACKBONES[0], choices=BACKBONES, help="one backbone per OUT"
    )
    parser.add_argument(
        "--backbone-dir",
        default=None,
        help="cached trained backbone (default OUT/backbone; the ViT's stem comes from, or is "
        "trained into, the sibling folder synthetic_cnn)",
    )
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument(
        "--summary-only", action="store_true", help="summarise the finished runs in OUT, train none"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name, (overrides, what) in VARIANTS.items():
            print(f"{name:>16}: {what} {overrides or ''}")
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        sweep_config(v)  # unknown names and bad overrides fail before any training

    import jax

    # Every run compiles the same programs: keep them on disk across runs and processes.
    jax.config.update("jax_compilation_cache_dir", os.path.join(args.out, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from ttame_jax.backbones import get_spec
    from ttame_jax.benchmark.backbones import get_or_train

    base = sweep_config("baseline")
    trained = get_or_train(base, args.backbone, args.backbone_dir or f"{args.out}/backbone")
    images = test_images(base, args.backbone)
    names = get_spec(args.backbone).class_names
    print(
        f"{args.backbone}: test accuracy {100 * trained['accuracy']:.1f} %; {len(images['label'])} "
        f"single-object test images; {cpu_model()}, "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs: dict[str, list[dict]] = {}
    for v in [] if args.summary_only else variants:
        for s in seeds:
            r = run_one(v, s, args.backbone, trained["weights"], args.out, images, names)
            runs.setdefault(v, []).append(r)
            print(_line(r, names), flush=True)
        print(_summary_line(v, summarize(runs[v])), flush=True)
    runs = {**runs, **cached_runs(args.out, exclude=runs)}  # other variants run earlier
    summary = {v: summarize(rs) for v, rs in runs.items()}
    print("\nSummary (every run in OUT):")
    for v, s in summary.items():
        print(_summary_line(v, s))
    print("\n" + markdown_table(summary))
    report = {
        "class_names": list(names),
        "ring_width": RING_WIDTH,
        "variants": {v: {"overrides": VARIANTS[v][0], "what": VARIANTS[v][1]} for v in runs},
        "summary": summary,
        "runs": runs,
    }
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump(report, f, indent=1, default=float)
    print(f"\nwrote {os.path.join(args.out, 'sweep.json')}")


if __name__ == "__main__":
    main()
