"""Test-wide settings: float32 matmuls at full precision for parity tests."""

import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="module")
def cached_load_pretrained():
    """Memoises ``backbones.load_pretrained`` for one test module.

    Tests that build several runs on the same random backbone then initialise it once
    instead of re-running the (compiled) random init for every run.
    """
    from ttame_jax import backbones

    patch = pytest.MonkeyPatch()
    patch.setattr(backbones, "load_pretrained", functools.cache(backbones.load_pretrained))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Workdir of T-TAME trained 2 steps on synthetic data (random synthetic_cnn backbone);
    shared by the CLI tests."""
    from ttame_jax import configs
    from ttame_jax.training.trainer import train_and_evaluate

    config = configs.load(
        "resnet50:smoke",
        {
            "backbone.name": "synthetic_cnn",
            "train.epochs": 1,
            "train.progress_bar": False,
            "train.validate_every_epoch": False,
        },
    )
    workdir = str(tmp_path_factory.mktemp("tiny_run"))
    train_and_evaluate(config, workdir)
    return workdir
