"""TensorBoard event files next to metrics.jsonl: tags, steps, values, resume, opt-out."""

import json
import logging
import os
import shutil
import sys

import pytest

from ttame_jax import configs
from ttame_jax.training import metrics_log
from ttame_jax.training.metrics_log import MetricsLogger, read_tensorboard
from ttame_jax.training.trainer import train_and_evaluate

TRAIN_TAGS = {"loss", "ce", "area", "tv", "mask_mean", "lr", "momentum", "grad_norm"}
VAL_TAGS = {"loss", "AD", "IC"}


def _config(**train):
    """2 epochs x 2 steps of batch 2 on 64-px generated images, random synthetic_cnn."""
    overrides = {
        "backbone.name": "synthetic_cnn",
        "data.train_size": 4,
        "data.val_size": 4,
        "train.epochs": 2,
        "train.steps_per_epoch": 2,
        "train.batch_size": 2,
        "train.val_steps": 0,
        "train.log_every": 1,
        "train.checkpoint_every": 1,
        "train.keep_checkpoints": 10,
        "train.progress_bar": False,
        "train.max_lr": 0.05,
    }
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return configs.load("resnet50:smoke", overrides)


@pytest.fixture(scope="module", autouse=True)
def _reuse_backbone_init(cached_load_pretrained):
    """Every run here loads the same random synthetic_cnn (see conftest)."""


def _jsonl(workdir):
    return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def _assert_matches_jsonl(workdir):
    """Every numeric field of every metrics.jsonl record is a scalar at its step, once."""
    pytest.importorskip("tensorboardX")
    scalars = read_tensorboard(workdir)
    records = _jsonl(workdir)
    for split, tags in (("train", TRAIN_TAGS | {"images_per_s"}), ("val", VAL_TAGS)):
        rows = [r for r in records if r["split"] == split]
        assert rows
        for tag in tags:
            points = scalars[f"{split}/{tag}"]
            assert [s for s, _ in points] == [r["step"] for r in rows], tag
            for (_, value), r in zip(points, rows, strict=True):
                assert value == pytest.approx(r[tag], rel=1e-6, abs=1e-7), tag
    return scalars


def test_run_writes_tensorboard_scalars(tmp_path):
    workdir = str(tmp_path)
    train_and_evaluate(_config(), workdir)
    scalars = _assert_matches_jsonl(workdir)
    assert {t for t in scalars if t.startswith("train/")} >= {f"train/{t}" for t in TRAIN_TAGS}
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in scalars["val/AD"]] == [2, 4]
    assert not any(t.endswith(("/step", "/epoch", "/split")) for t in scalars)


def test_resume_does_not_write_steps_twice(tmp_path):
    workdir = str(tmp_path)
    train_and_evaluate(_config(), workdir)
    # As if killed after logging steps 3-4 (and val 4) but before their checkpoints landed.
    for step in (3, 4):
        shutil.rmtree(os.path.join(workdir, "checkpoints", str(step)))
    train_and_evaluate(_config(), workdir)  # resumes at 2, redoes 3 and 4
    assert len(os.listdir(os.path.join(workdir, "tensorboard"))) == 2  # a new event file
    scalars = _assert_matches_jsonl(workdir)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in scalars["val/IC"]] == [2, 4]


def test_tensorboard_off_and_missing_package(tmp_path, monkeypatch, caplog):
    off = str(tmp_path / "off")
    with MetricsLogger(off, total_steps=2, batch_size=2, progress=False, tensorboard=False) as m:
        m.write({"split": "train", "step": 1, "loss": 1.0})
    assert not os.path.exists(os.path.join(off, "tensorboard"))

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    monkeypatch.setattr(metrics_log, "_warned_no_tensorboard", False)
    missing = str(tmp_path / "missing")
    with caplog.at_level(logging.WARNING, logger=metrics_log.__name__):
        for _ in range(2):
            kw = {"total_steps": 2, "batch_size": 2, "progress": False, "tensorboard": True}
            with MetricsLogger(missing, **kw) as m:
                m.write({"split": "train", "step": 1, "loss": 1.0})
    warnings = [r for r in caplog.records if "tensorboardX is not installed" in r.message]
    assert len(warnings) == 1  # once per process
    assert not os.path.exists(os.path.join(missing, "tensorboard"))
    assert len(_jsonl(missing)) == 2  # metrics.jsonl is written all the same
