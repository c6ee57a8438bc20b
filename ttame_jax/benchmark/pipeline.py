"""The synthetic ground-truth benchmark, end to end (issue 6; ``configs/synthetic.py``).

For each backbone of ``config.benchmark.backbones``:

1. train it from scratch on the generated images (:mod:`ttame_jax.benchmark.backbones`),
2. train T-TAME on it (:func:`ttame_jax.training.trainer.train_and_evaluate`),
3. evaluate T-TAME and the baselines on the same test images
   (:func:`ttame_jax.evaluation.evaluate`: AD/IC, ROAD, insertion/deletion, plus the
   pointing game and the map mass inside the evidence as extra per-batch metrics),
4. run the counterfactual check on two-object images and draw the figures,

then write ``report.md``, ``report.json`` and ``figures/``. Workdir layout::

    workdir/<backbone>/<backbone>.msgpack, .json   trained backbone, its test accuracy
    workdir/<backbone>/settings.json                 the settings it was trained with
    workdir/<backbone>/ttame/                        T-TAME run (checkpoints, metrics)
    workdir/<backbone>/eval/                         evaluator cache and report
    workdir/figures/, workdir/report.md, workdir/report.json

Every stage is reused when its output exists, so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

from ttame_jax import rundir
from ttame_jax.benchmark import localization, report, samples
from ttame_jax.benchmark.backbones import get_or_train
from ttame_jax.config import Config, from_dict

STAGES = 4


def _stage(config, text: str) -> None:
    if config.benchmark.progress:
        print(f"\n=== {text} ===", flush=True)


def ttame_config(config: Config, backbone: str, weights: str) -> Config:
    """The T-TAME run config of ``backbone``: ``config`` with that backbone.

    ``weights`` is stored as an absolute path, so the run's ``config.json`` finds the
    backbone whatever the working directory of a later ``load`` / ``evaluate.py``.
    """
    bb = dataclasses.replace(config.backbone, name=backbone, weights=os.path.abspath(weights))
    return config.replace(backbone=bb)


def train_ttame(tcfg: Config, folder: str) -> None:
    """Stage 2: trains T-TAME unless ``folder`` already holds its final checkpoint."""
    from ttame_jax.training.trainer import train_and_evaluate

    total = tcfg.train.epochs * tcfg.train.steps_per_epoch
    done = total in rundir.steps(folder)
    if done and tcfg.train.steps_per_epoch > 0:
        print(f"T-TAME on {tcfg.backbone.name}: reusing the finished run in {folder}")
        return
    train_and_evaluate(tcfg, folder)


def evaluate_methods(tcfg: Config, ttame_dir: str, eval_dir: str) -> dict:
    """Stage 3: AD/IC, ROAD, insertion/deletion and localisation of every method
    (``config.eval``)."""
    from ttame_jax.evaluation import evaluate

    return evaluate(ttame_dir, tcfg, workdir=eval_dir, extra_metrics=localization.extra_metrics())


def counterfactual_and_figures(tcfg: Config, ttame_dir: str, figures_dir: str) -> dict:
    """Stage 4: counterfactual success rate per method, and the figures."""
    from ttame_jax.backbones import get_spec
    from ttame_jax.core.explainer import load
    from ttame_jax.evaluation.inputs import open_split
    from ttame_jax.evaluation.methods import build_methods, method_options

    bc, ec, name = tcfg.benchmark, tcfg.eval, tcfg.backbone.name
    explainer = load(ttame_dir)
    methods = build_methods(list(ec.methods), explainer, method_options(ec, ec.methods))
    source = open_split(tcfg, "test", get_spec(name).input_size)
    two = samples.pick(source, bc.num_counterfactual, two_objects=True)
    cf = samples.counterfactual_check(methods, two, ec.batch_size)
    single = samples.pick(source, bc.num_figures, two_objects=False)
    single_maps = samples.figure_maps(methods, explainer, single, ec.batch_size)
    shown = {k: v[: bc.num_figures] for k, v in two.items()}
    cf_shown = {m: {k: v[: bc.num_figures] for k, v in r.items()} for m, r in cf.items()}
    paths = samples.save_figures(
        figures_dir, name, source.class_names, single, single_maps, shown, cf_shown
    )
    rates = {m: float(r["success"].mean()) for m, r in cf.items()}
    return {"success_rate": rates, "num_images": len(two["image"]), "figures": paths}


def run_backbone(config: Config, backbone: str, workdir: str, index: int) -> dict:
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
    trained = timed("backbone", get_or_train, config, backbone, folder)
    tcfg = ttame_config(config, backbone, trained["weights"])
    ttame_dir, eval_dir = os.path.join(folder, "ttame"), os.path.join(folder, "eval")
    _stage(config, f"{head} — stage 2/{STAGES}: train T-TAME")
    timed("ttame", train_ttame, tcfg, ttame_dir)
    _stage(config, f"{head} — stage 3/{STAGES}: evaluate {', '.join(config.eval.methods)}")
    results = timed("evaluation", evaluate_methods, tcfg, ttame_dir, eval_dir)
    _stage(config, f"{head} — stage 4/{STAGES}: counterfactual check and figures")
    figures_dir = os.path.join(workdir, "figures")
    cf = timed("counterfactual", counterfactual_and_figures, tcfg, ttame_dir, figures_dir)
    road_png = os.path.join(figures_dir, f"{backbone}_road_curves.png")
    shutil.copyfile(results["meta"]["files"]["road_curves.png"], road_png)  # evaluate wrote it
    cf["figures"].append(road_png)
    return {
        "test_accuracy": trained["accuracy"],
        "classifier": trained["facts"],
        "evaluation": results,
        "counterfactual": cf,
        "seconds": times,
    }


def run_benchmark(config: Config, workdir: str) -> dict:
    """Runs the benchmark of ``config`` (the packaged ``synthetic`` config) into ``workdir``.

    Returns:
      the ``report.json`` dict (also written, with ``report.md``, into ``workdir``).
    """
    from ttame_jax.evaluation.methods import check_names

    config = from_dict(config)
    if not config.is_benchmark:
        raise ValueError(
            "not a benchmark config (benchmark.backbones is empty): use --config=synthetic"
        )
    check_names(list(config.eval.methods))  # before any training, not at stage 3
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
