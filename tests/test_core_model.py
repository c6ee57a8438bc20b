"""T-TAME on tiny test backbones: init, forward, loss_fn, explain (also under jit), load."""

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ttame_jax.backbones.registry import BackboneSpec, register
from ttame_jax.config import LossConfig, ModelConfig, from_dict
from ttame_jax.core.explainer import Explainer, explain, load
from ttame_jax.core.loss import ttame_loss
from ttame_jax.core.masking import mask_images
from ttame_jax.core.model import build

K = 5
S = 16  # input size
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


class _Stage(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (3, 3), strides=2, padding=1)(x)
        return nn.relu(nn.BatchNorm(use_running_average=True)(x))


class TinyCNN(nn.Module):
    """16x16 -> layer1 8x8x4 -> layer2 4x4x6 -> layer3 2x2x8 -> K logits (eval-mode BN)."""

    tap_paths: ClassVar[dict] = {f"layer{i}": (f"layer{i}",) for i in (1, 2, 3)}

    @nn.compact
    def __call__(self, x):
        x = _Stage(4, name="layer1")(x)
        x = _Stage(6, name="layer2")(x)
        x = _Stage(8, name="layer3")(x)
        return nn.Dense(K)(x.mean(axis=(1, 2)))


class TinyViT(nn.Module):
    """16x16, patch 4 -> 1 + 16 tokens of width 8; taps are the blocks' LayerNorms."""

    tap_paths: ClassVar[dict] = {
        f"encoder.layers.encoder_layer_{i}.ln": (f"encoder_layer_{i}", "ln_1") for i in range(2)
    }

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (4, 4), strides=4)(x)
        b = x.shape[0]
        x = x.reshape(b, -1, 8)
        cls = self.param("cls", nn.initializers.normal(1.0), (1, 1, 8))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, 8)), x], axis=1)
        for i in range(2):
            x = x + _Block(name=f"encoder_layer_{i}")(x)
        return nn.Dense(K)(x[:, 0])


class _Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(8)(nn.gelu(nn.LayerNorm(name="ln_1")(x)))


CNN = BackboneSpec("tiny_cnn_core_test", "cnn", TinyCNN, S, K, MEAN, STD, ("layer1", "layer2"))
VIT = BackboneSpec("tiny_vit_core_test", "vit", TinyViT, S, K, MEAN, STD, tuple(TinyViT.tap_paths))


def _images(b=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(b, S, S, 3)).astype(np.float32))


def _setup(spec, model_cfg=None, seed=0):
    model = build(spec, model_cfg)
    x = _images()
    backbone_vars = jax.jit(model.backbone.init)(jax.random.key(seed), x)
    # Non-trivial running statistics, so that train-mode BN would change the output.
    backbone_vars = jax.tree.map(lambda a: a + 0.1, backbone_vars)
    attn_vars = jax.jit(model.init)(jax.random.key(seed + 1), backbone_vars, x)
    return model, backbone_vars, attn_vars, x


@pytest.fixture(scope="module")
def cnn():
    return _setup(CNN)


def test_build_checks_taps():
    with pytest.raises(ValueError, match="valid tap names"):
        build(CNN, ModelConfig(taps=("layer9",)))
    assert build(CNN, ModelConfig(taps=("layer3",))).taps == ("layer3",)
    # config.model is a typed ModelConfig: a dict is refused, bad values raise at build.
    with pytest.raises(TypeError, match="ModelConfig"):
        build(CNN, {"taps": ("layer3",)})
    with pytest.raises(ValueError, match="branch_act"):
        build(CNN, ModelConfig(branch_act="tanh"))
    with pytest.raises(ValueError, match="fusion_init must be one of"):
        build(CNN, ModelConfig(fusion_init="ones"))
    assert build(CNN).attention.fusion_init == "torch"  # the paper's / reference's init
    assert build(CNN, ModelConfig(fusion_init="zeros")).attention.fusion_init == "zeros"
    assert hash(build(CNN)) == hash(build(CNN))  # static: usable as a jit static argument


def test_forward_shapes_and_logits(cnn):
    model, bvars, avars, x = cnn
    c, logits = jax.jit(model.forward)(avars, bvars, x)
    assert c.shape == (3, 8, 8, K)  # largest tap layer1 is 8x8
    xn = (x - jnp.asarray(MEAN)) / jnp.asarray(STD)
    np.testing.assert_allclose(logits, TinyCNN().apply(bvars, xn), rtol=1e-5, atol=1e-6)


def test_vit_forward_uses_adapted_tokens():
    model, bvars, avars, x = _setup(VIT)
    c, _ = jax.jit(model.forward)(avars, bvars, x)
    assert c.shape == (3, 4, 4, K)
    assert model.masking == "vit"
    loss_fn = jax.jit(model.loss_fn, static_argnums=4)
    loss, _ = loss_fn(avars["params"], avars["batch_stats"], bvars, x, LossConfig())
    assert np.isfinite(float(loss))


@pytest.mark.parametrize("selection", ["auto", "own"])
def test_loss_fn_equals_pieces_with_b_by_b_psi(cnn, selection):
    # Without BatchNorm the train and eval passes agree, so the loss can be rebuilt from the
    # full eval-mode c by NumPy indexing: Ψ[i, ..., j] = A[i, ..., y_j] (psi_selection
    # "auto", reference variant) or A[i, ..., y_i] ("own"); mask = A[i, ..., y_i].
    _, _, _, x = cnn
    model = build(CNN, ModelConfig(skip=False, batchnorm=False))
    bvars = jax.jit(model.backbone.init)(jax.random.key(1), x)  # predicts 2 classes on x
    avars = jax.jit(model.init)(jax.random.key(3), bvars, x)
    cfg = LossConfig(psi_selection=selection)
    loss, (terms, new_bs) = jax.jit(model.loss_fn, static_argnums=4)(
        avars["params"], avars["batch_stats"], bvars, x, cfg
    )
    assert new_bs == {}
    c, logits = jax.jit(model.forward)(avars, bvars, x)
    a = np.asarray(jax.nn.sigmoid(c))
    y = np.asarray(logits).argmax(-1)
    assert len(set(y.tolist())) > 1  # else both selections would coincide
    slots = [y if selection == "auto" else np.full(3, y[i]) for i in range(3)]
    psi = np.stack([a[i][..., slots[i]] for i in range(3)])  # (B, H_e, W_e, B)
    mask = np.stack([a[i, ..., y[i]] for i in range(3)])
    xm = mask_images(x, jnp.asarray(mask), "cnn", MEAN, STD)
    want, want_terms = ttame_loss(TinyCNN().apply(bvars, xm), jnp.asarray(y), jnp.asarray(psi), cfg)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
    for name in ("ce", "area", "tv"):
        np.testing.assert_allclose(float(terms[name]), float(want_terms[name]), rtol=1e-5)
    np.testing.assert_allclose(float(terms["mask_mean"]), mask.mean(), rtol=1e-5)


def test_loss_fn_gradients_and_batch_stats(cnn):
    model, bvars, avars, x = cnn

    def f(params, backbone_vars):
        return model.loss_fn(params, avars["batch_stats"], backbone_vars, x, LossConfig())

    (loss, (terms, new_bs)), (g_attn, g_backbone) = jax.jit(
        jax.value_and_grad(f, argnums=(0, 1), has_aux=True)
    )(avars["params"], bvars)
    total = terms["ce"] + terms["area"] + terms["tv"]
    np.testing.assert_allclose(float(total), float(loss), rtol=1e-6)
    assert all(np.abs(g).max() == 0 for g in jax.tree.leaves(g_backbone))
    assert np.abs(np.asarray(g_attn["fuser"]["kernel"])).max() > 0
    assert np.abs(np.asarray(g_attn["convs_0"]["kernel"])).max() > 0
    old = avars["batch_stats"]["bns_0"]["mean"]
    assert not np.allclose(new_bs["bns_0"]["mean"], old)  # train-mode attention BN


def test_loss_fn_paper_variant_needs_rng(cnn):
    model, bvars, avars, x = cnn
    cfg = LossConfig(variant="paper")
    loss_fn = jax.jit(model.loss_fn, static_argnums=4)
    with pytest.raises(ValueError, match="rng"):
        loss_fn(avars["params"], avars["batch_stats"], bvars, x, cfg)
    loss, _ = loss_fn(avars["params"], avars["batch_stats"], bvars, x, cfg, rng=jax.random.key(0))
    assert np.isfinite(float(loss))


# ---------------------------------------------------------------- explain


@pytest.fixture(scope="module")
def explainer(cnn):
    model, bvars, avars, _ = cnn
    return Explainer.from_model(model, bvars, avars)


def _torch_up(m):
    t = torch.from_numpy(np.asarray(m))[:, None]
    return F.interpolate(t, size=(S, S), mode="bilinear", align_corners=False)[:, 0].numpy()


def test_explain_top1_maps(explainer, cnn):
    model, bvars, avars, x = cnn
    out = explain(explainer, x)
    c, logits = jax.jit(model.forward)(avars, bvars, x)
    top1 = np.asarray(logits).argmax(-1)
    np.testing.assert_array_equal(out.target, top1)
    np.testing.assert_allclose(out.logits, logits, rtol=1e-5, atol=1e-6)
    assert out.maps.shape == (3, S, S)
    maps = np.asarray(out.maps)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    # min-max of the pre-sigmoid c at feature resolution, then torch-style upsampling.
    sel = np.stack([np.asarray(c)[i, ..., top1[i]] for i in range(3)])
    lo, hi = sel.min((1, 2), keepdims=True), sel.max((1, 2), keepdims=True)
    np.testing.assert_allclose(maps, _torch_up((sel - lo) / (hi - lo + 1e-10)), atol=1e-5)


def test_explain_under_jit_target_classes_all(explainer, cnn):
    x = cnn[3]
    jitted = jax.jit(explain, static_argnames="all_classes")
    eager = explain(explainer, x, target=jnp.array([4, 0, 2]))
    out = jitted(explainer, x, target=jnp.array([4, 0, 2]))
    np.testing.assert_allclose(out.maps, eager.maps, atol=1e-6)
    np.testing.assert_array_equal(out.target, [4, 0, 2])

    every = jitted(explainer, x, all_classes=True)
    assert every.maps.shape == (3, K, S, S) and every.target.shape == (3, K)
    for i, t in enumerate([4, 0, 2]):
        np.testing.assert_allclose(every.maps[i, t], out.maps[i], atol=1e-6)

    classes = jnp.array([[1, 3], [0, 0], [4, 2]])
    some = jitted(explainer, x, classes=classes)
    assert some.maps.shape == (3, 2, S, S)
    np.testing.assert_array_equal(some.target, classes)
    for i in range(3):
        for j in range(2):
            np.testing.assert_allclose(some.maps[i, j], every.maps[i, classes[i, j]], atol=1e-6)


@pytest.mark.parametrize(
    "x,kw,match",
    [
        (np.zeros((S, S, 3), np.float32), {}, "batch axis"),
        (np.zeros((1, 3, S, S), np.float32), {}, "NCHW"),
        (np.zeros((1, S, S, 3), np.uint8), {}, "255"),
        (np.full((1, S, S, 3), 255.0, np.float32), {}, "divide by 255"),
        (np.full((1, S, S, 3), -2.0, np.float32), {}, "do not normalise"),
        (np.zeros((1, S, S, 3), np.float32), {"target": [9]}, r"\[0, 5\)"),
        (np.zeros((1, S, S, 3), np.float32), {"target": [0, 1]}, "shape"),
        (np.zeros((1, S, S, 3), np.float32), {"target": [0], "all_classes": True}, "at most one"),
    ],
)
def test_explain_input_errors(explainer, x, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        explain(explainer, x, **kw)


def test_explain_refuses_nan_like_inf(explainer):
    x = np.zeros((2, S, S, 3), np.float32)
    x[1, 5, 6, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN .*image\(s\) \[1\]"):
        explain(explainer, x)
    x[1, 5, 6, 0] = np.inf
    with pytest.raises(ValueError):
        explain(explainer, x)


def test_wrong_size_nhwc_gets_no_nchw_hint(explainer):
    with pytest.raises(ValueError) as e:
        explain(explainer, np.zeros((1, S + 8, S + 8, 3), np.float32))
    assert "NCHW" not in str(e.value) and "eval_transform" in str(e.value)
    with pytest.raises(ValueError, match="NCHW"):
        explain(explainer, np.zeros((2, 3, S + 8, S + 8), np.float32))


def test_load_from_workdir(tmp_path, tmp_path_factory, cnn):
    from ttame_jax import rundir

    model, _, avars, x = cnn
    register(CNN)
    config = from_dict(
        ml_collections.ConfigDict(
            {
                "backbone": {"name": CNN.name, "weights": "random", "seed": 7},
                "model": {"taps": ["layer1", "layer2"], "skip": True},
            }
        )
    )
    rundir.write_config(str(tmp_path), config)
    manager = rundir.make_manager(str(tmp_path))
    state = _FakeState(step=3, params=avars["params"], batch_stats=avars["batch_stats"])
    rundir.save_state(manager, state, force=True)
    manager.wait_until_finished()
    manager.close()

    params = load(tmp_path / "checkpoints")  # the checkpoints/ subfolder works too
    assert params.spec == CNN and params.model_cfg.taps == ("layer1", "layer2")
    want_bvars = jax.jit(model.backbone.init)(jax.random.key(7), jnp.zeros((1, S, S, 3)))
    jax.tree.map(np.testing.assert_array_equal, params.backbone_vars, want_bvars)
    jax.tree.map(np.testing.assert_array_equal, params.attn_vars, avars)
    assert explain(params, x).maps.shape == (3, S, S)
    # Any path inside the workdir works: a step folder too.
    inner = load(tmp_path / "checkpoints" / "3")
    jax.tree.map(np.testing.assert_array_equal, inner.attn_vars, avars)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load(tmp_path_factory.mktemp("not_a_run"))


class _FakeState:
    """The fields of the trainer's TrainState that save_state reads."""

    def __init__(self, step, params, batch_stats):
        self.step, self.params, self.batch_stats = step, params, batch_stats
        self.opt_state = {"count": jnp.zeros((), jnp.int32)}


@pytest.mark.slow
@pytest.mark.parametrize("name,res", [("resnet50", 28), ("vit_b_16", 14)])
def test_real_backbone_loss_and_explain(name, res):
    from ttame_jax.backbones import load_pretrained

    model = build(name)
    bvars = load_pretrained(name, "random", seed=0)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 224, 224, 3)), jnp.float32)
    avars = jax.jit(model.init)(jax.random.key(0), bvars, x)
    loss, (terms, _) = jax.jit(model.loss_fn, static_argnums=4)(
        avars["params"], avars["batch_stats"], bvars, x, LossConfig()
    )
    assert np.isfinite(float(loss)) and set(terms) == {"loss", "ce", "area", "tv", "mask_mean"}
    params = Explainer.from_model(model, bvars, avars)
    out = jax.jit(explain)(params, x)
    assert out.maps.shape == (2, 224, 224) and out.logits.shape == (2, 1000)
    assert float(out.maps.min()) >= 0.0 and float(out.maps.max()) <= 1.0
    c, _ = jax.jit(model.forward)(avars, bvars, x)
    assert c.shape == (2, res, res, 1000)
