"""Evaluates a trained T-TAME checkpoint and baselines; writes the paper-style report.

    python evaluate.py --checkpoint=runs/vit \
        --config.eval.methods=ttame,gradcam,gradcampp,scorecam,ablationcam,rise

Same as ``ttame evaluate`` (``ttame_jax/cli/evaluate.py``): the checkpoint's own config
is used unless ``--config`` names another; ``--config.eval.*`` chooses what is scored,
``--config.data.*`` the images. Rerunning after an interruption continues from the cache.
"""

import sys

from ttame_jax.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
