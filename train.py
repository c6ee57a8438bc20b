"""Trains T-TAME on a frozen backbone, or runs the synthetic benchmark (the default).

    python train.py --workdir=runs/benchmark      # the packaged `synthetic` config
    python train.py --config=vit --workdir=runs/vit \
        --config.data.root=/data/imagenet --config.train.batch_size=64

Same as ``ttame train`` (``ttame_jax/cli/train.py``): ``--config`` takes a packaged
config name or a .py file (``configs/vit.py:smoke``), and any field can be overridden
with ``--config.<section>.<field>=value``. Re-running with the same ``--workdir``
resumes from its latest checkpoint.
"""

import sys

from ttame_jax.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
