"""config.model.backbone_dtype="bfloat16": the backbone computes in bfloat16, the attention
mechanism and the loss in float32, and the maps rank pixels as the float32 maps do."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr

from ttame_jax.backbones import get_spec, load_pretrained
from ttame_jax.config import LossConfig, ModelConfig
from ttame_jax.core.explainer import Explainer, explain
from ttame_jax.core.model import build
from ttame_jax.core.precision import ComputeDtypeError

BF16 = ModelConfig(backbone_dtype="bfloat16")
MATMULS = ("conv_general_dilated", "dot_general")


def _matmul_dtypes(fn, *args) -> list[str]:
    """The input dtype of every convolution and dot product in ``fn``'s jaxpr (nested ones
    included), in program order."""
    out = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in MATMULS:
                out.append(str(eqn.invars[0].aval.dtype))
            for param in eqn.params.values():
                for sub in param if isinstance(param, tuple | list) else (param,):
                    inner = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return out


def _setup(name: str, size: int | None = None, batch: int = 3):
    """Random backbone and attention at ``size`` (default: the backbone's) and images."""
    spec = get_spec(name)
    if size is not None and size != spec.input_size:
        spec = dataclasses.replace(spec, input_size=size)
    x = jnp.asarray(
        np.random.default_rng(0).uniform(size=(batch, spec.input_size, spec.input_size, 3)),
        jnp.float32,
    )
    f32 = build(spec, ModelConfig())
    if spec.input_size == get_spec(name).input_size:
        bb = load_pretrained(name, "random")
    else:
        bb = jax.jit(f32.backbone.init)(jax.random.key(0), x[:1])
    attn = jax.jit(f32.init)(jax.random.key(1), bb, x[:1])
    return spec, f32, bb, attn, x


def test_bad_backbone_dtype_is_a_config_error():
    (msg,) = ModelConfig(backbone_dtype="float16").errors()
    assert "config.model.backbone_dtype must be one of ('float32', 'bfloat16')" in msg


def test_backbone_passes_run_in_bfloat16_attention_and_loss_in_float32():
    # Traced only (abstract arrays): nothing is compiled or run.
    spec = get_spec("synthetic_cnn")
    f32 = build(spec, ModelConfig())
    x = jax.ShapeDtypeStruct((2, spec.input_size, spec.input_size, 3), jnp.float32)
    bb = jax.eval_shape(lambda: load_pretrained("synthetic_cnn", "random"))
    attn = jax.eval_shape(f32.init, jax.random.key(1), bb, x)
    bf16 = build(spec, BF16)
    backbone = _matmul_dtypes(lambda v, x: f32.backbone.apply(v, x), bb, x)
    assert backbone and set(backbone) == {"float32"}

    def loss(model):
        return lambda p, s, v, x: model.loss_fn(p, s, v, x, LossConfig())[0]

    args = (attn["params"], attn["batch_stats"], bb, x)
    ours = _matmul_dtypes(loss(f32), *args)
    mixed = _matmul_dtypes(loss(bf16), *args)
    assert set(ours) == {"float32"}  # the default path has no bfloat16 at all
    assert len(mixed) == len(ours)
    # Exactly the clean and the masked backbone passes in bfloat16; the attention
    # mechanism's convolutions (and anything in the loss) in float32.
    assert mixed.count("bfloat16") == 2 * len(backbone)
    assert mixed.count("float32") == len(ours) - 2 * len(backbone) > 0
    # Shapes and dtypes only (nothing runs): the loss, its terms and the gradient are float32.
    value, (terms, _) = jax.eval_shape(lambda *a: bf16.loss_fn(*a, LossConfig()), *args)
    assert value.dtype == jnp.float32 and all(t.dtype == jnp.float32 for t in terms.values())
    grads = jax.eval_shape(jax.grad(loss(bf16)), *args)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}

    params = Explainer.from_model(bf16, bb, attn)
    explained = _matmul_dtypes(lambda p, x: explain(p, x).maps, params, x)
    assert explained.count("bfloat16") == len(backbone)


def _check_maps_agree(name: str, size: int | None = None):
    spec, f32, bb, attn, x = _setup(name, size)
    ref = explain(Explainer.from_model(f32, bb, attn), x)
    out = explain(Explainer.from_model(build(spec, BF16), bb, attn), x)
    assert out.maps.dtype == jnp.float32 and out.logits.dtype == jnp.float32
    # bfloat16 did run (the logits moved), by about bfloat16's precision only.
    diff = float(jnp.max(jnp.abs(out.logits - ref.logits)))
    assert 0 < diff < 0.05 * float(jnp.max(jnp.abs(ref.logits)))
    maps, ref_maps = np.asarray(out.maps), np.asarray(ref.maps)
    for i in range(len(x)):
        rho = spearmanr(maps[i].ravel(), ref_maps[i].ravel()).statistic
        assert rho >= 0.99, (name, i, rho)


def test_bf16_maps_rank_pixels_as_float32_maps_synthetic_cnn():
    _check_maps_agree("synthetic_cnn")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("resnet50", 64), ("vgg16", 64), ("vit_b_16", 224)])
def test_bf16_maps_rank_pixels_as_float32_maps(name, size):
    _check_maps_agree(name, size)


def test_a_backbone_that_ignores_the_dtype_is_refused():
    # synthetic_vit's encoder fixes dtype=float32 (vit.Encoder's default): it would run
    # mostly in float32, so the option is refused rather than silently half-applied.
    spec = get_spec("synthetic_vit")
    x = jnp.zeros((1, spec.input_size, spec.input_size, 3), jnp.float32)
    bb = jax.eval_shape(lambda: load_pretrained("synthetic_vit", "random"))
    with pytest.raises(ComputeDtypeError, match="computed its logits in float32"):
        jax.eval_shape(build(spec, BF16).init, jax.random.key(0), bb, x)


@pytest.mark.slow
def test_short_bf16_training_run(tmp_path):
    from ttame_jax import configs, rundir
    from ttame_jax.training.trainer import train_and_evaluate

    def run(dtype, workdir):
        overrides = {
            "backbone.name": "synthetic_cnn",
            "model.backbone_dtype": dtype,
            "data.train_size": 8,
            "train.epochs": 1,
            "train.steps_per_epoch": 3,
            "train.log_every": 1,
            "train.validate_every_epoch": False,
            "train.progress_bar": False,
            "train.max_lr": 0.05,
        }
        return train_and_evaluate(configs.load("resnet50:smoke", overrides), str(workdir))

    half = run("bfloat16", tmp_path / "bf16")
    full = run("float32", tmp_path / "f32")
    assert rundir.read_config(str(tmp_path / "bf16")).model.backbone_dtype == "bfloat16"
    assert int(half["state"].step) == 3 and np.isfinite(half["train"]["loss"])
    a, b = half["train"]["loss"], full["train"]["loss"]
    assert a != b and abs(a - b) < 0.05 * abs(b)  # bfloat16 ran, and trained alike
