"""Configs, start-up validation and the error messages a user sees before training starts."""

import importlib
import os
import subprocess
import sys

import pytest

from configs import common
from ttame_jax.training import checkpoint, config_utils
from ttame_jax.training.trainer import steps_per_epoch, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"vgg16": "vgg16", "resnet50": "resnet50", "vit": "vit_b_16"}


@pytest.mark.parametrize("module,backbone", CONFIGS.items())
def test_configs_hold_the_paper_recipe_and_are_locked(module, backbone):
    config = importlib.import_module(f"configs.{module}").get_config()
    assert config.backbone.name == backbone
    t = config.train
    assert (t.batch_size, t.epochs, t.max_lr, t.pct_start) == (32, 8, 1e-3, 0.3)
    assert (t.div_factor, t.final_div_factor) == (25.0, 1e4)
    assert (t.base_momentum, t.max_momentum, t.nesterov, t.weight_decay) == (0.85, 0.95, True, 5e-4)
    assert (config.loss.ce, config.loss.area, config.loss.tv) == (1.5, 2.0, 0.01)
    with pytest.raises(AttributeError):
        config.train.batchsize = 3  # locked: a typo is an error, not a new field
    spec, model = config_utils.validate(config)
    assert model.taps == spec.taps


@pytest.mark.parametrize("module", CONFIGS)
def test_smoke_variant_uses_generated_data_and_random_weights(module):
    config = importlib.import_module(f"configs.{module}").get_config("smoke")
    assert config.data.name == "synthetic" and config.backbone.weights == "random"
    assert config.train.batch_size * config.train.epochs * config.train.steps_per_epoch <= 16
    config_utils.validate(config)
    with pytest.raises(ValueError, match=r"unknown config variant\(s\) \['tiny'\]"):
        importlib.import_module(f"configs.{module}").get_config("tiny")


@pytest.mark.parametrize("module", CONFIGS)
def test_one_tap_variant_keeps_the_last_default_tap(module):
    full = importlib.import_module(f"configs.{module}").get_config("")
    config = importlib.import_module(f"configs.{module}").get_config("1tap,smoke")
    spec, model = config_utils.validate(config)
    assert model.taps == (spec.taps[-1],) and len(spec.taps) == 3
    assert config.data.name == "synthetic" and full.model.taps == ()


def _smoke(**overrides):
    config = common.smoke(common.get_base_config("synthetic_cnn"))
    for dotted, value in overrides.items():
        section, field = dotted.split("__")
        config[section][field] = value
    config.lock()
    return config


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train__batch_size": 0}, "train.batch_size must be an integer >= 1, got 0"),
        ({"train__max_lr": 0.0}, "train.max_lr must be > 0"),
        ({"train__pct_start": 1.5}, "train.pct_start must lie in [0, 1]"),
        ({"train__base_momentum": 0.99}, "base_momentum / max_momentum"),
        ({"train__weight_decay": -1.0}, "train.weight_decay must be >= 0"),
        ({"loss__variant": "papr"}, "config.loss.variant must be one of"),
        ({"model__taps": ("layer9",)}, "unknown tap(s) ['layer9']"),
        ({"model__branch_act": "tanh"}, "config.model.branch_act must be one of"),
        ({"backbone__name": "resnet51"}, "unknown backbone 'resnet51'"),
        ({"data__name": "imagenet"}, "data.name must be one of"),
    ],
)
def test_bad_values_are_rejected_before_training(overrides, message, tmp_path):
    with pytest.raises(ValueError) as err:
        train_and_evaluate(_smoke(**overrides), str(tmp_path))
    assert message in str(err.value)
    assert not os.path.exists(tmp_path / "checkpoints")


def test_all_bad_values_are_listed_at_once():
    config = _smoke(train__epochs=0, train__log_every=0, loss__variant="x")
    with pytest.raises(ValueError) as err:
        config_utils.validate(config)
    text = str(err.value)
    assert "train.epochs" in text and "train.log_every" in text and "loss.variant" in text


def test_steps_per_epoch():
    config = _smoke(train__batch_size=4, train__steps_per_epoch=0)
    assert steps_per_epoch(config.train, 10) == 2  # full batches only
    config = _smoke(train__batch_size=4, train__steps_per_epoch=1)
    assert steps_per_epoch(config.train, 10) == 1
    with pytest.raises(ValueError, match="fewer than one batch"):
        steps_per_epoch(config.train, 3)


def test_missing_dataset_says_where_to_put_it(tmp_path):
    config = common.get_base_config("synthetic_cnn")
    config.data.root = str(tmp_path / "no_imagenet")
    config.lock()
    with pytest.raises(FileNotFoundError, match="no_imagenet/train.*does not exist"):
        train_and_evaluate(config, str(tmp_path / "run"))
    unset = common.get_base_config("synthetic_cnn")
    with pytest.raises(ValueError, match="data.root is not set"):
        train_and_evaluate(unset, str(tmp_path / "run"))


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = common.smoke(common.get_base_config("resnet50"))
    config.backbone.weights = None  # look in torchvision's cache
    with pytest.raises(FileNotFoundError, match=r"resnet50-.*\.pth"):
        train_and_evaluate(config, str(tmp_path / "run"))
    config.backbone.weights = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        train_and_evaluate(config, str(tmp_path / "run2"))


def test_resuming_a_workdir_of_another_model_is_refused(tmp_path):
    checkpoint.write_config(str(tmp_path), _smoke(model__skip=False))
    with pytest.raises(ValueError, match="different config.model"):
        train_and_evaluate(_smoke(), str(tmp_path))


def test_config_json_round_trip_keeps_tuples(tmp_path):
    config = _smoke(model__taps=("layer2", "layer3"))
    checkpoint.write_config(str(tmp_path), config)
    back = checkpoint.read_config(str(tmp_path))
    assert back.model.taps == ("layer2", "layer3")
    assert back.to_dict() == config.to_dict()
    with pytest.raises(FileNotFoundError, match="not a training workdir"):
        checkpoint.read_config(str(tmp_path / "nothing"))


def test_cli_rejects_a_misspelt_override(tmp_path):
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--config=" + os.path.join(ROOT, "configs/resnet50.py:smoke"),
        "--config.train.batchsize=4",
        f"--workdir={tmp_path}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0
    assert 'Did you mean "batch_size"' in proc.stderr
