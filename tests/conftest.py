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


# Our ViT module at the size of a 2-block timm DeiT-Ti on 64 px images (8 px patches).
TINY_DEIT = dict(image_size=64, patch=8, hidden=192, depth=2, num_heads=3, mlp_dim=768)


@pytest.fixture(scope="session")
def tiny_deit():
    """``(timm model, our module, our variables, its size arguments)``: timm's
    ``deit_tiny_patch16_224`` built (random init, no download) with 2 blocks, 64 px input
    and 8 classes, converted by ``convert_timm`` with DeiT-B's table (the same layout at
    another size). Head and class token re-drawn (timm initialises them to zero)."""
    timm = pytest.importorskip("timm")
    import torch

    from ttame_jax.backbones import convert_timm, create

    torch.manual_seed(0)
    tm = timm.create_model(
        "deit_tiny_patch16_224", pretrained=False, img_size=64, patch_size=8, depth=2,
        num_classes=8,
    ).eval()  # fmt: skip
    with torch.no_grad():
        tm.head.weight.normal_(0.0, 0.2)
        tm.cls_token.normal_(0.0, 0.5)
    variables = convert_timm("deit_base_patch16_224", tm.state_dict(), num_classes=8, **TINY_DEIT)
    size = dict(num_classes=8, **TINY_DEIT)
    return tm, create("deit_base_patch16_224", **size), variables, size
