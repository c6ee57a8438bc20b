"""Training the synthetic backbones: a reduced run beats chance and uses the target only."""

import dataclasses
import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttame_jax import backbones, configs
from ttame_jax.benchmark.backbones import get_or_train
from ttame_jax.config import ClassifierConfig, DataConfig
from ttame_jax.data import synthetic
from ttame_jax.data import synthetic_scene as scene_lib
from ttame_jax.training import classifier

CHANCE = 1.0 / synthetic.NUM_CLASSES


def _predict(name, variables, images):
    spec = backbones.get_spec(name)
    x = (jnp.asarray(images, jnp.float32) / 255.0 - jnp.asarray(spec.mean)) / jnp.asarray(spec.std)
    return np.asarray(jax.jit(backbones.create(name).apply)(variables, x).argmax(-1))


@pytest.fixture(scope="module")
def reduced_cnn(tmp_path_factory):
    cfg = DataConfig(
        name="synthetic", train_size=2000, val_size=500, test_size=300, two_object_fraction=0.0
    )
    workdir = str(tmp_path_factory.mktemp("clf"))
    variables, acc = classifier.train_classifier(
        "synthetic_cnn", cfg, steps=150, batch_size=64, lr=4e-3, seed=0,
        workdir=workdir, progress=False,
    )  # fmt: skip
    return variables, acc, workdir


def test_reduced_training_beats_chance_by_far(reduced_cnn):
    _, acc, _ = reduced_cnn
    assert acc > 3 * CHANCE  # chance is 1/8


def test_weights_and_facts_are_written(reduced_cnn):
    variables, acc, workdir = reduced_cnn
    with open(os.path.join(workdir, "synthetic_cnn.msgpack"), "rb") as f:
        restored = flax.serialization.msgpack_restore(f.read())
    assert jax.tree.structure(restored) == jax.tree.structure(jax.device_get(variables))
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
    with open(os.path.join(workdir, "synthetic_cnn.json")) as f:
        facts = json.load(f)
    assert facts["test"]["accuracy"] == acc and facts["steps"] == 150


def test_the_class_follows_the_target_and_nothing_else(reduced_cnn):
    variables, acc, _ = reduced_cnn
    src = synthetic.SyntheticSource("test", size=64, num_examples=300, seed=0)
    scenes = [src.scene(i) for i in range(len(src))]
    labels = np.array([s.labels[0] for s in scenes])
    plain = np.stack([scene_lib.render(s)[0] for s in scenes])
    # Without its target an image holds no class: predictions fall to chance.
    empty = np.stack([scene_lib.render(s, with_targets=False)[0] for s in scenes])
    # Repainting the target with the next class's pattern moves the prediction along.
    repainted = [
        dataclasses.replace(
            s, targets=(dataclasses.replace(s.targets[0], pattern=scene_lib.PATTERNS[(y + 1) % 8]),)
        )
        for s, y in zip(scenes, labels, strict=True)
    ]
    swapped = np.stack([scene_lib.render(s)[0] for s in repainted])
    acc_plain = np.mean(_predict("synthetic_cnn", variables, plain) == labels)
    acc_empty = np.mean(_predict("synthetic_cnn", variables, empty) == labels)
    pred_swapped = _predict("synthetic_cnn", variables, swapped)
    assert acc_plain == pytest.approx(acc)
    assert acc_empty < 2 * CHANCE
    assert np.mean(pred_swapped == (labels + 1) % 8) > 3 * CHANCE
    assert np.mean(pred_swapped == labels) < 2 * CHANCE


def test_bad_backbone_for_the_data_is_explained():
    cfg = DataConfig(name="synthetic", train_size=4, val_size=500, test_size=4)
    with pytest.raises(ValueError, match="outputs but the data has"):
        classifier.train_classifier("resnet50", cfg, steps=1, progress=False)


SMOKE = {  # the recipes' smoke variant: 4 steps of 16 images on tiny data
    "classifier.cnn_steps": 4,
    "classifier.vit_steps": 4,
    "classifier.batch_size": 16,
    "data.train_size": 64,
    "data.val_size": 8,
    "data.test_size": 32,
}


@pytest.mark.slow  # the default suite covers get_or_train's ViT-from-CNN path in
# test_benchmark_pipeline.py::test_vit_backbone_starts_from_the_cnn_trained_first
def test_vit_config_trains_the_cnn_stem_first_then_reuses_it(tmp_path, capsys):
    config = configs.load("synthetic:test", SMOKE)
    assert config.classifier.vit_init_from == "cnn"
    vit_dir = tmp_path / "synthetic_vit"
    got = get_or_train(config, "synthetic_vit", str(vit_dir))
    for name in ("synthetic_cnn", "synthetic_vit"):  # the cnn goes into the sibling folder
        with open(tmp_path / name / f"{name}.json") as f:
            assert json.load(f)["backbone"] == name
    assert got["weights"] == str(vit_dir / "synthetic_vit.msgpack") and got["facts"]["steps"] == 4
    assert got["settings"]["init_from"]["weights"] == str(
        tmp_path / "synthetic_cnn" / "synthetic_cnn.msgpack"
    )
    cnn_weights = (tmp_path / "synthetic_cnn" / "synthetic_cnn.msgpack").read_bytes()
    vit_weights = (vit_dir / "synthetic_vit.msgpack").read_bytes()
    capsys.readouterr()
    loud = config.replace(benchmark=dataclasses.replace(config.benchmark, progress=True))
    again = get_or_train(loud, "synthetic_vit", str(vit_dir))
    out = capsys.readouterr().out
    assert "synthetic_cnn: reusing the trained backbone" in out
    assert "synthetic_vit: reusing the trained backbone" in out
    assert (tmp_path / "synthetic_cnn" / "synthetic_cnn.msgpack").read_bytes() == cnn_weights
    assert (vit_dir / "synthetic_vit.msgpack").read_bytes() == vit_weights
    assert again["accuracy"] == got["accuracy"]
    # A changed recipe is never silently reused.
    changed = configs.load("synthetic:test", {**SMOKE, "classifier.vit_steps": 5})
    with pytest.raises(ValueError, match="trained with other settings"):
        get_or_train(changed, "synthetic_vit", str(vit_dir))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_full_recipe_reaches_95_percent(kind, seed, tmp_path):
    # The recipes of config.classifier (its defaults) on the old recipe's data sizes.
    overrides = {"data.val_size": 500, "data.test_size": 1000, "benchmark.progress": False}
    config = configs.load("synthetic", {**overrides, "train.seed": seed})  # also a new data set
    assert config.classifier == ClassifierConfig()
    name = f"synthetic_{kind}"
    acc = get_or_train(config, name, str(tmp_path / name))["accuracy"]
    assert acc >= 0.95
