"""The synthetic ground-truth benchmark, end to end (issue 6; ``configs/synthetic.py``).

For each backbone of ``config.benchmark.backbones``:

1. train it from scratch on the generated images (:mod:`ttame_jax.training.classifier`),
2. train T-TAME on it (:func:`ttame_jax.training.trainer.train_and_evaluate`),
3. evaluate T-TAME and the baselines on the same test images
   (:func:`ttame_jax.evaluation.evaluate`: AD/IC, ROAD, insertion/deletion, plus the
   pointing game and the map mass inside the evidence as extra per-batch metrics),
4. run the counterfactual check on two-object images and draw the figures,

then write ``report.md``, ``report.json`` and ``figures/``. Workdir layout::

    workdir/<backbone>/<backbone>.msgpack, .json   trained backbone, its test accuracy
    workdir/<backbone>/ttame/                        T-TAME run (checkpoints, metrics)
    workdir/<backbone>/eval/                         evaluator cache and report
    workdir/figures/, workdir/report.md, workdir/report.json

Every stage is reused when its output exists, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import ml_collections

from ttame_jax.benchmark import localization, report, samples

STAGES = 4
_KEYS = ("backbone", "model", "loss", "data", "train")


def _stage(config, text: str) -> None:
    if config.benchmark.progress:
        print(f"\n=== {text} ===", flush=True)


def ttame_config(config, backbone: str, weights: str) -> ml_collections.ConfigDict:
    """The T-TAME training config of ``backbone`` (the trainer's sections of ``config``).

    ``weights`` is stored as an absolute path, so the run's ``config.json`` finds the
    backbone whatever the working directory of a later ``load`` / ``evaluate.py``.
    """
    c = ml_collections.ConfigDict({k: config[k].to_dict() for k in _KEYS})
    c.backbone.name = backbone
    c.backbone.weights = os.path.abspath(weights)
    c.lock()
    return c


def train_backbone(config, backbone: str, folder: str) -> dict:
    """Stage 1: the trained backbone's facts (``<backbone>.json``), trained if missing.

    A backbone with ``classifier.<kind>_init_from`` (the hybrid ViT: ``"cnn"``)
    starts from that backbone, trained first (or reused) in ``folder``'s sibling.

    Raises:
      ValueError: ``folder`` holds a backbone trained with other settings.
    """
    from ttame_jax.backbones import load_pretrained
    from ttame_jax.training.classifier import train_classifier

    cc, kind = config.classifier, backbone.removeprefix("synthetic_")
    first = None
    if cc.get(f"{kind}_init_from"):
        name = f"synthetic_{cc[f'{kind}_init_from']}"
        first = train_backbone(config, name, os.path.join(os.path.dirname(folder), name))
    settings = {
        "data": config.data.to_dict(),
        "steps": cc[f"{kind}_steps"],
        "lr": cc[f"{kind}_lr"],
        "batch_size": cc.batch_size,
        "weight_decay": cc.weight_decay,
        "seed": config.train.seed,
        "init_from": first and {"weights": first["weights"], **first["settings"]},
    }
    weights = os.path.join(folder, f"{backbone}.msgpack")
    facts_file, settings_file = weights[: -len(".msgpack")] + ".json", f"{folder}/settings.json"
    if os.path.exists(weights) and os.path.exists(facts_file):
        with open(settings_file) as f:
            saved = json.load(f)
        if saved != json.loads(json.dumps(settings)):
            raise ValueError(
                f"{folder} holds a {backbone} trained with other settings ({saved}); "
                "use a new --workdir or delete that folder"
            )
        print(f"{backbone}: reusing the trained backbone in {folder}")
    else:
        os.makedirs(folder, exist_ok=True)
        with open(settings_file, "w") as f:
            json.dump(settings, f, indent=2)
        train_classifier(
            backbone,
            config.data,
            steps=settings["steps"],
            batch_size=cc.batch_size,
            lr=settings["lr"],
            weight_decay=cc.weight_decay,
            seed=config.train.seed,
            workdir=folder,
            progress=config.benchmark.progress,
            init_from=first and load_pretrained(first["backbone"], first["weights"]),
        )
    with open(facts_file) as f:
        facts = json.load(f)
    return {
        "backbone": backbone,
        "weights": weights,
        "accuracy": facts["test"]["accuracy"],
        "facts": facts,
        "settings": settings,
    }


def train_ttame(tcfg, folder: str) -> None:
    """Stage 2: trains T-TAME unless ``folder`` already holds its final checkpoint."""
    from ttame_jax.evaluation.inputs import checkpoint_steps
    from ttame_jax.training.trainer import train_and_evaluate

    total = tcfg.train.epochs * tcfg.train.steps_per_epoch
    done = os.path.isdir(os.path.join(folder, "checkpoints")) and total in checkpoint_steps(folder)
    if done and tcfg.train.steps_per_epoch > 0:
        print(f"T-TAME on {tcfg.backbone.name}: reusing the finished run in {folder}")
        return
    train_and_evaluate(tcfg, folder)


def evaluate_methods(config, tcfg, ttame_dir: str, eval_dir: str) -> dict:
    """Stage 3: AD/IC, ROAD, insertion/deletion and localisation of every method."""
    from ttame_jax.evaluation import evaluate

    bc = config.benchmark
    options = {"rise": {"n_masks": bc.rise_masks, "seed": 0}} if "rise" in bc.methods else {}
    return evaluate(
        tcfg,
        ttame_dir,
        eval_dir,
        methods=tuple(bc.methods),
        num_images=bc.num_images,
        batch_size=bc.batch_size,
        insertion_deletion=bc.insertion_deletion,
        insertion_deletion_steps=bc.insertion_deletion_steps,
        method_options=options,
        extra_metrics=localization.extra_metrics(),
        progress=bc.progress,
    )


def counterfactual_and_figures(config, tcfg, ttame_dir: str, figures_dir: str) -> dict:
    """Stage 4: counterfactual success rate per method, and the figures."""
    from ttame_jax.backbones import get_spec
    from ttame_jax.core.explainer import load
    from ttame_jax.evaluation.inputs import open_split
    from ttame_jax.evaluation.methods import build_methods

    bc, name = config.benchmark, tcfg.backbone.name
    explainer = load(ttame_dir)
    options = {"rise": {"n_masks": bc.rise_masks, "seed": 0}} if "rise" in bc.methods else {}
    methods = build_methods(list(bc.methods), explainer, options)
    source = open_split(tcfg, "test", get_spec(name).input_size)
    two = samples.pick(source, bc.num_counterfactual, two_objects=True)
    cf = samples.counterfactual_check(methods, two, bc.batch_size)
    single = samples.pick(source, bc.num_figures, two_objects=False)
    single_maps = samples.figure_maps(methods, explainer, single, bc.batch_size)
    shown = {k: v[: bc.num_figures] for k, v in two.items()}
    cf_shown = {m: {k: v[: bc.num_figures] for k, v in r.items()} for m, r in cf.items()}
    paths = samples.save_figures(
        figures_dir, name, source.class_names, single, single_maps, shown, cf_shown
    )
    rates = {m: float(r["success"].mean()) for m, r in cf.items()}
    return {"success_rate": rates, "num_images": len(two["image"]), "figures": paths}


def run_backbone(config, backbone: str, workdir: str, index: int) -> dict:
    """All four stages for one backbone; returns its part of ``report.json``."""
    folder = os.path.join(workdir, backbone)
    head = f"[{index + 1}/{len(config.benchmark.backbones)}] {backbone}"
    times = {}

    def timed(key, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        times[key] = round(time.perf_counter() - start, 1)
        return out

    _stage(config, f"{head} — stage 1/{STAGES}: train the backbone from scratch")
    trained = timed("backbone", train_backbone, config, backbone, folder)
    tcfg = ttame_config(config, backbone, trained["weights"])
    ttame_dir, eval_dir = os.path.join(folder, "ttame"), os.path.join(folder, "eval")
    _stage(config, f"{head} — stage 2/{STAGES}: train T-TAME")
    timed("ttame", train_ttame, tcfg, ttame_dir)
    _stage(config, f"{head} — stage 3/{STAGES}: evaluate {', '.join(config.benchmark.methods)}")
    results = timed("evaluation", evaluate_methods, config, tcfg, ttame_dir, eval_dir)
    _stage(config, f"{head} — stage 4/{STAGES}: counterfactual check and figures")
    figures_dir = os.path.join(workdir, "figures")
    cf = timed("counterfactual", counterfactual_and_figures, config, tcfg, ttame_dir, figures_dir)
    road_png = os.path.join(figures_dir, f"{backbone}_road_curves.png")
    shutil.copyfile(os.path.join(eval_dir, "road_curves.png"), road_png)
    cf["figures"].append(road_png)
    return {
        "test_accuracy": trained["accuracy"],
        "classifier": trained["facts"],
        "evaluation": results,
        "counterfactual": cf,
        "seconds": times,
    }


def run_benchmark(config, workdir: str) -> dict:
    """Runs the benchmark of ``config`` (``configs/synthetic.py``) into ``workdir``.

    Returns:
      the ``report.json`` dict (also written, with ``report.md``, into ``workdir``).
    """
    if "benchmark" not in config:
        raise ValueError(
            "not a benchmark config (no `benchmark` section): use configs/synthetic.py"
        )
    unknown = [m for m in config.benchmark.backbones if not m.startswith("synthetic_")]
    if unknown:
        raise ValueError(
            f"the benchmark trains synthetic backbones only, got {unknown}; "
            "use synthetic_cnn and/or synthetic_vit"
        )
    start = time.perf_counter()
    os.makedirs(workdir, exist_ok=True)
    per_backbone = {}
    for i, backbone in enumerate(config.benchmark.backbones):
        per_backbone[backbone] = run_backbone(config, backbone, workdir, i)
    result = report.build(config, per_backbone, seconds=time.perf_counter() - start)
    paths = report.write(workdir, result)
    if config.benchmark.progress:
        print(f"\nreport: {paths['md']}\n" + report.summary_lines(result))
    return result
