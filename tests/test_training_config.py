"""Configs: the typed schema, the packaged configs, start-up validation and the errors a
user sees before training starts."""

import ast
import dataclasses
import inspect
import os
import subprocess
import sys

import pytest

from ttame_jax import config as schema
from ttame_jax import configs, rundir
from ttame_jax.training import preflight
from ttame_jax.training.trainer import steps_per_epoch, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"vgg16": "vgg16", "resnet50": "resnet50", "vit": "vit_b_16"}


def _commented_fields(cls) -> set[str]:
    """Fields of a schema dataclass that have a ``# comment`` line right above them."""
    lines = inspect.getsource(cls).splitlines()
    out = set()
    for i, line in enumerate(lines):
        node = line.strip()
        if ":" in node and not node.startswith(("#", '"', "def ", "@", "class ")):
            name = node.split(":")[0].strip()
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#"):
                j -= 1
            if j < i - 1 and name.isidentifier():
                out.add(name)
    return out


def test_schema_sections_have_a_default_and_a_comment_for_every_field():
    base = schema.Config()
    assert list(schema.SECTIONS) == [
        "backbone", "model", "loss", "data", "train", "eval", "benchmark", "classifier"
    ]  # fmt: skip
    for name, cls in schema.SECTIONS.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert fields == set(schema.to_dict(base)[name]), name
        for f in dataclasses.fields(cls):
            assert f.default is not dataclasses.MISSING, f"{name}.{f.name} has no default"
        missing = fields - _commented_fields(cls)
        assert not missing, f"config.{name} fields without a comment: {sorted(missing)}"
    assert base.check() is base and not base.errors()


@pytest.mark.parametrize("name", [*configs.NAMES, "synthetic:test", "vit:smoke,1tap"])
def test_packaged_configs_set_only_schema_fields_and_import_no_model_code(name):
    module = configs._module(name.partition(":")[0])
    values = module.get_config(name.partition(":")[2] or None).to_dict()
    for section, fields in values.items():
        assert section in schema.SECTIONS
        known = {f.name for f in dataclasses.fields(schema.SECTIONS[section])}
        assert set(fields) <= known, (section, set(fields) - known)
    tree = ast.parse(inspect.getsource(module))
    imported = {
        a.name if isinstance(n, ast.Import) else n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert all(m == "ml_collections" or m == "ttame_jax.configs" for m in imported), imported


def test_loading_a_config_imports_neither_jax_nor_flax():
    code = (
        "import sys; from ttame_jax import configs; configs.load('vit:smoke'); "
        "configs.load('configs/resnet50.py:1tap'); configs.load('synthetic'); "
        "print(sorted(m for m in ('jax', 'flax', 'ttame_jax.backbones') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module,backbone", CONFIGS.items())
def test_configs_hold_the_paper_recipe(module, backbone):
    config = configs.load(module)
    assert config.backbone.name == backbone
    t = config.train
    assert (t.batch_size, t.epochs, t.max_lr, t.pct_start) == (32, 8, 1e-3, 0.3)
    assert (t.div_factor, t.final_div_factor) == (25.0, 1e4)
    assert (t.base_momentum, t.max_momentum, t.nesterov, t.weight_decay) == (0.85, 0.95, True, 5e-4)
    assert (config.loss.ce, config.loss.area, config.loss.tv) == (1.5, 2.0, 0.01)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.batch_size = 3  # frozen: a config is a value
    spec, model = preflight.validate(config)
    assert model.taps == spec.taps
    assert configs.load(f"configs/{module}.py") == config  # the repository's paths still work


@pytest.mark.parametrize("module", CONFIGS)
def test_smoke_variant_uses_generated_data_and_random_weights(module):
    config = configs.load(f"{module}:smoke")
    assert config.data.name == "synthetic" and config.backbone.weights == "random"
    assert config.train.batch_size * config.train.epochs * config.train.steps_per_epoch <= 16
    preflight.validate(config)
    with pytest.raises(ValueError, match=r"unknown config variant\(s\) \['tiny'\]"):
        configs.load(f"{module}:tiny")


@pytest.mark.parametrize("module", CONFIGS)
def test_one_tap_variant_keeps_the_last_default_tap(module):
    full = configs.load(module)
    config = configs.load(f"{module}:1tap,smoke")
    spec, model = preflight.validate(config)
    assert model.taps == (spec.taps[-1],) and len(spec.taps) == 3
    assert config.data.name == "synthetic" and full.model.taps == ()


def test_unknown_config_names_and_files():
    with pytest.raises(ValueError, match="unknown config 'vit16'.*synthetic, vgg16"):
        configs.load("vit16")
    with pytest.raises(FileNotFoundError, match="config file 'nope/x.py' not found"):
        configs.load("nope/x.py")


def _smoke(**overrides):
    values = {"backbone.name": "synthetic_cnn"}
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return configs.load("resnet50:smoke", values)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train__batch_size": 0}, "train.batch_size must be an integer >= 1, got 0"),
        ({"train__max_lr": 0.0}, "train.max_lr must be > 0"),
        ({"train__pct_start": 1.5}, "train.pct_start must lie in [0, 1]"),
        ({"train__base_momentum": 0.99}, "base_momentum / max_momentum"),
        ({"train__weight_decay": -1.0}, "train.weight_decay must be >= 0"),
        ({"loss__variant": "papr"}, "config.loss.variant must be one of"),
        ({"model__branch_act": "tanh"}, "config.model.branch_act must be one of"),
        ({"data__name": "imagenet"}, "data.name must be one of"),
    ],
)
def test_bad_values_are_rejected_when_the_config_is_made(overrides, message):
    with pytest.raises(ValueError) as err:
        _smoke(**overrides)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "section,value,message",
    [
        ("model", {"taps": ("layer9",)}, "unknown tap(s) ['layer9']"),
        ("backbone", {"name": "resnet51"}, "unknown backbone 'resnet51'"),
    ],
)
def test_registry_errors_are_found_before_training(section, value, message, tmp_path):
    config = _smoke()
    config = config.replace(**{section: dataclasses.replace(getattr(config, section), **value)})
    with pytest.raises(ValueError) as err:
        train_and_evaluate(config, str(tmp_path))
    assert message in str(err.value)
    assert not os.path.exists(tmp_path / "checkpoints")


def test_all_bad_values_are_listed_at_once():
    with pytest.raises(ValueError) as err:
        _smoke(train__epochs=0, train__log_every=0, loss__variant="x", train__batchsize=4)
    text = str(err.value)
    assert "train.epochs" in text and "train.log_every" in text and "loss.variant" in text
    # an unknown field is listed too, with the close match
    with pytest.raises(ValueError, match='Did you mean "batch_size"'):
        _smoke(train__batchsize=4)
    bad = dataclasses.replace(schema.Config().train, epochs=0, log_every=0)
    with pytest.raises(ValueError) as err:
        preflight.validate(schema.Config(train=bad, model=schema.ModelConfig(taps=("x",))))
    assert "train.epochs" in str(err.value) and "train.log_every" in str(err.value)


def test_command_line_overrides_are_parsed_by_type():
    config = _smoke(
        train__epochs="4", train__nesterov="false", backbone__weights="none",
        eval__methods="ttame,gradcam", train__max_lr="2e-3", model__taps="('layer2', 'layer3')",
    )  # fmt: skip
    assert config.train.epochs == 4 and config.train.nesterov is False
    assert config.backbone.weights is None and config.train.max_lr == 2e-3
    assert config.eval.methods == ("ttame", "gradcam")
    assert config.model.taps == ("layer2", "layer3")
    with pytest.raises(ValueError, match="config.train.epochs must be an integer, got 'four'"):
        _smoke(train__epochs="four")


def test_steps_per_epoch():
    config = _smoke(train__batch_size=4, train__steps_per_epoch=0)
    assert steps_per_epoch(config.train, 10) == 2  # full batches only
    config = _smoke(train__batch_size=4, train__steps_per_epoch=1)
    assert steps_per_epoch(config.train, 10) == 1
    with pytest.raises(ValueError, match="fewer than one batch"):
        steps_per_epoch(config.train, 3)


def test_missing_dataset_says_where_to_put_it(tmp_path):
    config = configs.load(
        "resnet50", {"backbone.name": "synthetic_cnn", "data.root": str(tmp_path / "no_imagenet")}
    )
    with pytest.raises(FileNotFoundError, match="no_imagenet/train.*does not exist"):
        train_and_evaluate(config, str(tmp_path / "run"))
    unset = configs.load("resnet50", {"backbone.name": "synthetic_cnn"})
    with pytest.raises(ValueError, match="data.root is not set"):
        train_and_evaluate(unset, str(tmp_path / "run"))


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = configs.load("resnet50:smoke", {"backbone.weights": None})  # torchvision's cache
    with pytest.raises(FileNotFoundError, match=r"resnet50-.*\.pth"):
        train_and_evaluate(config, str(tmp_path / "run"))
    config = configs.load("resnet50:smoke", {"backbone.weights": str(tmp_path / "missing.pth")})
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        train_and_evaluate(config, str(tmp_path / "run2"))


def test_resuming_a_workdir_of_another_model_is_refused(tmp_path):
    rundir.write_config(str(tmp_path), _smoke(model__skip=False))
    rundir.save_attention(str(tmp_path), {"params": {"w": [0.0]}, "batch_stats": {}}, 1)
    with pytest.raises(ValueError, match="(?s)model.skip: False -> True.*another model"):
        train_and_evaluate(_smoke(), str(tmp_path))


def test_config_json_round_trip_keeps_tuples(tmp_path):
    config = _smoke(model__taps=("layer2", "layer3"))
    rundir.write_config(str(tmp_path), config)
    back = rundir.read_config(str(tmp_path))
    assert back.model.taps == ("layer2", "layer3")
    assert back == config
    with pytest.raises(FileNotFoundError, match="not a training workdir"):
        rundir.read_config(str(tmp_path / "nothing"))


def test_cli_rejects_a_misspelt_override(tmp_path):
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--config=" + os.path.join(ROOT, "configs/resnet50.py:smoke"),
        "--config.train.batchsize=4",
        f"--workdir={tmp_path}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert 'Did you mean "batch_size"' in proc.stderr
    assert not os.listdir(tmp_path)  # nothing written
