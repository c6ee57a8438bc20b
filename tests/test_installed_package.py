"""The package works when installed from a wheel, with no checkout around.

A wheel is built from this repository (``pip wheel``, non-editable) and installed into a
fresh folder; every command then runs from an empty directory with only that folder
added to the path (the venv supplies the dependencies). ``ttame train``, ``ttame
evaluate`` and ``ttame explain`` must find their configs and code inside the wheel.
"""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site, empty)``: the wheel's install folder and an empty working directory."""
    base = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"), ROOT]
    subprocess.run(build, check=True, capture_output=True, timeout=600, cwd=base)
    (wheel,) = glob.glob(str(base / "dist" / "ttame_jax-*.whl"))
    site = base / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), wheel], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    empty = base / "empty"
    empty.mkdir()
    return site, empty


def _ttame(installed, *args, timeout=900):
    site, empty = installed
    env = {**os.environ, "PYTHONPATH": str(site)}
    cmd = [str(site / "bin" / "ttame"), *args]  # the wheel's console script
    return subprocess.run(cmd, cwd=empty, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _check_commands(installed, config: str, *overrides):
    site, empty = installed
    where = _ttame(installed, "--help")
    assert where.returncode == 0 and "train" in where.stdout, where.stderr
    code = "import ttame_jax, ttame_jax.configs as c; print(ttame_jax.__file__, c.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=empty, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(site)})  # fmt: skip
    assert all(p.startswith(str(site)) for p in done.stdout.split()), done.stdout + done.stderr
    done = _ttame(installed, "train", f"--config={config}", "--workdir=w", *overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _ttame(installed, "evaluate", "--checkpoint=w", "--config.eval.methods=ttame")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| ttame |" in done.stdout and glob.glob(str(empty / "w" / "eval" / "*" / "report.md"))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 60, 3), np.uint8)).save(
        empty / "img.png"
    )
    done = _ttame(installed, "explain", "--checkpoint", "w", "img.png", "--out", "o")
    assert done.returncode == 0, done.stderr[-3000:]
    assert os.path.isfile(empty / "o" / "manifest.json")
    assert not os.path.exists(empty / "configs")  # nothing came from a checkout


def test_train_evaluate_explain_from_the_installed_wheel(installed):
    """The smoke recipe on the small synthetic backbone (fast enough for every run)."""
    _check_commands(installed, "resnet50:smoke", "--config.backbone.name=synthetic_cnn")


@pytest.mark.slow
def test_vit_smoke_from_the_installed_wheel(tmp_path_factory, installed):
    """The issue's exact commands: ``ttame train --config=vit:smoke --workdir=w`` etc."""
    site, empty = installed
    fresh = tmp_path_factory.mktemp("vit_empty")
    _check_commands((site, fresh), "vit:smoke")
