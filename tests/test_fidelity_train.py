"""Training fidelity switches (issue 12): epoch-end checkpoints kept (D11), the reference's
augmentation rule (D5) and the reference's train-mode backbone (D7)."""

import dataclasses
import json
from typing import ClassVar

import flax.linen as nn
import jax
import numpy as np
import pytest

import ttame_jax.data
from ttame_jax import configs, rundir
from ttame_jax.backbones import BackboneSpec, convert_torchvision, get_spec, load_pretrained
from ttame_jax.config import LossConfig, ModelConfig, TrainConfig, to_dict
from ttame_jax.core import model as core_model
from ttame_jax.training.optimizer import make_optimizer
from ttame_jax.training.schedule import OneCycle
from ttame_jax.training.sharding import make_mesh
from ttame_jax.training.train_step import make_init, make_train_step
from ttame_jax.training.trainer import train_and_evaluate


def tiny(backbone="synthetic_cnn", **overrides):
    """3 steps per epoch of batch 2 on 6 generated 64-px images, no validation."""
    values = {
        "backbone.name": backbone,
        "data.train_size": 6,
        "train.steps_per_epoch": 3,
        "train.checkpoint_every": 1,
        "train.progress_bar": False,
        "train.tensorboard": False,
        "train.validate_every_epoch": False,
    }
    values.update(overrides)
    return configs.load("resnet50:smoke", values)


@pytest.fixture(scope="module", autouse=True)
def _reuse_backbone_init(cached_load_pretrained):
    """Every run here loads the same random backbones (see conftest)."""


# -- D11: epoch ends survive rotation ---------------------------------------------------


def test_epoch_end_checkpoints_survive_rotation(tmp_path):
    workdir = str(tmp_path)
    config = tiny(**{"train.keep_checkpoints": 1, "train.epochs": 2})
    halted = tiny(**{"train.keep_checkpoints": 1, "train.epochs": 2, "train.halt_after_steps": 5})
    train_and_evaluate(halted, workdir)
    # Steps 1..5 were saved; keep 1 keeps the latest (5) and the epoch end 3.
    assert rundir.steps(workdir) == [3, 5]
    train_and_evaluate(config, workdir)
    assert rundir.steps(workdir) == [3, 6]
    assert rundir.epoch_end_steps(workdir, 3) == [3, 6]


def test_epoch_ends_rotate_when_asked(tmp_path):
    workdir = str(tmp_path)
    config = tiny(
        **{"train.keep_checkpoints": 1, "train.epochs": 2, "train.keep_epoch_checkpoints": False}
    )
    train_and_evaluate(config, workdir)
    assert rundir.steps(workdir) == [6]
    assert "train.keep_epoch_checkpoints" in rundir.COSMETIC_FIELDS


# -- D5: the reference's augmentation rule ----------------------------------------------


def test_augment_rule_and_defaults():
    assert not TrainConfig().augments("cnn") and TrainConfig().augments("vit")
    assert TrainConfig(augment="always").augments("cnn")
    assert not TrainConfig(augment="never").augments("vit")
    assert TrainConfig(augment="sometimes").errors()
    for name in ("vgg16", "resnet50", "vit"):
        assert configs.load(name).train.augment == "auto"
    synthetic = configs.load("synthetic")  # unchanged benchmark: augmented as before
    assert synthetic.train.augment == "always"
    assert synthetic.train.keep_epoch_checkpoints is False
    assert "train.augment" not in rundir.COSMETIC_FIELDS


@pytest.mark.parametrize(
    "backbone, augment, expected",
    [
        ("synthetic_cnn", "auto", False),
        ("synthetic_cnn", "always", True),
        ("synthetic_vit", "auto", True),
    ],
)
def test_trainer_asks_the_source_for_the_configured_augmentation(
    tmp_path, monkeypatch, capsys, backbone, augment, expected
):
    seen = []
    real = ttame_jax.data.build_source

    def recording(data_cfg, split, **kw):
        source = real(data_cfg, split, **kw)
        batches = source.batches

        def spy(*args, **kwargs):
            seen.append((split, kwargs.get("augment")))
            return batches(*args, **kwargs)

        source.batches = spy
        return source

    monkeypatch.setattr(ttame_jax.data, "build_source", recording)
    config = tiny(backbone, **{"train.augment": augment, "train.halt_after_steps": 1})
    train_and_evaluate(config, str(tmp_path))
    assert seen and all(flag is expected for split, flag in seen if split == "train")
    assert f"augmentation {'on' if expected else 'off'}" in capsys.readouterr().out


# -- D7: the backbone in train mode -----------------------------------------------------


def _setup(name="synthetic_cnn"):
    spec_model = core_model.build(name)
    size = spec_model.spec.input_size
    backbone_vars = load_pretrained(name, "random", seed=0)
    x = np.random.default_rng(0).uniform(size=(4, size, size, 3)).astype(np.float32)
    attn = spec_model.init(jax.random.key(0), backbone_vars, x)
    return backbone_vars, x, attn


class _EvalOnly(nn.Module):
    """A user's classifier whose ``__call__`` has no ``train`` argument."""

    tap_paths: ClassVar[dict] = {"conv": ("conv",)}

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), name="conv")(x)
        return nn.Dense(3)(x.mean(axis=(1, 2)))


def test_reference_backbone_mode_needs_a_train_argument():
    for name in ("vgg16", "resnet50", "vit_b_16", "synthetic_cnn", "synthetic_vit"):
        assert core_model.build(name, ModelConfig(backbone_mode="reference")).backbone
    spec = BackboneSpec("eval_only", "cnn", _EvalOnly, 32, 3, (0.5,) * 3, (0.5,) * 3, ("conv",))
    with pytest.raises(ValueError, match="backbone_mode='reference' needs a backbone"):
        core_model.build(spec, ModelConfig(backbone_mode="reference"))
    assert ModelConfig(backbone_mode="train").errors()
    assert configs.load("resnet50").model.backbone_mode == "eval"


@pytest.mark.slow
def test_reference_mode_steps_on_resnet50_leave_its_running_statistics():
    """Jitted T-TAME train steps with backbone_mode="reference" on our ResNet-50 module (at
    64 px: a spec copy, T-TAME checks the input size): finite, and the backbone's
    variables (BatchNorm running statistics included) are left as they were; the carried
    BatchNorm state is the attention's only."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    spec = dataclasses.replace(get_spec("resnet50"), name="resnet50_64px", input_size=64)
    tm = torchvision.models.resnet50()
    with torch.no_grad():
        for m in tm.modules():  # running statistics that are not the init's (0, 1)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    backbone_vars = convert_torchvision("resnet50", tm.state_dict())
    before = jax.tree.map(np.array, backbone_vars)
    model = core_model.build(spec, ModelConfig(backbone_mode="reference"))
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    tx = make_optimizer(OneCycle.from_train_config(TrainConfig(), 10), weight_decay=0.0)
    state = make_init(model, tx, x.shape)(jax.random.key(0), backbone_vars)
    structure = jax.tree.structure(state.batch_stats)
    step = make_train_step(model, LossConfig(), tx, make_mesh())
    for _ in range(3):
        state, metrics = step(state, backbone_vars, x)
        assert bool(metrics["finite"])
    assert int(state.step) == 3
    assert jax.tree.structure(state.batch_stats) == structure
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(backbone_vars), strict=True):
        np.testing.assert_array_equal(a, b)


def test_reference_mode_uses_batch_statistics_and_eval_mode_is_unchanged():
    backbone_vars, x, attn = _setup()
    evalm = core_model.build("synthetic_cnn")
    ref = core_model.build("synthetic_cnn", ModelConfig(backbone_mode="reference"))
    args = (attn["params"], attn["batch_stats"], backbone_vars, x, LossConfig())
    loss_eval, (terms_eval, stats_eval) = evalm.loss_fn(*args, jax.random.key(1))
    # The eval path does not depend on the field: the reference model told to use eval
    # mode gives the same numbers bit for bit.
    loss_same, (terms_same, stats_same) = ref.loss_fn(
        *args, jax.random.key(1), backbone_train=False
    )
    np.testing.assert_array_equal(loss_eval, loss_same)
    for a, b in zip(jax.tree.leaves(stats_eval), jax.tree.leaves(stats_same), strict=True):
        np.testing.assert_array_equal(a, b)
    loss_ref, (terms_ref, _) = ref.loss_fn(*args, jax.random.key(1))
    assert np.isfinite(loss_ref) and float(loss_ref) != float(loss_eval)
    # The unmasked pass is the backbone with train=True (batch statistics).
    xn = core_model.normalize(x, ref.spec.mean, ref.spec.std)
    logits, _ = ref.features(backbone_vars, xn, train=True, rng=jax.random.key(2))
    want, _ = ref.backbone.apply(backbone_vars, xn, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(logits, want, rtol=1e-6, atol=1e-6)
    eval_logits = ref.backbone.apply(backbone_vars, xn)
    assert not np.allclose(logits, eval_logits)


def test_reference_mode_trains(tmp_path):
    config = tiny(**{"model.backbone_mode": "reference", "train.halt_after_steps": 2})
    out = train_and_evaluate(config, str(tmp_path))
    assert int(out["state"].step) == 2
    assert np.isfinite(out["train"]["loss"])
    # The carried BatchNorm state is the attention's: the backbone's is not updated.
    attention_stats = _setup()[2]["batch_stats"]
    assert jax.tree.structure(out["state"].batch_stats) == jax.tree.structure(attention_stats)
    assert "model.backbone_mode" not in rundir.COSMETIC_FIELDS


def test_a_config_json_without_augment_reads_as_the_old_behaviour(tmp_path):
    values = to_dict(tiny())
    del values["train"]["augment"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert rundir.read_config(str(tmp_path)).train.augment == "always"
