"""Trains T-TAME on a frozen backbone, or runs the synthetic benchmark (the default).

    python train.py --workdir=runs/benchmark      # configs/synthetic.py: docs/benchmark.md
    python train.py --config=configs/vit.py --workdir=runs/vit \
        --config.data.root=/data/imagenet --config.train.batch_size=64

Any config field can be overridden with ``--config.<section>.<field>=value``
(the configs are locked: a misspelt field is an error). Re-running with the
same ``--workdir`` resumes from its latest checkpoint. ``--multihost`` calls
``jax.distributed.initialize()`` first (one process per host; also automatic
when ``JAX_COORDINATOR_ADDRESS`` is set). The logic lives in
``ttame_jax.training.trainer.train_and_evaluate``; a config with a ``benchmark``
section (``configs/synthetic.py``) goes to ``ttame_jax.benchmark.run_benchmark``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    "configs/synthetic.py",
    "Config file, optionally with a variant: configs/<name>.py[:smoke] (default: the "
    "synthetic benchmark).",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumed if it exists).")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", None, "Call jax.distributed.initialize() (default: if JAX_COORDINATOR_ADDRESS)."
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from ttame_jax.training import sharding, trainer

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO; -v 0 shows it
    sharding.initialize_multihost(_MULTIHOST.value)
    if "benchmark" in _CONFIG.value:
        from ttame_jax.benchmark import run_benchmark

        run_benchmark(_CONFIG.value, _WORKDIR.value)
    else:
        trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
