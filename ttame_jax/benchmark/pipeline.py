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
    workdir/xla_cache/                               JAX's persistent compilation cache

Every stage is reused when its output exists, so an interrupted run resumes. Compiled
programs are kept in ``workdir/xla_cache`` (:func:`compilation_cache`): the T-TAME steps
of every seed after the first, and every program of a resumed run, load from there
instead of compiling again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time

from ttame_jax import rundir
from ttame_jax.benchmark import localization, report, samples
from ttame_jax.benchmark.backbones import get_or_train
from ttame_jax.config import Config, from_dict

STAGES = 4


@contextlib.contextmanager
def compilation_cache(workdir: str):
    """JAX's persistent compilation cache in ``workdir/xla_cache`` while the benchmark runs.

    The T-TAME steps of each seed are new jitted functions (``train.seed`` is part of
    them), but with ``loss.variant="reference"`` their programs are identical, so seeds
    after the first load them (measured: 12 of 14 CPU-s of compilation per seed saved).
    Results do not change (same programs). A cache directory that the user configured
    (``JAX_COMPILATION_CACHE_DIR`` or ``jax_compilation_cache_dir``) is used as it is.
    The cache runs code it finds: it lives in the user's own workdir.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    if jax.config.jax_compilation_cache_dir:
        yield
        return
    cc.set_cache_dir(os.path.join(os.path.abspath(workdir), "xla_cache"))
    cc.reset_cache()  # JAX opens its cache once per process: open this one
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        cc.reset_cache()


def _stage(config, text: str) -> None:
    if config.benchmark.progress:
        print(f"\n=== {text} ===", flush=True)


def ttame_config(config: Config, backbone: str, weights: str, seed: int | None = None) -> Config:
    """The T-TAME run config of ``backbone``: ``config`` with that backbone (and T-TAME
    ``seed`` as ``train.seed``, if given).

    ``weights`` is stored as an absolute path, so the run's ``config.json`` finds the
    backbone whatever the working directory of a later ``load`` / ``evaluate.py``.
    """
    bb = dataclasses.replace(config.backbone, name=backbone, weights=os.path.abspath(weights))
    train = config.train if seed is None else dataclasses.replace(config.train, seed=seed)
    return config.replace(backbone=bb, train=train)


def train_ttame(tcfg: Config, folder: str) -> None:
    """Stage 2: trains T-TAME unless ``folder`` already holds its final checkpoint."""
    from ttame_jax.training.trainer import train_and_evaluate

    total = tcfg.train.epochs * tcfg.train.steps_per_epoch
    done = total in rundir.steps(folder)
    if done and tcfg.train.steps_per_epoch > 0:
        print(f"T-TAME on {tcfg.backbone.name}: reusing the finished run in {folder}")
        return
    train_and_evaluate(tcfg, folder)


def evaluate_methods(tcfg: Config, ttame_dir: str, eval_dir: str, methods=None) -> dict:
    """Stage 3: AD/IC, ROAD, insertion/deletion and localisation of ``methods`` (default
    ``config.eval.methods``)."""
    from ttame_jax.evaluation import evaluate

    return evaluate(
        ttame_dir,
        tcfg,
        workdir=eval_dir,
        methods=methods,
        extra_metrics=localization.extra_metrics(),
    )


def counterfactual_and_figures(
    tcfg: Config, ttame_dir: str, figures_dir: str | None, methods=None
) -> dict:
    """Stage 4: counterfactual success rate per method, and the figures (unless
    ``figures_dir`` is None)."""
    from ttame_jax.backbones import get_spec
    from ttame_jax.core.explainer import load
    from ttame_jax.evaluation.inputs import open_split
    from ttame_jax.evaluation.methods import build_methods, method_options

    bc, ec, name = tcfg.benchmark, tcfg.eval, tcfg.backbone.name
    names = list(ec.methods if methods is None else methods)
    explainer = load(ttame_dir)
    methods = build_methods(names, explainer, method_options(ec, names))
    source = open_split(tcfg, "test", get_spec(name).input_size)
    two = samples.pick(source, bc.num_counterfactual, two_objects=True)
    cf = samples.counterfactual_check(methods, two, ec.batch_size)
    rates = {m: float(r["success"].mean()) for m, r in cf.items()}
    out = {"success_rate": rates, "num_images": len(two["image"]), "figures": []}
    if figures_dir is not None:
        single = samples.pick(source, bc.num_figures, two_objects=False)
        single_maps = samples.figure_maps(methods, explainer, single, ec.batch_size)
        shown = {k: v[: bc.num_figures] for k, v in two.items()}
        cf_shown = {m: {k: v[: bc.num_figures] for k, v in r.items()} for m, r in cf.items()}
        out["figures"] = samples.save_figures(
            figures_dir, name, source.class_names, single, single_maps, shown, cf_shown
        )
    return out


def _median_seed(pointing: dict[int, float]) -> int:
    """The seed whose T-TAME pointing game is the median (the lower one for an even count)."""
    ranked = sorted(pointing, key=lambda s: (pointing[s], s))
    return ranked[(len(ranked) - 1) // 2]


def run_backbone(config: Config, backbone: str, workdir: str, index: int) -> dict:
    """All four stages for one backbone; returns its part of ``report.json``.

    T-TAME is trained and scored once per seed of ``benchmark.ttame_seeds``; the baselines
    (which do not depend on it) and the figures use the median seed's run.
    """
    folder = os.path.join(workdir, backbone)
    head = f"[{index + 1}/{len(config.benchmark.backbones)}] {backbone}"
    seeds = list(config.benchmark.ttame_seeds)
    times, cpu_times = {}, {}

    def timed(key, fn, *args, **kw):
        start, cpu = time.perf_counter(), report.cpu_seconds()
        out = fn(*args, **kw)
        times[key] = round(times.get(key, 0.0) + time.perf_counter() - start, 1)
        cpu_times[key] = round(cpu_times.get(key, 0.0) + report.cpu_seconds() - cpu, 1)
        return out

    _stage(config, f"{head} — stage 1/{STAGES}: train the backbone from scratch")
    trained = timed("backbone", get_or_train, config, backbone, folder)
    tcfg = {s: ttame_config(config, backbone, trained["weights"], seed=s) for s in seeds}
    dirs = {s: os.path.join(folder, "ttame", f"seed_{s}") for s in seeds}
    eval_dir = os.path.join(folder, "eval")
    _stage(config, f"{head} — stage 2/{STAGES}: train T-TAME (seeds {seeds})")
    for s in seeds:
        timed("ttame", train_ttame, tcfg[s], dirs[s])
    _stage(config, f"{head} — stage 3/{STAGES}: evaluate {', '.join(config.eval.methods)}")
    per_seed = {}
    if "ttame" in config.eval.methods:
        for s in seeds:
            evaluated = timed("evaluation", evaluate_methods, tcfg[s], dirs[s], eval_dir, ["ttame"])
            per_seed[s] = {"evaluation": evaluated["methods"]["ttame"]}
    pointing = {
        s: r["evaluation"]["extra"].get("pointing_game") or 0.0 for s, r in per_seed.items()
    }
    median = _median_seed(pointing) if per_seed else seeds[0]
    results = timed("evaluation", evaluate_methods, tcfg[median], dirs[median], eval_dir)
    _stage(config, f"{head} — stage 4/{STAGES}: counterfactual check and figures")
    figures_dir = os.path.join(workdir, "figures")
    cf = timed(
        "counterfactual", counterfactual_and_figures, tcfg[median], dirs[median], figures_dir
    )
    for s in per_seed:
        rate = cf["success_rate"]["ttame"]
        if s != median:
            ttame_cf = timed(
                "counterfactual", counterfactual_and_figures, tcfg[s], dirs[s], None, ["ttame"]
            )
            rate = ttame_cf["success_rate"]["ttame"]
        per_seed[s]["counterfactual"] = rate
    written = results["meta"]["files"].get("road_curves.png")  # absent without matplotlib
    if written is not None:
        road_png = os.path.join(figures_dir, f"{backbone}_road_curves.png")
        shutil.copyfile(written, road_png)
        cf["figures"].append(road_png)
    return {
        "test_accuracy": trained["accuracy"],
        "classifier": trained["facts"],
        "evaluation": results,
        "counterfactual": cf,
        "ttame_seeds": {"median": median, "per_seed": per_seed},
        "seconds": times,
        "cpu_seconds": cpu_times,
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
    with compilation_cache(workdir):
        for i, backbone in enumerate(config.benchmark.backbones):
            per_backbone[backbone] = run_backbone(config, backbone, workdir, i)
    result = report.build(config, per_backbone, seconds=time.perf_counter() - start)
    paths = report.write(workdir, result)
    if config.benchmark.progress:
        print(f"\nreport: {paths['md']}\n" + report.summary_lines(result))
    return result
