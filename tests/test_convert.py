"""Checkpoint reading (.pth, .safetensors, wrappers), the VGG row permutation and weights lookup."""

from typing import ClassVar

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from ttame_jax.backbones import (
    BackboneSpec,
    convert_torchvision,
    create,
    load_pretrained,
    registry,
    torch_hub_checkpoints_dir,
)
from ttame_jax.backbones.convert_tables import _fc_after_nchw_flatten

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def resnet_sd():
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).state_dict()


@pytest.fixture(scope="module")
def resnet_vars(resnet_sd):
    return convert_torchvision("resnet50", resnet_sd)


def assert_same_tree(a, b):
    fa, fb = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=str(k))


def test_layouts_by_hand(resnet_sd, resnet_vars):
    p, s = resnet_vars["params"], resnet_vars["batch_stats"]
    w = resnet_sd["layer2.0.conv2.weight"].numpy()  # (out, in, kh, kw)
    np.testing.assert_array_equal(p["layer2"]["0"]["conv2"]["kernel"], w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["fc"]["kernel"], resnet_sd["fc.weight"].numpy().T)
    np.testing.assert_array_equal(
        s["layer4"]["0"]["downsample_1"]["var"], resnet_sd["layer4.0.downsample.1.running_var"]
    )
    assert "num_batches_tracked" not in str(traverse_util.flatten_dict(resnet_vars).keys())


def test_vgg_classifier0_rows_follow_nhwc_flatten():
    """torch computes W @ f.flatten() over (C, H, W); ours is f_nhwc.flatten() @ K."""
    rng = np.random.default_rng(0)
    c, size, out = 3, 2, 5
    w = rng.normal(size=(out, c * size * size))
    f = rng.normal(size=(c, size, size))
    k = _fc_after_nchw_flatten(w, channels=c, size=size)
    np.testing.assert_allclose(f.transpose(1, 2, 0).reshape(-1) @ k, w @ f.reshape(-1))


def test_pth_and_safetensors_files_round_trip(tmp_path, resnet_sd, resnet_vars):
    from safetensors.torch import save_file

    torch.save(resnet_sd, tmp_path / "r.pth")
    save_file(dict(resnet_sd), tmp_path / "r.safetensors")
    assert_same_tree(convert_torchvision("resnet50", tmp_path / "r.pth"), resnet_vars)
    assert_same_tree(convert_torchvision("resnet50", str(tmp_path / "r.safetensors")), resnet_vars)


def test_wrapped_and_dataparallel_state_dicts(resnet_sd, resnet_vars):
    wrapped = {"state_dict": {f"module.{k}": v for k, v in resnet_sd.items()}, "epoch": 3}
    assert_same_tree(convert_torchvision("resnet50", wrapped), resnet_vars)


def test_other_num_classes_when_asked_for(resnet_sd):
    sd = dict(
        resnet_sd,
        **{"fc.weight": resnet_sd["fc.weight"][:10], "fc.bias": resnet_sd["fc.bias"][:10]},
    )
    variables = convert_torchvision("resnet50", sd, num_classes=10)
    assert variables["params"]["fc"]["kernel"].shape == (2048, 10)


def test_cache_dir_matches_torch_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert str(torch_hub_checkpoints_dir()) == str(
        tmp_path / "xdg" / "torch" / "hub" / "checkpoints"
    )
    assert torch_hub_checkpoints_dir().parent == type(torch_hub_checkpoints_dir())(
        torch.hub.get_dir()
    )
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert str(torch_hub_checkpoints_dir().parent) == torch.hub.get_dir()


def test_weights_found_in_torchvision_cache(tmp_path, monkeypatch, resnet_sd, resnet_vars):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(resnet_sd, folder / "resnet50-0676ba61.pth")
    assert_same_tree(load_pretrained("resnet50"), resnet_vars)


def test_timm_file_is_detected(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sd = timm.create_model("vit_base_patch16_224", pretrained=False).state_dict()
    save_file(sd, tmp_path / "vit.safetensors")
    p = load_pretrained("vit_b_16", tmp_path / "vit.safetensors")["params"]
    np.testing.assert_array_equal(p["encoder"]["pos_embedding"], sd["pos_embed"].numpy())


def test_deit_release_file_in_the_cache(tmp_path, monkeypatch, tiny_deit):
    """DeiT's release file (timm keys under "model") found by its name in torch hub's folder;
    DeiT-B's table at another size (the size arguments go to the table too)."""
    tm, _, variables, size = tiny_deit
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"model": tm.state_dict()}, folder / "deit_base_patch16_224-b5f2ef4d.pth")
    assert_same_tree(load_pretrained("deit_base_patch16_224", **size), variables)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="dl.fbaipublicfiles.com/deit/"):
        load_pretrained("deit_base_patch16_224")


def test_msgpack_round_trip_and_mismatch(tmp_path, resnet_vars):
    path = tmp_path / "r.msgpack"
    path.write_bytes(flax.serialization.to_bytes(resnet_vars))
    assert_same_tree(load_pretrained("resnet50", path), resnet_vars)

    flat = dict(traverse_util.flatten_dict(resnet_vars))
    del flat[("batch_stats", "bn1", "mean")]
    flat[("params", "fc", "kernel")] = flat[("params", "fc", "kernel")][:, :10]
    flat[("params", "extra", "kernel")] = np.zeros(3)
    path.write_bytes(flax.serialization.to_bytes(traverse_util.unflatten_dict(flat)))
    with pytest.raises(ValueError) as e:
        load_pretrained("resnet50", path)
    msg = str(e.value)
    assert "missing: batch_stats/bn1/mean" in msg and "unexpected: params/extra/kernel" in msg
    assert "params/fc/kernel: got (2048, 10), expected (2048, 1000)" in msg


class Tiny(nn.Module):
    """A one-conv backbone, so random init is tested without compiling a big model."""

    tap_paths: ClassVar[dict] = {"conv": ("conv",)}

    @nn.compact
    def __call__(self, x):
        return nn.Conv(4, (3, 3), name="conv")(x).mean((1, 2))


@pytest.mark.parametrize("name", ["tiny", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_random_init_is_seeded(name, monkeypatch):
    spec = BackboneSpec("tiny", "cnn", Tiny, 8, 4, (0.5,) * 3, (0.5,) * 3, ("conv",))
    monkeypatch.setitem(registry._REGISTRY, "tiny", spec)
    a = load_pretrained(name, "random", seed=1)
    b = load_pretrained(name, "random", seed=1)
    c = load_pretrained(name, "random", seed=2)
    assert_same_tree(a, b)
    leaf = ("params", "conv", "kernel") if name == "tiny" else ("params", "fc", "kernel")
    flat_a, flat_c = traverse_util.flatten_dict(a), traverse_util.flatten_dict(c)
    assert not np.array_equal(flat_a[leaf], flat_c[leaf])
    shapes = jax.tree.map(np.shape, a)
    assert shapes == jax.tree.map(
        lambda s: s.shape,
        jax.eval_shape(create(name).init, jax.random.key(0), jnp.zeros((1, 224, 224, 3))),
    )
