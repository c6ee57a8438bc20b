"""The training, evaluation and explain paths import and log without the optional packages
that an accelerator image may lack (ml_collections, tqdm, matplotlib, pytorch_grad_cam).

A subprocess whose imports of those packages fail (``sys.modules[name] = None``) imports
the modules, writes a training log line through ``MetricsLogger`` (no tqdm: printed), and
asks for a colour map (no matplotlib: an ImportError that says what to install).
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ("ml_collections", "tqdm", "matplotlib", "pytorch_grad_cam")
MODULES = (
    "ttame_jax.training.trainer",
    "ttame_jax.training.classifier",
    "ttame_jax.evaluation.evaluator",
    "ttame_jax.core.explainer",
    "ttame_jax.cli.explain",
    "ttame_jax.visualize",
)

SCRIPT = """
import importlib, json, sys
for name in {blocked!r}:
    sys.modules[name] = None  # "import name" raises ImportError, as if not installed
for module in {modules!r}:
    importlib.import_module(module)
from ttame_jax.training.metrics_log import MetricsLogger
logger = MetricsLogger({workdir!r}, total_steps=2, batch_size=4)
logger.step(1)
logger.write({{"split": "train", "step": 1, "loss": 0.5}})
logger.close()
import numpy as np
from ttame_jax import visualize
try:
    visualize.colorize(np.zeros((2, 2), np.float32))
except ImportError as err:
    print("COLORIZE " + str(err))
loaded = [m for m in {blocked!r} if sys.modules.get(m) is not None]
print("LOADED " + json.dumps(loaded))
"""


def test_training_evaluation_and_explain_import_without_optional_packages(tmp_path):
    code = SCRIPT.format(blocked=BLOCKED, modules=MODULES, workdir=str(tmp_path))
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train step 1 | loss 0.5" in proc.stdout  # the logger printed without tqdm
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {
        "split": "train",
        "step": 1,
        "loss": 0.5,
    }
    assert "COLORIZE" in proc.stdout and "pip install matplotlib" in proc.stdout
    assert json.loads(proc.stdout.rsplit("LOADED ", 1)[1]) == []
