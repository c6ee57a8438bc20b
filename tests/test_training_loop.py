"""train_and_evaluate end to end on the synthetic backbone: logs, checkpoints, resume, NaN, load."""

import json
import os

import jax
import numpy as np
import pytest

import ttame_jax
import ttame_jax.data
from ttame_jax import configs, rundir
from ttame_jax.training.schedule import OneCycle
from ttame_jax.training.trainer import train_and_evaluate


def tiny_config(**train):
    """2 epochs x 2 steps of batch 2 on 64-px generated images, random synthetic_cnn."""
    overrides = {
        "backbone.name": "synthetic_cnn",
        "data.train_size": 6,  # 3 batches per pass; steps_per_epoch=2 uses the first 2
        "data.val_size": 4,
        "train.val_steps": 0,
        "train.checkpoint_every": 1,
        "train.keep_checkpoints": 2,
        "train.progress_bar": False,
        "train.max_lr": 0.05,  # large enough that every step visibly changes the parameters
    }
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return configs.load("resnet50:smoke", overrides)


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves((state.params, state.batch_stats))]


@pytest.fixture(scope="module", autouse=True)
def _reuse_backbone_init(cached_load_pretrained):
    """Every run here loads the same random synthetic_cnn (see conftest)."""


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("full"))
    return workdir, train_and_evaluate(tiny_config(), workdir)


def test_run_writes_logs_config_and_checkpoints(full_run):
    workdir, out = full_run
    assert int(out["state"].step) == 4
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert [(r["step"], r["epoch"]) for r in val] == [(2, 0), (4, 1)]
    for key in ("loss", "ce", "area", "tv", "lr", "momentum", "grad_norm", "images_per_s"):
        assert all(np.isfinite(r[key]) for r in train), key
    # Logged lr / momentum are the OneCycle values of steps 0..3 (4 steps in all).
    sched = OneCycle(total_steps=4, max_lr=0.05)
    np.testing.assert_allclose([r["lr"] for r in train], sched.learning_rate(np.arange(4)), 1e-6)
    np.testing.assert_allclose([r["momentum"] for r in train], sched.momentum(np.arange(4)), 1e-6)
    assert all(r["loss"] > 0 and np.isfinite(r["ce"]) for r in val)
    assert all(0.0 <= r["AD"] <= 100.0 and 0.0 <= r["IC"] <= 100.0 for r in val)  # at 15 %
    config = rundir.read_config(workdir)
    assert config.backbone.name == "synthetic_cnn" and config.model.taps == ()
    assert config.train.max_lr == 0.05
    # keep_checkpoints=2: the two latest steps, plus the epoch ends (2 and 4).
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "3", "4"]


def test_restore_attention_and_load_explain(full_run):
    workdir, out = full_run
    config, attn = rundir.read_config(workdir), rundir.restore_attention(workdir)
    assert config.backbone.name == "synthetic_cnn"
    want = {"params": out["state"].params, "batch_stats": out["state"].batch_stats}
    assert jax.tree.structure(attn) == jax.tree.structure(want)
    for got, exp in zip(jax.tree.leaves(attn), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(got, exp)
    params = ttame_jax.load(workdir)
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    result = ttame_jax.explain(params, x)
    assert result.maps.shape == (2, 64, 64)
    assert float(result.maps.min()) >= 0.0 and float(result.maps.max()) <= 1.0
    with pytest.raises(ValueError, match="no checkpoint for step 1"):
        rundir.restore_attention(workdir, step=1)


def test_interrupted_and_resumed_equals_uninterrupted(full_run, tmp_path):
    _, full = full_run
    workdir = str(tmp_path)
    halted = train_and_evaluate(tiny_config(halt_after_steps=3), workdir)  # stops mid-epoch 1
    assert int(halted["state"].step) == 3
    assert rundir.make_manager(workdir).latest_step() == 3
    resumed = train_and_evaluate(tiny_config(), workdir)
    assert int(resumed["state"].step) == 4
    for got, want in zip(_leaves(resumed["state"]), _leaves(full["state"]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # And the parameters did move during the resumed step (the check is not vacuous).
    before, after = _leaves(halted["state"]), _leaves(full["state"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert steps == [1, 2, 2, 3, 4, 4]  # train 1, 2, val 2, train 3 | resumed: train 4, val 4


class _NaNAfter:
    """Wraps a Source: images of epoch >= 1 are NaN (a loss blow-up at step 3)."""

    def __init__(self, source):
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getattr__(self, name):
        return getattr(self._source, name)

    def batches(self, batch_size, *, epoch=0, **kw):
        for batch in self._source.batches(batch_size, epoch=epoch, **kw):
            if epoch >= 1:
                batch = {**batch, "image": np.full_like(batch["image"], np.nan)}
            yield batch


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = ttame_jax.data.build_source
    monkeypatch.setattr(ttame_jax.data, "build_source", lambda *a, **k: _NaNAfter(real(*a, **k)))
    workdir = str(tmp_path)
    with pytest.raises(FloatingPointError, match="non-finite loss or gradient at step 3"):
        train_and_evaluate(tiny_config(), workdir)
    manager = rundir.make_manager(workdir)
    assert manager.latest_step() == 2
    attn = rundir.restore_attention(workdir)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(attn))
    steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert max(steps) == 2
