"""Never lose a user's work (issue 14): config changes, failed starts, damaged checkpoints,
two processes on one workdir, late size errors, duplicated log lines."""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ttame_jax
from ttame_jax import configs, rundir
from ttame_jax.cli.common import load_checkpoint
from ttame_jax.cli.main import main
from ttame_jax.training.metrics_log import drop_records_after, read_records
from ttame_jax.training.trainer import train_and_evaluate

BASE = {
    "backbone.name": "synthetic_cnn",
    "data.train_size": 6,
    "data.val_size": 4,
    "train.epochs": 1,
    "train.checkpoint_every": 1,
    "train.keep_checkpoints": 2,
    "train.progress_bar": False,
    "train.validate_every_epoch": False,
    "train.val_adic_percent": 0.0,
}


def tiny(extra=None, **train):
    """1 epoch x 2 steps of batch 2 on 64-px generated images, random synthetic_cnn, no
    validation: a finished run in a few seconds. ``extra``: more dotted overrides."""
    overrides = {**BASE, **(extra or {})}
    overrides.update({f"train.{k}": v for k, v in train.items()})
    return configs.load("resnet50:smoke", overrides)


@pytest.fixture(scope="module", autouse=True)
def _reuse_backbone_init(cached_load_pretrained):
    """Every run here loads the same random synthetic_cnn (see conftest)."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run: steps 1 and 2 saved."""
    workdir = str(tmp_path_factory.mktemp("finished"))
    train_and_evaluate(tiny(), workdir)
    return workdir


def _copy(workdir, tmp_path):
    target = str(tmp_path / "run")
    shutil.copytree(workdir, target)
    return target


def _snapshot(workdir):
    files = {}
    for root, _, names in os.walk(workdir):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, workdir)] = Path(path).read_bytes()
    return files


def _damage(workdir, step):
    """Truncates the largest file of the step's attention item (a torn copy or disk)."""
    folder = os.path.join(workdir, "checkpoints", str(step), "attention")
    paths = [os.path.join(r, n) for r, _, names in os.walk(folder) for n in names]
    biggest = max(paths, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)


# A: a rerun with changed training settings never rewrites a finished run.


def test_changed_training_settings_are_refused_and_nothing_is_touched(finished, tmp_path):
    workdir = _copy(finished, tmp_path)
    before = _snapshot(workdir)
    with pytest.raises(rundir.ConfigChangeError) as err:
        train_and_evaluate(tiny(epochs=4, max_lr=0.05), workdir)
    message = str(err.value)
    assert "train.epochs: 1 -> 4" in message
    assert f"train.max_lr: {tiny().train.max_lr!r} -> 0.05" in message
    assert "new --workdir" in message and "--allow-config-change" in message
    after = _snapshot(workdir)
    after.pop("train.lock", None), before.pop("train.lock", None)
    assert after == before


def test_cosmetic_fields_may_change_and_are_listed_once():
    old = tiny()
    cosmetic = tiny(log_every=7, progress_bar=True, halt_after_steps=1, keep_checkpoints=9)
    assert rundir.config_changes(old, cosmetic) == []
    changed = configs.load("resnet50:smoke", {"backbone.name": "synthetic_cnn"})
    keys = [key for key, _, _ in rundir.config_changes(old, changed)]
    assert "train.epochs" in keys and "train.log_every" not in keys
    assert "train.log_every" in rundir.COSMETIC_FIELDS


def test_opt_in_continues_into_a_new_config_file_and_keeps_the_final_checkpoint(
    finished, tmp_path, capsys
):
    workdir = _copy(finished, tmp_path)
    config_json = Path(os.path.join(workdir, "config.json")).read_text()
    argv = ["train", "--config=resnet50:smoke", f"--workdir={workdir}", "--allow-config-change"]
    argv += [f"--config.{k}={v}" for k, v in {**BASE, "train.epochs": 2}.items()]
    argv += ["--config.train.keep_checkpoints=1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert Path(os.path.join(workdir, "config.json")).read_text() == config_json
    assert rundir.read_config(workdir).train.epochs == 1
    continued = json.loads(Path(os.path.join(workdir, "config.1.json")).read_text())
    assert continued["train"]["epochs"] == 2
    # keep_checkpoints=1 rotates, but the finished run's last step 2 stays.
    assert rundir.steps(workdir) == [2, 4] and rundir.kept_steps(workdir) == [2]
    # Same settings again: a plain rerun (no opt-in) compares with config.1.json.
    train_and_evaluate(tiny(epochs=2), workdir)


def test_another_model_is_refused_even_with_the_opt_in(finished, tmp_path):
    workdir = _copy(finished, tmp_path)
    config = tiny({"model.skip": False})
    with pytest.raises(rundir.ConfigChangeError, match="model.skip: True -> False"):
        train_and_evaluate(config, workdir, allow_config_change=True)
    assert not os.path.exists(os.path.join(workdir, "config.1.json"))


def test_a_precision_change_is_a_setting_change_not_another_model(finished, tmp_path):
    workdir = _copy(finished, tmp_path)
    config = tiny({"model.backbone_dtype": "bfloat16"})
    with pytest.raises(rundir.ConfigChangeError, match="--allow-config-change") as err:
        rundir.check_config(workdir, config, write=False)
    assert "model.backbone_dtype: 'float32' -> 'bfloat16'" in str(err.value)
    assert rundir.check_config(workdir, config, allow_change=True, write=False) is True


# B: a failed start does not block the corrected rerun.


def test_a_failed_start_does_not_block_the_corrected_command(tmp_path):
    workdir = str(tmp_path / "run")
    wrong = tiny({"backbone.weights": str(tmp_path / "x.pth")})
    with pytest.raises(FileNotFoundError, match="x.pth"):
        train_and_evaluate(wrong, workdir)
    assert rundir.steps(workdir) == []
    train_and_evaluate(tiny(), workdir)  # refused as "a different config" before
    assert rundir.read_config(workdir) == tiny() and rundir.steps(workdir) == [1, 2]


# C: a damaged newest checkpoint falls back to the newest one that restores.


def test_load_falls_back_to_the_newest_checkpoint_that_restores(finished, tmp_path, caplog):
    workdir = _copy(finished, tmp_path)
    _damage(workdir, 2)
    with caplog.at_level(logging.WARNING, logger="ttame_jax.rundir"):
        step, attn = rundir.load_attention(workdir)
    assert step == 1 and "step 2" in caplog.text and "damaged" in caplog.text
    x = np.random.default_rng(0).uniform(size=(1, 64, 64, 3)).astype(np.float32)
    assert ttame_jax.explain(ttame_jax.load(workdir), x).maps.shape == (1, 64, 64)
    explainer, config, found, step = load_checkpoint(os.path.join(workdir, "checkpoints"), None)
    assert (found, step, config.backbone.name) == (workdir, 1, "synthetic_cnn")
    assert ttame_jax.explain(explainer, x).maps.shape == (1, 64, 64)
    assert rundir.steps(workdir) == [1, 2]  # readers never move files


def test_no_restorable_checkpoint_is_one_clear_error_and_explain_exits_2(
    finished, tmp_path, capsys
):
    workdir = _copy(finished, tmp_path)
    _damage(workdir, 1), _damage(workdir, 2)
    with pytest.raises(rundir.CheckpointError, match=r"tried:\n  step 2: .*\n  step 1: "):
        rundir.load_attention(workdir)
    image = str(tmp_path / "img.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    argv = ["explain", image, "--checkpoint", workdir, "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "could be restored" in err and len(err) < 2000


def test_resume_falls_back_sets_the_damaged_step_aside_and_redoes_it(finished, tmp_path):
    workdir = _copy(finished, tmp_path)
    _damage(workdir, 2)
    out = train_and_evaluate(tiny(), workdir)
    assert int(out["state"].step) == 2 and rundir.steps(workdir) == [1, 2]
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    assert any(n.startswith("damaged.2.") for n in names)
    rundir.load_attention(workdir, 2)  # the redone step restores


# D: one training process per workdir.


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    workdir = str(tmp_path / "run")
    with rundir.lock(workdir):
        with pytest.raises(rundir.WorkdirLockedError, match=f"pid {os.getpid()} on host"):
            train_and_evaluate(tiny(), workdir)
    assert not os.path.exists(os.path.join(workdir, "config.json"))


def test_a_lock_held_by_another_process_names_its_pid(tmp_path):
    workdir = str(tmp_path)
    code = (
        "import sys, time\nfrom ttame_jax import rundir\n"
        f"with rundir.lock({workdir!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(rundir.WorkdirLockedError, match=f"pid {holder.pid} on host"):
            with rundir.lock(workdir):
                pass
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with rundir.lock(workdir):  # released with its process
        pass


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    workdir = str(tmp_path)
    with open(os.path.join(workdir, rundir.LOCK_FILE), "w") as f:
        json.dump({"pid": 2**22 + 1, "host": socket.gethostname(), "since": 0}, f)
    with caplog.at_level(logging.WARNING, logger="ttame_jax.rundir"):
        with rundir.lock(workdir):
            holder = json.loads(Path(os.path.join(workdir, rundir.LOCK_FILE)).read_text())
    assert holder["pid"] == os.getpid()
    assert f"pid {2**22 + 1}" in caplog.text and "taking over" in caplog.text


# E: every size relation is checked before step 1, in one error.


def test_size_errors_come_before_step_one_in_one_message(tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny({"data.val_size": 1}, validate_every_epoch=True)
    with pytest.raises(ValueError, match="val split has 1 examples") as err:
        train_and_evaluate(config, workdir)
    assert rundir.steps(workdir) == [] and not read_records(workdir)
    config = tiny(
        {"data.train_size": 1, "data.val_size": 5}, val_steps=3, validate_every_epoch=True
    )
    with pytest.raises(ValueError) as err:
        train_and_evaluate(config, workdir)
    assert "train split has 1 examples" in str(err.value)
    assert "train.val_steps=3" in str(err.value)


# F: each step logged once; a lost epoch-end validation is recomputed.


def test_resume_logs_each_step_once_and_redoes_a_lost_validation(tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny(epochs=2, log_every=1, checkpoint_every=100, validate_every_epoch=True)
    train_and_evaluate(config, workdir)
    assert rundir.steps(workdir) == [2, 4]
    # Killed after step 4's checkpoint, before its validation was logged.
    records = read_records(workdir)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records if r["split"] != "val" or r["step"] < 4)
    train_and_evaluate(config, workdir)
    keys = [(r["split"], r["step"]) for r in read_records(workdir)]
    assert keys == [("train", 1), ("train", 2), ("val", 2), ("train", 3), ("train", 4), ("val", 4)]
    # Killed at step 4 before its checkpoint: steps 3, 4 were logged and are redone.
    shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
    train_and_evaluate(config, workdir)
    assert [(r["split"], r["step"]) for r in read_records(workdir)] == keys


def test_a_torn_last_log_line_is_dropped_not_glued_to_the_next(tmp_path):
    workdir = str(tmp_path)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write('{"split": "train", "step": 1}\n{"split": "train", "step": 2}\n{"split": "tr')
    kept = drop_records_after(workdir, 1)
    assert kept == [{"split": "train", "step": 1}] == read_records(workdir)
    assert Path(os.path.join(workdir, "metrics.jsonl")).read_text().endswith("}\n")
