"""``ttame evaluate`` (= ``python evaluate.py``): score a checkpoint and baselines.

    ttame evaluate --checkpoint=runs/vit --config.eval.methods=ttame,gradcam,rise \
        --config.eval.rise_masks=4000

writes ``report.md``, ``results.json`` and ``road_curves.png`` into a folder of ``--workdir``
(default ``<checkpoint>/eval``) named after the settings, ``<split>-<n>img-<hash>/``, lists
it in ``index.md`` / ``index.json`` there, and prints the report and where it went.
Evaluations with other settings get other folders (none replaces another); the same
command rewrites its own. Per-batch results are cached in ``--workdir/cache``, so
rerunning the same command after an interruption continues where it stopped. The config
is the checkpoint's own ``config.json`` unless ``--config`` names another (its data
section picks the images); ``--config.eval.*`` chooses what is scored
(:class:`ttame_jax.config.EvalConfig`; docs/evaluation.md explains every column).
"""

from __future__ import annotations

import argparse
import os

from ttame_jax.cli import config_args

HELP = "evaluate a checkpoint and baselines: AD/IC, ROAD, insertion/deletion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_args.add_config_argument(
        parser,
        None,
        "config whose data/eval sections are used (default: the checkpoint's config.json)",
    )
    parser.add_argument("--checkpoint", required=True, help="workdir of a training run")
    parser.add_argument("--workdir", default=None, help="report/cache folder (<checkpoint>/eval)")


def run(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    from absl import logging

    from ttame_jax import configs, rundir
    from ttame_jax.config import with_overrides

    train_dir = rundir.find(args.checkpoint)
    if args.config is None:
        config = with_overrides(rundir.read_config(train_dir), overrides)
    else:
        config = configs.load(args.config, overrides)
    logging.set_verbosity(logging.WARNING)
    from ttame_jax.evaluation import evaluate
    from ttame_jax.evaluation.report import INDEX_MARKDOWN, render_markdown

    results = evaluate(train_dir, config, workdir=args.workdir)
    meta = results["meta"]
    print(render_markdown(results))
    print(f"report written to {meta['report_dir']}")
    print(f"all reports of {meta['workdir']}: {os.path.join(meta['workdir'], INDEX_MARKDOWN)}")
    return 0
