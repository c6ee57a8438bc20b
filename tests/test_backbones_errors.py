"""Every user-facing error of ttame_jax.backbones says what is wrong and how to fix it."""

import jax
import jax.numpy as jnp
import pytest

from ttame_jax.backbones import (
    convert_timm,
    convert_torchvision,
    create,
    extract,
    get_spec,
    load_pretrained,
)

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def trace(name, shape):
    """Traces init only (no compute): input checks run at trace time."""
    return jax.eval_shape(create(name).init, jax.random.key(0), jnp.zeros(shape))


@pytest.fixture(scope="module")
def resnet_sd():
    torch.manual_seed(0)
    return {k: v.numpy() for k, v in torchvision.models.resnet50(weights=None).state_dict().items()}


def test_unknown_backbone_lists_known_names():
    for call in (
        lambda: create("vgg17"),
        lambda: get_spec("vgg17"),
        lambda: convert_torchvision("vgg17", {}),
        lambda: load_pretrained("vgg17", "random"),
    ):
        with pytest.raises(ValueError, match="unknown backbone 'vgg17'") as e:
            call()
        assert all(n in str(e.value) for n in ("vgg16", "resnet50", "vit_b_16"))


def test_unknown_tap_lists_valid_names():
    # Names are resolved before anything runs, so no variables are needed.
    with pytest.raises(ValueError, match=r"unknown tap\(s\) \['layer5'\]") as e:
        extract(create("resnet50"), None, jnp.zeros((1, 224, 224, 3)), ["layer2", "layer5"])
    assert "layer4" in str(e.value) and "avgpool" in str(e.value)
    with pytest.raises(ValueError, match="encoder.layers.encoder_layer_11.ln"):
        extract(create("vit_b_16"), None, jnp.zeros((1, 224, 224, 3)), ["encoder_layer_11"])


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "vit_b_16"])
def test_wrong_rank(name):
    with pytest.raises(ValueError, match=r"4-D NHWC.*x\[None\]"):
        trace(name, (224, 224, 3))


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "vit_b_16"])
def test_nchw_input_gets_a_transpose_hint(name):
    with pytest.raises(ValueError, match=r"NCHW.*transpose\(0, 2, 3, 1\)"):
        trace(name, (1, 3, 224, 224))


def test_vit_needs_exactly_224():
    with pytest.raises(ValueError, match="224x224 images, got 192x192"):
        trace("vit_b_16", (1, 192, 192, 3))


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_cnns_take_other_sizes_but_not_tiny_ones(name):
    assert trace(name, (1, 160, 192, 3))  # like torchvision: any size >= 32 works
    with pytest.raises(ValueError, match="at least 32x32"):
        trace(name, (1, 16, 16, 3))


def test_checkpoint_problems_are_all_listed_in_one_error(resnet_sd):
    sd = dict(resnet_sd)
    del sd["layer3.2.bn1.running_var"]
    sd["layer5.0.conv1.weight"] = sd["layer4.0.conv1.weight"]
    sd["fc.weight"] = sd["fc.weight"][:10]
    with pytest.raises(ValueError) as e:
        convert_torchvision("resnet50", sd)
    msg = str(e.value)
    assert "1 missing: layer3.2.bn1.running_var" in msg
    assert "1 unexpected: layer5.0.conv1.weight" in msg
    assert (
        "fc.weight: checkpoint shape (10, 2048) does not fit params/fc/kernel (2048, 1000)" in msg
    )


def test_timm_checkpoint_given_to_torchvision_converter_gets_a_hint():
    sd = {k: v.numpy() for k, v in torchvision.models.vit_b_16(weights=None).state_dict().items()}
    with pytest.raises(ValueError, match=r"use convert_torchvision\('vit_b_16'"):
        convert_timm("vit_b_16", sd)


def test_missing_weights_file_names_file_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        load_pretrained("vgg16")
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    with pytest.raises(FileNotFoundError, match="not found: .*nothere.pth"):
        load_pretrained("resnet50", tmp_path / "nothere.pth")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.pth, \.pt, \.bin or \.safetensors"):
        convert_torchvision("resnet50", path)


def test_pth_without_torch_says_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(ImportError, match=r"needs PyTorch .*safetensors"):
        convert_torchvision("resnet50", path)
