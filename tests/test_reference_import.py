"""Importing the reference implementation's PyTorch Lightning checkpoints.

Each test writes a ``.ckpt`` laid out like the reference's (a Lightning dict whose
``state_dict`` holds ``generic.body.*`` from torchvision's ``create_feature_extractor``,
``generic.attn_mech.*`` and the duplicate ``generic.arrangement.body.*``), with random
weights and BatchNorm statistics, imports it and compares ``ttame_jax.load`` +
``explain`` with maps computed the reference's way in PyTorch on the same weights.
"""

import argparse
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import ttame_jax
from ttame_jax.cli import import_reference as cli
from ttame_jax.core.adapter import adapt
from ttame_jax.interop.reference import ReferenceCheckpointError, import_reference
from ttame_jax.rundir import read_config

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
LAYERS = {
    "resnet50": ["layer2", "layer3", "layer4"],
    "vgg16": ["features.16", "features.23", "features.30"],
    "vit_b_16": [f"encoder.layers.encoder_layer_{k}.ln" for k in (9, 10, 11)],
}
TOL = 1e-4


# ---------------------------------------------------------------- the reference, in torch


class Attention(nn.Module):
    """Feature branches (1x1 conv, BN, skip, ReLU, resize) and the 1x1 fusion conv."""

    def __init__(self, channels, size, num_classes=1000):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 1) for c in channels)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        self.fuser = nn.Conv2d(sum(channels), num_classes, 1)
        self.size = size

    def forward(self, feats):
        out = []
        for conv, bn, f in zip(self.convs, self.bns, feats, strict=True):
            y = F.relu(bn(conv(f)) + f)
            out.append(F.interpolate(y, size=(self.size, self.size), mode="bilinear"))
        return self.fuser(torch.cat(out, 1))


class TokenAdapter(nn.Module):
    """ViT tokens (B, 1 + N, D) -> (B, D, √N, √N), optionally times the class token."""

    def __init__(self, product):
        super().__init__()
        self.product = product

    def forward(self, seqs):
        out = []
        for s in seqs:
            b, n, d = s[:, 1:].shape
            side = int(round(n**0.5))
            p = s[:, 1:].reshape(b, side, side, d).permute(0, 3, 1, 2)
            out.append(p * s[:, 0, :, None, None] if self.product else p)
        return out


class Arrangement(nn.Module):  # holds the body a second time, as the reference's does
    def __init__(self, body):
        super().__init__()
        self.body = body


class Generic(nn.Module):
    def __init__(self, name, tv_model, product=False):
        super().__init__()
        layers = LAYERS[name]
        self.output = get_graph_node_names(tv_model)[1][-1]
        self.body = create_feature_extractor(tv_model, return_nodes=[*layers, self.output])
        self.body.eval()
        with torch.no_grad():
            feats = self.body(torch.zeros(1, 3, 224, 224))
        feats.pop(self.output)
        if name == "vit_b_16":
            channels = [f.shape[-1] for f in feats.values()]
            attn = Attention(channels, 14)
            self.attn_mech = nn.Sequential(TokenAdapter(product), attn)
        else:
            channels = [f.shape[1] for f in feats.values()]
            size = min(next(iter(feats.values())).shape[2], 56)
            self.attn_mech = Attention(channels, size)
        self.arrangement = Arrangement(self.body)

    @torch.no_grad()
    def maps(self, x01, target):
        """The reference's inference: normalise, body, attention, pick, min-max, resize."""
        self.eval()
        feats = self.body((x01 - MEAN) / STD)
        logits = feats.pop(self.output)
        c = self.attn_mech(list(feats.values()))
        c = c[torch.arange(c.shape[0]), target].unsqueeze(1)
        lo = c.amin(dim=(1, 2, 3), keepdim=True)
        hi = c.amax(dim=(1, 2, 3), keepdim=True)
        c = (c - lo) / (hi - lo + 1e-10)
        maps = F.interpolate(c, size=x01.shape[-2:], mode="bilinear", align_corners=False)
        return maps[:, 0].numpy(), logits.numpy()


class AttributeDict(dict):
    """Like Lightning's: a class outside torch's weights_only allow-list."""


def _randomise(module, gen):
    """Random BN affine and running statistics (the reference's drifted ones)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=gen)
            m.bias.data = 0.1 * torch.randn(c, generator=gen)
            m.running_mean = 0.2 * torch.randn(c, generator=gen)
            m.running_var = 0.5 + torch.rand(c, generator=gen)


def _calibrate_backbone_bn(tv_model, gen):
    """Running statistics from a train-mode pass: keeps a random deep CNN's scale sane."""
    bns = [m for m in tv_model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass sets the batch statistics
    tv_model.train()
    with torch.no_grad():
        tv_model(torch.randn(4, 3, 224, 224, generator=gen))
    tv_model.eval()
    for m in bns:  # and then a little drift
        m.running_mean += 0.05 * torch.randn(m.num_features, generator=gen)
        m.running_var *= 1 + 0.2 * torch.rand(m.num_features, generator=gen)


def make_reference(name, seed=0, product=False):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tv_model = getattr(torchvision.models, name)(weights=None).eval()
    if name == "vit_b_16":
        with torch.no_grad():  # torchvision zero-initialises both
            tv_model.class_token.normal_(0, 1, generator=gen)
            tv_model.heads.head.weight.normal_(0, 0.05, generator=gen)
    else:
        _calibrate_backbone_bn(tv_model, gen)
    generic = Generic(name, tv_model, product)
    _randomise(generic.attn_mech, gen)
    return generic


def save_ckpt(path, generic, name, version="TTAME", extra_sd=None):
    lit = nn.Module()
    lit.generic = generic
    sd = {**lit.state_dict(), **(extra_sd or {})}
    ckpt = {
        "epoch": 7,
        "global_step": 320296,
        "pytorch-lightning_version": "2.1.0",
        "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}}},
        "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_path": "x.ckpt"}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-7, "momentum": 0.9}]}],
        "lr_schedulers": [{"total_steps": 320296}],
        "hparams_name": "kwargs",
        "hyper_parameters": AttributeDict(
            model_name=name,
            layers=LAYERS[name],
            epochs=8,
            attention_version=version,
            masking="random",
            train_method="raw_normalize" if name != "vit_b_16" else "new",
            lr=0.001,
            num_classes=1000,
        ),
    }
    torch.save(ckpt, path)
    return path


def _images(n=2, seed=1):
    return torch.rand(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def _compare(workdir, generic, target=(3, 7)):
    x = _images(len(target))
    ref_maps, ref_logits = generic.maps(x, torch.tensor(target))
    params = ttame_jax.load(workdir)
    out = ttame_jax.explain(
        params, jnp.asarray(x.permute(0, 2, 3, 1).numpy()), target=np.array(target)
    )
    maps, logits = np.asarray(out.maps), np.asarray(out.logits)
    scale = np.abs(ref_logits).max()
    np.testing.assert_allclose(logits / scale, ref_logits / scale, atol=TOL)
    np.testing.assert_allclose(maps, ref_maps, atol=TOL)
    return float(np.abs(maps - ref_maps).max())


# ------------------------------------------------------------------------------ tests


def test_class_token_product_adapter():
    tokens = np.random.default_rng(0).normal(size=(2, 1 + 9, 4)).astype(np.float32)
    want = tokens[:, 1:].reshape(2, 3, 3, 4) * tokens[:, :1, None, :]
    got = adapt(jnp.asarray(tokens), "vit", vit_adapter="class-token-product")
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    drop = adapt(jnp.asarray(tokens), "vit")
    np.testing.assert_array_equal(np.asarray(drop), tokens[:, 1:].reshape(2, 3, 3, 4))
    with pytest.raises(ValueError, match="vit_adapter"):
        adapt(jnp.asarray(tokens), "vit", vit_adapter="mean")


def test_resnet50_checkpoint_backbone_via_cli(tmp_path):
    """CNN end to end through the CLI: backbone and drifted BN statistics from the .ckpt."""
    generic = make_reference("resnet50")
    ckpt = save_ckpt(tmp_path / "resnet50_TTAME.ckpt", generic, "resnet50")
    workdir = str(tmp_path / "run")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    argv = [str(ckpt), "--backbone", "resnet50", "--workdir", workdir,
            "--backbone-weights=checkpoint"]  # fmt: skip
    assert cli.run(parser.parse_args(argv), argv) == 0

    config = read_config(workdir)
    assert config.backbone.weights == os.path.join(workdir, "backbone_from_reference.msgpack")
    assert os.path.isabs(config.backbone.weights)
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["320296"]
    record = json.loads((tmp_path / "run" / "reference_import.json").read_text())
    assert record["source"]["path"] == str(ckpt)
    assert len(record["source"]["sha256"]) == 64
    assert record["hyper_parameters"]["layers"] == LAYERS["resnet50"]
    deviation = _compare(workdir, generic)
    print(f"resnet50 max map deviation {deviation:.2e}")


@pytest.mark.slow  # the default run covers the ViT with test_vit_adapter_override_...
@pytest.mark.parametrize("product", [False, True], ids=["drop-class-token", "class-token-product"])
def test_vit_both_adapters(tmp_path, product):
    generic = make_reference("vit_b_16", seed=2, product=product)
    version = "TTAME" if product else "TAME"
    ckpt = save_ckpt(tmp_path / "vit.ckpt", generic, "vit_b_16", version=version)
    workdir = import_reference(ckpt, "vit_b_16", tmp_path / "run", backbone_weights="checkpoint")
    adapter = "class-token-product" if product else "drop-class-token"
    assert read_config(workdir).model.vit_adapter == adapter
    deviation = _compare(workdir, generic, target=(5, 11))
    print(f"vit_b_16 {adapter} max map deviation {deviation:.2e}")


def test_vit_adapter_override_and_torchvision_file(tmp_path):
    """ViT end to end: an explicit adapter wins (with a warning); PATH takes a torchvision
    weights file. The checkpoint says TAME, the attention was trained class-token-product."""
    generic = make_reference("vit_b_16", seed=3, product=True)
    ckpt = save_ckpt(tmp_path / "vit.ckpt", generic, "vit_b_16", version="TAME")
    body = {k: v for k, v in generic.body.state_dict().items()}
    torch.save(body, tmp_path / "vit_b_16.pth")
    with pytest.warns(UserWarning, match="drop-class-token"):
        workdir = import_reference(
            ckpt, "vit_b_16", tmp_path / "run",
            backbone_weights=tmp_path / "vit_b_16.pth", vit_adapter="class-token-product",
        )  # fmt: skip
    config = read_config(workdir)
    assert config.backbone.weights == str(tmp_path / "vit_b_16.pth")
    assert config.model.vit_adapter == "class-token-product"
    deviation = _compare(workdir, generic, target=(1, 2))
    print(f"vit_b_16 class-token-product (torchvision file) max map deviation {deviation:.2e}")


@pytest.mark.slow
def test_vgg16_checkpoint_backbone(tmp_path):
    generic = make_reference("vgg16", seed=4)
    ckpt = save_ckpt(tmp_path / "vgg16.ckpt", generic, "vgg16")
    workdir = import_reference(ckpt, "vgg16", tmp_path / "run", backbone_weights="checkpoint")
    deviation = _compare(workdir, generic)
    print(f"vgg16 max map deviation {deviation:.2e}")


# ------------------------------------------------------------------------------ errors


def _small_ckpt(path, state_dict, **hparams):
    torch.save(
        {
            "epoch": 0,
            "global_step": 1,
            "pytorch-lightning_version": "2.1.0",
            "state_dict": state_dict,
            "hyper_parameters": hparams,
        },
        path,
    )
    return path


def _cnn_attention_sd(channels, prefix="generic.attn_mech."):
    sd = {}
    for i, c in enumerate(channels):
        sd[f"{prefix}convs.{i}.weight"] = torch.zeros(c, c, 1, 1)
        sd[f"{prefix}convs.{i}.bias"] = torch.zeros(c)
        for p in ("weight", "bias", "running_mean", "running_var"):
            sd[f"{prefix}bns.{i}.{p}"] = torch.zeros(c)
        sd[f"{prefix}bns.{i}.num_batches_tracked"] = torch.tensor(5)
    sd[f"{prefix}fuser.weight"] = torch.zeros(1000, sum(channels), 1, 1)
    sd[f"{prefix}fuser.bias"] = torch.zeros(1000)
    return sd


def test_error_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        import_reference(tmp_path / "nope.ckpt", "resnet50", tmp_path / "run")


def test_error_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("hello")
    with pytest.raises(ReferenceCheckpointError, match="notes.ckpt.*not a PyTorch checkpoint"):
        import_reference(path, "resnet50", tmp_path / "run")


def test_error_plain_state_dict(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(1000)}, path)
    with pytest.raises(ReferenceCheckpointError, match="not a PyTorch Lightning.*plain state"):
        import_reference(path, "resnet50", tmp_path / "run")


def test_error_other_layout(tmp_path):
    """A Lightning checkpoint of another module (e.g. an L-CAM or TAttention one)."""
    sd = {"model.features.0.weight": torch.zeros(2), "model.attn.proj.weight": torch.zeros(2)}
    path = _small_ckpt(tmp_path / "lcam.ckpt", sd)
    with pytest.raises(ReferenceCheckpointError) as err:
        import_reference(path, "resnet50", tmp_path / "run")
    msg = str(err.value)
    assert "lcam.ckpt" in msg and "generic.attn_mech" in msg and "model.features" in msg


def test_error_cnn_checkpoint_for_vit(tmp_path):
    path = _small_ckpt(tmp_path / "cnn.ckpt", _cnn_attention_sd([512, 1024, 2048]))
    with pytest.raises(ReferenceCheckpointError, match=r"cnn.ckpt.*attn_mech\.1\..*CNN checkpoint"):
        import_reference(path, "vit_b_16", tmp_path / "run")


def test_error_model_name_mismatch(tmp_path):
    path = _small_ckpt(tmp_path / "v.ckpt", _cnn_attention_sd([256, 512, 512]), model_name="vgg16")
    with pytest.raises(ReferenceCheckpointError, match="trained on 'vgg16'.*--backbone vgg16"):
        import_reference(path, "resnet50", tmp_path / "run")


def test_error_channel_mismatch(tmp_path):
    """VGG-16 channel counts (no hyper-parameters) imported as ResNet-50."""
    path = _small_ckpt(tmp_path / "v.ckpt", _cnn_attention_sd([256, 512, 512]))
    with pytest.raises(ReferenceCheckpointError) as err:
        import_reference(path, "resnet50", tmp_path / "run")
    msg = str(err.value)
    assert "v.ckpt" in msg and "channels [512, 1024, 2048]" in msg
    assert "generic.attn_mech.convs.0.weight: checkpoint shape (256, 256, 1, 1)" in msg
    assert not (tmp_path / "run").exists()


def test_error_unsupported_attention_version(tmp_path):
    sd = _cnn_attention_sd([512, 1024, 2048])
    path = _small_ckpt(tmp_path / "a.ckpt", sd, attention_version="TAttentionV1")
    with pytest.raises(ReferenceCheckpointError, match="TAttentionV1"):
        import_reference(path, "resnet50", tmp_path / "run")


def test_error_unknown_layer(tmp_path):
    sd = _cnn_attention_sd([512, 1024, 2048])
    path = _small_ckpt(tmp_path / "a.ckpt", sd, layers=["layer2", "layer3.1.add"])
    with pytest.raises(ReferenceCheckpointError, match="layer3.1.add"):
        import_reference(path, "resnet50", tmp_path / "run")


def test_error_vit_checkpoint_for_cnn(tmp_path):
    sd = _cnn_attention_sd([768] * 3, prefix="generic.attn_mech.1.")
    path = _small_ckpt(tmp_path / "vit.ckpt", sd)
    with pytest.raises(ReferenceCheckpointError, match=r"vit.ckpt.*vit_b_16 checkpoint"):
        import_reference(path, "resnet50", tmp_path / "run")


def test_error_no_backbone_in_checkpoint(tmp_path):
    path = _small_ckpt(tmp_path / "a.ckpt", _cnn_attention_sd([512, 1024, 2048]))
    with pytest.raises(ReferenceCheckpointError, match=r"a.ckpt has no generic.body"):
        import_reference(path, "resnet50", tmp_path / "run", backbone_weights="checkpoint")
