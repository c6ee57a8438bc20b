"""Bring your own Flax classifier: register it, train T-TAME on it, explain, evaluate it
with T-TAME and every baseline (docs/backbones.md, "Your own Flax classifier").

The classifier is defined here, not in the package: any Flax module that takes NHWC
normalised images, returns logits and names its feature taps in a ``tap_paths`` table.
"""

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import ttame_jax
from ttame_jax import backbones, configs, rundir
from ttame_jax.config import with_overrides
from ttame_jax.evaluation import evaluate
from ttame_jax.training.trainer import train_and_evaluate

SIZE, CLASSES = 32, 8


class TinyNet(nn.Module):
    """Three conv stages and a linear head (not one of ttame_jax's backbones)."""

    # node name -> Flax module path of each tap (like torchvision's node names).
    tap_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        "stage1": ("stage1",),
        "stage2": ("stage2",),
        "stage3": ("stage3",),
    }

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, width in enumerate((8, 16, 16), start=1):
            x = nn.relu(nn.Conv(width, (3, 3), strides=1 if i == 1 else 2, name=f"stage{i}")(x))
        return nn.Dense(CLASSES, name="head")(jnp.mean(x, axis=(1, 2)))


@pytest.fixture(scope="module")
def registered():
    spec = backbones.BackboneSpec(
        name="tiny_byo",
        kind="cnn",
        builder=TinyNet,
        input_size=SIZE,
        num_classes=CLASSES,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        taps=("stage1", "stage2", "stage3"),
    )
    backbones.register(spec)
    return spec


@pytest.fixture(scope="module")
def run(registered, tmp_path_factory):
    """T-TAME trained 4 steps on the registered classifier (random weights, generated data)."""
    workdir = str(tmp_path_factory.mktemp("byo"))
    config = configs.load(
        "resnet50:smoke",
        {"backbone.name": "tiny_byo", "train.progress_bar": False, "data.test_size": 4},
    )
    train_and_evaluate(config, workdir)
    return workdir


def test_training_writes_a_run_on_the_custom_backbone(run):
    config = rundir.read_config(run)
    assert config.backbone.name == "tiny_byo"
    assert rundir.steps(run)[-1] == 4


def test_explain_on_the_custom_backbone(run):
    explainer = ttame_jax.load(run)
    x = np.random.default_rng(0).uniform(size=(3, SIZE, SIZE, 3)).astype(np.float32)
    out = ttame_jax.explain(explainer, x)
    assert out.maps.shape == (3, SIZE, SIZE) and out.logits.shape == (3, CLASSES)
    assert float(out.maps.min()) >= 0.0 and float(out.maps.max()) <= 1.0
    assert np.ptp(np.asarray(out.maps[0])) > 0  # a map, not a constant
    every = ttame_jax.explain(explainer, x, all_classes=True).maps
    assert every.shape == (3, CLASSES, SIZE, SIZE)


def test_evaluate_with_ttame_and_every_baseline(run, tmp_path):
    names = ("ttame", "gradcam", "gradcampp", "scorecam", "ablationcam", "rise")
    config = with_overrides(
        rundir.read_config(run),
        {
            "eval.methods": names,
            "eval.batch_size": 2,
            "eval.rise_masks": 8,
            "eval.progress": False,
        },
    )
    results = evaluate(run, config, workdir=str(tmp_path))
    assert list(results["methods"]) == list(names)
    fp = {name: m["fp"] for name, m in results["methods"].items()}
    assert fp == {
        "ttame": 1,
        "gradcam": 1,
        "gradcampp": 1,
        "scorecam": 16,
        "ablationcam": 16,
        "rise": 8,
    }  # fmt: skip  (stage3 has 16 channels)
    for name, m in results["methods"].items():
        assert 0.0 <= m["ad"]["100"] <= 100.0, name
        assert m["options"].get("layer", "stage3") == "stage3"  # the last T-TAME tap
