"""``ttame train`` (= ``python train.py``): train T-TAME, or run the synthetic benchmark.

    ttame train --workdir=runs/benchmark                 # the default config: synthetic
    ttame train --config=vit --workdir=runs/vit --config.data.root=/data/imagenet \
        --config.train.batch_size=64

Re-running with the same ``--workdir`` resumes from its newest checkpoint that restores,
if the settings that change the result are the same (else it refuses; continue under the
new settings with ``--allow-config-change``; see docs/safety.md). A config whose
``benchmark.backbones`` is not empty (``synthetic``) runs
:func:`ttame_jax.benchmark.run_benchmark`; any other trains T-TAME with
:func:`ttame_jax.training.trainer.train_and_evaluate`.

On SIGTERM (a preempted cloud job) or a multi-host preemption notice, training saves a
checkpoint at the next step boundary and ``ttame train`` exits with status 75
(``EXIT_PREEMPTED``, EX_TEMPFAIL): rerunning the same command continues exactly there.
"""

from __future__ import annotations

import argparse
import sys

from ttame_jax.cli import config_args

HELP = "train T-TAME (or run the synthetic benchmark: the default config)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ttame_jax import configs

    config_args.add_config_argument(
        parser,
        configs.DEFAULT,
        f"packaged config ({', '.join(configs.NAMES)}) or a .py file, with an optional "
        f":variant, e.g. vit:smoke (default: {configs.DEFAULT}, the benchmark)",
    )
    parser.add_argument("--workdir", required=True, help="output folder (resumed if it exists)")
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="continue a --workdir run whose loss/data/train settings differ (the new config "
        "goes to config.<n>.json; config.json and the resumed checkpoint are kept)",
    )
    parser.add_argument(
        "--multihost",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="call jax.distributed.initialize() first (default: if JAX_COORDINATOR_ADDRESS)",
    )


def run(args: argparse.Namespace, overrides: dict[str, str]) -> int:
    from absl import logging

    from ttame_jax import configs

    config = configs.load(args.config, overrides)  # every config error before any JAX work
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    from ttame_jax.training import sharding

    sharding.initialize_multihost(args.multihost)
    if config.is_benchmark:
        from ttame_jax.benchmark import run_benchmark

        run_benchmark(config, args.workdir)
    else:
        from ttame_jax.training.trainer import EXIT_PREEMPTED, Preempted, train_and_evaluate

        try:
            train_and_evaluate(
                config,
                args.workdir,
                allow_config_change=getattr(args, "allow_config_change", False),
            )
        except Preempted as e:
            print(f"ttame train: {e}", file=sys.stderr)
            return EXIT_PREEMPTED
    return 0
