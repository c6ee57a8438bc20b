"""Preemption: SIGTERM mid-epoch -> forced checkpoint at the step boundary, exit 75, and a
rerun that ends exactly where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import ttame_jax.data
from ttame_jax import configs, rundir
from ttame_jax.training.device_loop import PREFETCH
from ttame_jax.training.trainer import EXIT_PREEMPTED, Preempted, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPE = 16  # steps per epoch: a SIGTERM after the first logged step lands mid-epoch
OVERRIDES = {
    "backbone.name": "synthetic_cnn",
    "data.train_size": 2 * SPE,
    "data.val_size": 4,
    "train.epochs": 2,
    "train.steps_per_epoch": SPE,
    "train.batch_size": 2,
    "train.val_steps": 0,
    "train.val_adic_percent": 0.0,
    "train.log_every": 1,
    "train.checkpoint_every": 1000,  # the only mid-epoch checkpoint is the forced one
    "train.progress_bar": False,
    "train.tensorboard": False,
    "train.max_lr": 0.05,
}


def _config(**train):
    return configs.load(
        "resnet50:smoke", {**OVERRIDES, **{f"train.{k}": v for k, v in train.items()}}
    )


def _train_cmd(workdir):
    args = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
    return [sys.executable, "train.py", "--config=resnet50:smoke", f"--workdir={workdir}", *args]


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_DEFAULT_MATMUL_PRECISION="highest")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _train_steps(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    steps = []
    for line in open(path):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        if record.get("split") == "train":
            steps.append(record["step"])
    return steps


def _attention(workdir):
    tree = rundir.restore_attention(workdir)
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module", autouse=True)
def _reuse_backbone_init(cached_load_pretrained):
    """The in-process runs load the same random synthetic_cnn (see conftest)."""


@pytest.mark.slow  # ~45 s of subprocess training; the in-process test below runs by default
def test_sigterm_mid_epoch_saves_exits_75_and_rerun_equals_uninterrupted(tmp_path):
    workdir = str(tmp_path / "preempted")
    proc = subprocess.Popen(
        _train_cmd(workdir),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not _train_steps(workdir):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no train step logged in 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_PREEMPTED, err
    assert "preempted: saved a checkpoint at step" in err
    stopped = rundir.steps(workdir)[-1]
    assert 0 < stopped < SPE  # mid-epoch 0: a forced save (checkpoint_every is 1000)
    assert _train_steps(workdir)[-1] == stopped  # logs flushed up to the saved step
    with rundir.lock(workdir):  # released
        pass

    rerun = subprocess.run(
        _train_cmd(workdir), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr
    assert _train_steps(workdir) == list(range(1, 2 * SPE + 1))  # each step once

    full = str(tmp_path / "full")
    train_and_evaluate(_config(), full)
    assert rundir.steps(full)[-1] == rundir.steps(workdir)[-1] == 2 * SPE
    for got, want in zip(_attention(workdir), _attention(full), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


class _SigtermAt:
    """Wraps a Source: sends this process SIGTERM while yielding batch ``at`` of epoch 0."""

    def __init__(self, source, at):
        self._source, self._at = source, at

    def __len__(self):
        return len(self._source)

    def __getattr__(self, name):
        return getattr(self._source, name)

    def batches(self, batch_size, *, epoch=0, **kw):
        for i, batch in enumerate(self._source.batches(batch_size, epoch=epoch, **kw)):
            if epoch == 0 and i == self._at:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch


def test_in_process_preempted_exception_and_handler_restored(tmp_path, monkeypatch):
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda *a: calls.append(a))
    try:
        real = ttame_jax.data.build_source
        # The trainer reads PREFETCH batches ahead: batch 3 + PREFETCH is read (and the
        # signal sent) just before step 5 (batch index 4) is dispatched.
        at = 3 + PREFETCH
        monkeypatch.setattr(
            ttame_jax.data,
            "build_source",
            lambda *a, **k: _SigtermAt(real(*a, **k), at) if a[1] == "train" else real(*a, **k),
        )
        workdir = str(tmp_path)
        with pytest.raises(Preempted, match="at step 5") as info:
            train_and_evaluate(_config(epochs=1, steps_per_epoch=8), workdir)
        assert info.value.step == 5 and info.value.workdir == workdir
        # Step 5, saved though mid-epoch and checkpoint_every is 1000 (Orbax
        # saves the first step of a run anyway).
        assert rundir.steps(workdir)[-1] == 5
        assert calls == []  # the training handler caught it
        os.kill(os.getpid(), signal.SIGTERM)  # and the previous handler is back
        assert len(calls) == 1
    finally:
        signal.signal(signal.SIGTERM, previous)
