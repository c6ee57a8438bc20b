"""The attention mechanism: parameter shapes, Table 6 variants, BatchNorm, class selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax.traverse_util import flatten_dict

from ttame_jax.core.attention import AttentionMechanism

K = 3


def _taps(b=2, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(b, 4, 4, 2), (b, 2, 2, 3)]
    return [jnp.asarray(rng.normal(size=s).astype(np.float32)) for s in shapes]


def _shapes(tree):
    return {"/".join(k): v.shape for k, v in flatten_dict(tree).items()}


def test_parameter_shapes_follow_reference_names():
    variables = AttentionMechanism(K).init(jax.random.key(0), _taps())
    assert _shapes(variables["params"]) == {
        "convs_0/kernel": (1, 1, 2, 2),
        "convs_0/bias": (2,),
        "bns_0/scale": (2,),
        "bns_0/bias": (2,),
        "convs_1/kernel": (1, 1, 3, 3),
        "convs_1/bias": (3,),
        "bns_1/scale": (3,),
        "bns_1/bias": (3,),
        "fuser/kernel": (1, 1, 5, K),
        "fuser/bias": (K,),
    }
    assert _shapes(variables["batch_stats"]) == {
        "bns_0/mean": (2,),
        "bns_0/var": (2,),
        "bns_1/mean": (3,),
        "bns_1/var": (3,),
    }
    # torch Conv2d default init: U(±1/√fan_in) for kernel and bias.
    fuser = variables["params"]["fuser"]
    bound = 1 / np.sqrt(5)
    assert np.abs(fuser["kernel"]).max() <= bound and np.abs(fuser["bias"]).max() <= bound


def test_fusion_init_zeros_starts_every_class_map_flat_at_zero():
    taps = _taps()
    variables = AttentionMechanism(K, fusion_init="zeros").init(jax.random.key(0), taps)
    fuser = variables["params"]["fuser"]
    assert not np.any(fuser["kernel"]) and not np.any(fuser["bias"])
    c = AttentionMechanism(K, fusion_init="zeros").apply(variables, taps)
    np.testing.assert_array_equal(np.asarray(c), 0.0)
    # The branches keep their random init; the default fusion init is random (torch's).
    assert np.any(variables["params"]["convs_0"]["kernel"])
    default = AttentionMechanism(K).init(jax.random.key(0), taps)["params"]["fuser"]
    assert np.all(default["kernel"] != 0)
    with pytest.raises(ValueError, match="fusion init"):
        AttentionMechanism(K, fusion_init="ones").init(jax.random.key(0), taps)


def test_no_batchnorm_variant_has_no_bn_and_fewer_taps_fewer_branches():
    variables = AttentionMechanism(K, skip=False, batchnorm=False).init(
        jax.random.key(0), _taps()[:1]
    )
    assert "batch_stats" not in variables
    assert set(variables["params"]) == {"convs_0", "fuser"}
    assert variables["params"]["fuser"]["kernel"].shape == (1, 1, 2, K)


def _identity_params(variables, conv_scale=1.0):
    """1x1 convs = conv_scale·I with zero bias; fuser = identity on the first K channels."""
    params = jax.tree.map(jnp.zeros_like, variables["params"])
    for name, p in params.items():
        if name.startswith("convs_"):
            c = p["kernel"].shape[-1]
            p["kernel"] = conv_scale * jnp.eye(c)[None, None]
        if name.startswith("bns_"):
            p["scale"] = jnp.ones_like(p["scale"])
    f = params["fuser"]["kernel"].shape[2]
    params["fuser"]["kernel"] = jnp.eye(f, K)[None, None]
    return params


@pytest.mark.parametrize(
    "kw,branch",
    [
        # eval BN with running mean 0, var 1: BN(2x) = 2x / sqrt(1 + 1e-5).
        ({}, lambda x: np.maximum(2 * x / np.sqrt(1 + 1e-5) + x, 0)),
        ({"skip": False}, lambda x: np.maximum(2 * x / np.sqrt(1 + 1e-5), 0)),
        ({"skip": False, "batchnorm": False}, lambda x: np.maximum(2 * x, 0)),
        ({"branch_act": "sigmoid"}, lambda x: 1 / (1 + np.exp(-(2 * x / np.sqrt(1 + 1e-5) + x)))),
    ],
)
def test_branch_variants_hand_values(kw, branch):
    taps = _taps()[:1]  # one tap (B, 4, 4, 2); fuser passes channels 0, 1 through
    module = AttentionMechanism(K, **kw)
    variables = module.init(jax.random.key(0), taps)
    variables = {**variables, "params": _identity_params(variables, conv_scale=2.0)}
    c = np.asarray(module.apply(variables, taps))
    want = branch(np.asarray(taps[0]))
    np.testing.assert_allclose(c[..., :2], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c[..., 2], 0.0, atol=1e-7)


def test_smaller_tap_is_upsampled_like_torch():
    taps = _taps()
    module = AttentionMechanism(K, skip=True, batchnorm=False)
    variables = module.init(jax.random.key(0), taps)
    params = jax.tree.map(jnp.zeros_like, variables["params"])
    # fuser: output class 0 = channel 2 (first channel of tap 1), i.e. relu(tap 1)[..., 0].
    params["fuser"]["kernel"] = params["fuser"]["kernel"].at[0, 0, 2, 0].set(1.0)
    c = np.asarray(module.apply({"params": params}, taps))
    assert c.shape == (2, 4, 4, K)
    relu1 = torch.from_numpy(np.maximum(np.asarray(taps[1]), 0)).permute(0, 3, 1, 2)
    want = F.interpolate(relu1, size=(4, 4), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(c[..., 0], want[:, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_max_resolution_caps_explanation_size():
    module = AttentionMechanism(K, max_resolution=2)
    variables = module.init(jax.random.key(0), _taps())
    assert module.apply(variables, _taps()).shape == (2, 2, 2, K)


def test_batchnorm_train_uses_batch_stats_and_updates_running_stats():
    taps = _taps()[:1]
    module = AttentionMechanism(K, skip=False)
    variables = module.init(jax.random.key(0), taps)
    variables = {**variables, "params": _identity_params(variables)}
    c, state = module.apply(variables, taps, train=True, mutable=["batch_stats"])
    x = np.asarray(taps[0]).reshape(-1, 2)
    mean, var = x.mean(0), x.var(0)
    # train: normalised with batch statistics -> per channel mean 0 (then relu).
    want = np.maximum((np.asarray(taps[0]) - mean) / np.sqrt(var + 1e-5), 0)
    np.testing.assert_allclose(np.asarray(c)[..., :2], want, rtol=1e-4, atol=1e-5)
    # running stats: torch momentum 0.1 from (mean 0, var 1).
    new = state["batch_stats"]["bns_0"]
    np.testing.assert_allclose(np.asarray(new["mean"]), 0.1 * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(new["var"]), 0.9 + 0.1 * var, rtol=1e-5)


def test_class_selection_equals_gather_of_all_classes():
    taps = _taps(b=3)
    module = AttentionMechanism(K)
    variables = module.init(jax.random.key(1), taps)
    full = np.asarray(module.apply(variables, taps))  # (B, H_e, W_e, K)
    classes = np.array([[2, 0], [1, 1], [0, 2]])
    got = np.asarray(module.apply(variables, taps, classes=jnp.asarray(classes)))
    assert got.shape == (3, 4, 4, 2)
    for b in range(3):
        for j in range(2):
            np.testing.assert_allclose(got[b, ..., j], full[b, ..., classes[b, j]], rtol=1e-5)
    with pytest.raises(ValueError, match="classes"):
        module.apply(variables, taps, classes=jnp.array([0, 1, 2]))


def _t(a):
    return torch.from_numpy(np.array(a))  # a writable copy


def _torch_reference(variables, taps, train):
    """The paper's order with torch ops: branch -> interpolate -> concat -> 1x1 conv."""
    p, bs = variables["params"], variables["batch_stats"]
    size = taps[0].shape[1:3]
    outs = []
    for i, x in enumerate(taps):
        x = _t(x).permute(0, 3, 1, 2)
        conv = p[f"convs_{i}"]
        w = _t(np.asarray(conv["kernel"])[0, 0].T)[:, :, None, None]
        y = F.conv2d(x, w, _t(conv["bias"]))
        bn, stats = p[f"bns_{i}"], bs[f"bns_{i}"]
        y = F.batch_norm(
            y,
            _t(stats["mean"]),
            _t(stats["var"]),
            _t(bn["scale"]),
            _t(bn["bias"]),
            training=train,
            momentum=0.1,
            eps=1e-5,
        )
        y = torch.relu(y + x)
        outs.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
    h = torch.cat(outs, dim=1)
    fw = _t(np.asarray(p["fuser"]["kernel"])[0, 0].T)[:, :, None, None]
    c = F.conv2d(h, fw, _t(p["fuser"]["bias"]))
    return c.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("train", [False, True])
def test_matches_torch_reference_order(train):
    taps = _taps(seed=3)
    module = AttentionMechanism(K)
    variables = module.init(jax.random.key(2), taps)
    rng = np.random.default_rng(4)
    stats = jax.tree.map(
        lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape), jnp.float32),
        variables["batch_stats"],
    )
    variables = {**variables, "batch_stats": stats}
    if train:
        c, _ = module.apply(variables, taps, train=True, mutable=["batch_stats"])
    else:
        c = module.apply(variables, taps)
    want = _torch_reference(variables, taps, train)
    np.testing.assert_allclose(np.asarray(c), want, rtol=1e-5, atol=1e-5)
