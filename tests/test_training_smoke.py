"""The ``:smoke`` configs through ``train.py``: train, checkpoint, resume, load + explain.

Slow (ImageNet-size backbones with random weights at 224 px, about a minute
or two each on 2 CPU cores): run with ``pytest -m slow tests/test_training_smoke.py``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ttame_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(config: str, workdir, *overrides):
    cmd = [sys.executable, "train.py", f"--config={config}", f"--workdir={workdir}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("config", ["resnet50", "vgg16", "vit"])
def test_smoke_config_trains_resumes_and_explains(config, tmp_path):
    workdir = tmp_path / "run"
    first = _train(f"configs/{config}.py:smoke", workdir, "--config.train.halt_after_steps=3")
    assert "fresh start" in first
    second = _train(f"configs/{config}.py:smoke", workdir)
    assert "resuming from step 3" in second
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in records if r["split"] == "val"] == [2, 4]
    assert "4" in os.listdir(workdir / "checkpoints")

    params = ttame_jax.load(str(workdir))
    size = params.spec.input_size
    x = np.random.default_rng(0).uniform(size=(2, size, size, 3)).astype(np.float32)
    out = ttame_jax.explain(params, x)
    assert out.maps.shape == (2, size, size)
    assert 0.0 <= float(out.maps.min()) and float(out.maps.max()) <= 1.0
