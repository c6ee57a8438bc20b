"""The small synthetic backbones: registry entries, taps, modes, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ttame_jax import backbones
from ttame_jax.data import synthetic
from ttame_jax.training import classifier


@pytest.fixture(scope="module")
def models():
    out = {}
    for name in ("synthetic_cnn", "synthetic_vit"):
        module = backbones.create(name)
        variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
        out[name] = (module, variables)
    return out


def _x(n=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, 64, 64, 3)), jnp.float32)


@pytest.mark.parametrize("name, kind", [("synthetic_cnn", "cnn"), ("synthetic_vit", "vit")])
def test_registry_entries(name, kind):
    spec = backbones.get_spec(name)
    assert name in backbones.available()
    assert spec.kind == kind and spec.input_size == 64
    assert spec.num_classes == synthetic.NUM_CLASSES
    assert spec.class_names == synthetic.CLASS_NAMES
    assert spec.mean == synthetic.MEAN and spec.std == synthetic.STD
    assert len(spec.taps) == 3 and all(t in spec.tap_paths for t in spec.taps)


def test_cnn_taps_are_the_three_stages(models):
    module, variables = models["synthetic_cnn"]
    logits, feats = backbones.extract(module, variables, _x(), ("layer1", "layer2", "layer3"))
    assert logits.shape == (2, synthetic.NUM_CLASSES)
    assert feats["layer1"].shape == (2, 32, 32, 16)
    assert feats["layer2"].shape == (2, 16, 16, 32)
    assert feats["layer3"].shape == (2, 8, 8, 64)
    # layer3 ends in a ReLU; the logits are fc(global mean of layer3).
    assert float(feats["layer3"].min()) >= 0.0
    fc = variables["params"]["fc"]
    expected = feats["layer3"].mean(axis=(1, 2)) @ fc["kernel"] + fc["bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_vit_ln_tap_is_layernorm_of_the_block_input(models):
    module, variables = models["synthetic_vit"]
    taps = ("encoder.layers.encoder_layer_2", "encoder.layers.encoder_layer_3.ln")
    _, feats = backbones.extract(module, variables, _x(), taps)
    block_in, ln = feats[taps[0]], feats[taps[1]]
    assert block_in.shape == ln.shape == (2, 1 + 8 * 8, 64)
    # ln_1 of block 3 applied to block 2's output, written out (eps 1e-6).
    p = variables["params"]["encoder"]["layers"]["encoder_layer_3"]["ln_1"]
    mu = block_in.mean(-1, keepdims=True)
    var = ((block_in - mu) ** 2).mean(-1, keepdims=True)
    expected = (block_in - mu) / jnp.sqrt(var + 1e-6) * p["scale"] + p["bias"]
    np.testing.assert_allclose(ln, expected, rtol=1e-4, atol=1e-4)
    default = backbones.get_spec("synthetic_vit").taps
    assert default == tuple(f"encoder.layers.encoder_layer_{k}.ln" for k in (1, 2, 3))


def test_cnn_eval_mode_uses_running_statistics(models):
    module, variables = models["synthetic_cnn"]
    x = _x(4)
    apply = jax.jit(module.apply, static_argnames=("train", "mutable"))
    # Eval: each image's logits are independent of the rest of the batch.
    np.testing.assert_allclose(
        apply(variables, x)[:1], apply(variables, x[:1]), rtol=1e-5, atol=1e-5
    )
    # Train: batch statistics are used and every running mean/var is updated.
    _, updates = apply(variables, x, train=True, mutable=("batch_stats",))
    old = jax.tree.leaves(variables["batch_stats"])
    new = jax.tree.leaves(updates["batch_stats"])
    assert len(old) == len(new) > 0
    assert not any(np.allclose(a, b) for a, b in zip(old, new, strict=True) if a.ndim)


@pytest.mark.parametrize("name", ["synthetic_cnn", "synthetic_vit"])
def test_wrong_input_is_explained(models, name):
    module, variables = models[name]
    with pytest.raises(ValueError, match="64x64"):
        module.apply(variables, jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="NCHW"):
        module.apply(variables, jnp.zeros((1, 3, 64, 64)))


def test_hybrid_vit_stem_is_the_cnn_stem(models):
    cnn, cnn_vars = models["synthetic_cnn"]
    vit, vit_vars = models["synthetic_vit"]
    stem = ("conv1", "bn1", "layer1", "layer2", "layer3")
    for col in ("params", "batch_stats"):
        for name in stem:
            if name in cnn_vars[col]:
                assert jax.tree.map(jnp.shape, vit_vars[col][name]) == jax.tree.map(
                    jnp.shape, cnn_vars[col][name]
                )
    # Started from the CNN, the ViT's patch embedding reads the CNN's layer3 features.
    started = classifier.transplant(vit_vars, cnn_vars)
    _, f_cnn = backbones.extract(cnn, cnn_vars, _x(), ("layer3",))
    _, f_vit = backbones.extract(vit, started, _x(), ("conv_proj",))
    p = started["params"]["conv_proj"]
    expected = jnp.einsum("bhwc,cd->bhwd", f_cnn["layer3"], p["kernel"][0, 0]) + p["bias"]
    np.testing.assert_allclose(f_vit["conv_proj"], expected, rtol=1e-4, atol=1e-4)
    # The modules the CNN lacks keep their own initialisation.
    for name in ("conv_proj", "encoder", "heads_head", "class_token"):
        assert jax.tree.all(
            jax.tree.map(np.array_equal, started["params"][name], vit_vars["params"][name])
        )


def test_transplant_refuses_unrelated_or_misshaped_variables(models):
    _, vit_vars = models["synthetic_vit"]
    with pytest.raises(ValueError, match="shares no module"):
        classifier.transplant(vit_vars, {"params": {"fc": {}}})
    bad = {"params": {"conv1": {"kernel": jnp.zeros((3, 3, 3, 8))}}}
    with pytest.raises(ValueError, match="params/conv1.*other shapes"):
        classifier.transplant(vit_vars, bad)
