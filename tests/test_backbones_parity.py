"""Parity of the Flax backbones with torchvision and timm (random init; eval mode, and train
mode at the end).

Each reference model is built once per module with a fixed torch seed; BatchNorm
running statistics, ViT's zero-initialised head and class token are randomised
first so that they are really exercised. Logits and taps are compared on the
same inputs: max |ours - torch| <= 1e-4 * max |torch|.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from ttame_jax.backbones import (  # noqa: E402
    convert_timm,
    convert_torchvision,
    create,
    extract,
    get_spec,
)

RTOL = 1e-4


def randomise(model, seed):
    """Makes BN statistics, zero-initialised heads and tokens non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        for p in model.parameters():
            if not p.abs().any():  # ViT heads.head / class_token start at zero
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return model.eval()


def torch_outputs(model, x_nhwc, modules):
    """Runs ``model`` on NHWC ``x``; returns logits and ``{tap: NHWC output}`` via hooks."""
    captured, handles = {}, []
    for tap, module_name in modules.items():

        def hook(_m, _inp, out, tap=tap):
            captured[tap] = out.detach().clone()  # clone: the next ReLU may be in place

        handles.append(model.get_submodule(module_name).register_forward_hook(hook))
    try:
        with torch.inference_mode():
            logits = model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2))).numpy()
    finally:
        for h in handles:
            h.remove()
    taps = {k: v.numpy() for k, v in captured.items()}
    return logits, {k: v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for k, v in taps.items()}


def assert_close(ours, ref, what):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs torch {ref.shape}"
    scale = float(np.abs(ref).max())
    assert scale > 0, f"{what}: reference is all zeros, the comparison would be vacuous"
    err = float(np.abs(ours - ref).max())
    assert err <= RTOL * scale, f"{what}: max abs diff {err:.3g} > {RTOL} * {scale:.3g}"


def inputs(batch, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, 224, 224, 3)).astype(np.float32)


def torchvision_module_name(tap):
    """Our tap names are torchvision module names, except the reference's ``.ln`` alias."""
    block_ln = tap.startswith("encoder.layers.") and tap.endswith(".ln")
    return tap + "_1" if block_ln else tap


TORCHVISION = {"vgg16": "vgg16", "resnet50": "resnet50", "vit_b_16": "vit_b_16"}


@pytest.fixture(scope="module", params=sorted(TORCHVISION))
def torchvision_case(request):
    name = request.param
    torch.manual_seed(0)
    model = randomise(getattr(torchvision.models, TORCHVISION[name])(weights=None), seed=1)
    variables = convert_torchvision(name, model.state_dict())
    return name, model, variables


def test_torchvision_logits_and_every_tap(torchvision_case):
    """All taps of the module's table (DESIGN §3 taps included) and the logits, jitted."""
    name, model, variables = torchvision_case
    module = create(name)
    taps = list(module.tap_paths)
    x = inputs(2)
    ref_logits, ref = torch_outputs(model, x, {t: torchvision_module_name(t) for t in taps})
    logits, feats = jax.jit(lambda v, x: extract(module, v, x, taps))(variables, jnp.asarray(x))
    assert_close(logits, ref_logits, f"{name} logits")
    for t in taps:
        assert_close(feats[t], ref[t], f"{name} {t}")
    assert set(get_spec(name).taps) <= set(taps)


def test_cnns_at_another_input_size(torchvision_case):
    """Non-square 160x192 input: VGG's adaptive pool then averages overlapping 5x6 -> 7x7 bins."""
    name, model, variables = torchvision_case
    if name == "vit_b_16":
        pytest.skip("ViT-B/16 takes 224x224 only (fixed position embedding)")
    x = np.random.default_rng(4).normal(size=(1, 160, 192, 3)).astype(np.float32)
    ref_logits, ref = torch_outputs(model, x, {"avgpool": "avgpool"})
    logits, feats = extract(create(name), variables, jnp.asarray(x), ["avgpool"])
    assert_close(feats["avgpool"], ref["avgpool"], f"{name} avgpool at 160x192")
    assert_close(logits, ref_logits, f"{name} logits at 160x192")


def test_design_tap_shapes(torchvision_case):
    """The shapes DESIGN §3 states for the paper's taps (incl. the VGG ablation)."""
    name, _, variables = torchvision_case
    expected = {
        "vgg16": {
            "features.16": (28, 28, 256),
            "features.23": (14, 14, 512),
            "features.30": (7, 7, 512),
            "features.15": (56, 56, 256),
            "features.22": (28, 28, 512),
            "features.29": (14, 14, 512),
        },
        "resnet50": {"layer2": (28, 28, 512), "layer3": (14, 14, 1024), "layer4": (7, 7, 2048)},
        "vit_b_16": {f"encoder.layers.encoder_layer_{k}.ln": (197, 768) for k in (9, 10, 11)},
    }[name]
    module = create(name)
    shapes = jax.eval_shape(
        lambda v, x: extract(module, v, x, list(expected))[1], variables, inputs(1)
    )
    assert {k: v.shape[1:] for k, v in shapes.items()} == expected


@pytest.mark.parametrize(
    "name,count", [("vgg16", 138_357_544), ("resnet50", 25_557_032), ("vit_b_16", 86_567_656)]
)
def test_parameter_counts(name, count):
    shapes = jax.eval_shape(create(name).init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])) == count


# timm: our node name -> timm module name, for the paper's taps.
TIMM = {
    "vgg16": (
        "vgg16",
        {f"features.{i}": f"features.{i}" for i in (15, 16, 22, 23, 29, 30)},
    ),
    "resnet50": ("resnet50", {f"layer{k}": f"layer{k}" for k in (2, 3, 4)}),
    "vit_b_16": (
        "vit_base_patch16_224",
        {
            **{f"encoder.layers.encoder_layer_{k}.ln": f"blocks.{k}.norm1" for k in (9, 10, 11)},
            **{f"encoder.layers.encoder_layer_{k}": f"blocks.{k}" for k in (9, 10, 11)},
            "encoder.ln": "norm",
        },
    ),
}


@pytest.mark.parametrize(
    "name",
    # timm's resnet50 uses torchvision's key names (same table, tested above): slow only.
    ["vgg16", pytest.param("resnet50", marks=pytest.mark.slow), "vit_b_16"],
)
def test_timm_logits_and_taps(name):
    timm = pytest.importorskip("timm")
    timm_name, tap_modules = TIMM[name]
    torch.manual_seed(0)
    model = randomise(timm.create_model(timm_name, pretrained=False), seed=2)
    variables = convert_timm(timm_name, model.state_dict())
    x = inputs(1, seed=5)
    ref_logits, ref = torch_outputs(model, x, tap_modules)
    logits, feats = extract(create(name), variables, jnp.asarray(x), list(tap_modules))
    assert_close(logits, ref_logits, f"timm {name} logits")
    for t in tap_modules:
        assert_close(feats[t], ref[t], f"timm {name} {t}")


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "vit_b_16"])
def test_dtype_sets_computation_not_parameters(name):
    module = create(name, dtype=jnp.bfloat16)
    x = jnp.zeros((1, 224, 224, 3))
    variables = jax.eval_shape(module.init, jax.random.key(0), x)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    assert jax.eval_shape(module.apply, variables, x).dtype == jnp.bfloat16


# -- train mode (issue 12 D7: model.backbone_mode="reference") ---------------------------


def _vgg_dropout_masks(module, variables, x, key):
    """Our VGG-16 in train mode: logits and the keep masks of classifier.2 / .5."""
    names = ("classifier_1", "classifier_2", "classifier_4", "classifier_5")
    logits, state = module.apply(
        variables,
        x,
        train=True,
        rngs={"dropout": key},
        capture_intermediates=lambda m, _: m.name in names,
        mutable=["intermediates"],
    )
    out = {n: np.asarray(state["intermediates"][n]["__call__"][0]) for n in names}
    masks = []
    for before, after in (("classifier_1", "classifier_2"), ("classifier_4", "classifier_5")):
        alive = out[before] > 0  # a ReLU output: zeros carry no information on the mask
        kept = out[after] != 0
        assert not np.any(kept & ~alive)
        # torch's rule: kept activations are scaled by 1 / (1 - p) = 2, the others are 0.
        np.testing.assert_allclose(out[after][kept], 2.0 * out[before][kept], rtol=1e-6)
        fraction = kept[alive].mean()
        assert 0.45 < fraction < 0.55, f"{after}: kept {fraction:.3f} of the units, p = 0.5"
        masks.append(kept)
    return np.asarray(logits), masks


@pytest.mark.parametrize(
    "torchvision_case",
    # ViT-B/16's check is only that nothing changes (slow: two full passes on each side).
    ["resnet50", "vgg16", pytest.param("vit_b_16", marks=pytest.mark.slow)],
    indirect=True,
)
def test_train_mode_equals_torchvision_train_mode(torchvision_case):
    """``train=True`` is torchvision's ``model.train()`` forward: ResNet-50's BatchNorm on
    the batch's statistics; VGG-16's dropout (p = 0.5; torch given the same keep masks);
    ViT-B/16 unchanged (its dropout rates are 0)."""
    name, model, variables = torchvision_case
    module = create(name)
    size = 224 if name == "vit_b_16" else 64
    x = np.random.default_rng(7).normal(size=(4, size, size, 3)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    eval_logits = np.asarray(module.apply(variables, jnp.asarray(x)))
    if name == "resnet50":
        ours, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
        with torch.no_grad():  # on a copy: torch's train forward updates the running stats
            want = copy.deepcopy(model).train()(xt).numpy()
        assert_close(ours, want, "resnet50 train mode")
        assert not np.allclose(ours, eval_logits, atol=1e-3)  # batch statistics were used
    elif name == "vgg16":
        ours, masks = _vgg_dropout_masks(module, variables, x, jax.random.key(0))
        hooks = [
            model.classifier[i].register_forward_hook(
                lambda _m, inp, _out, keep=torch.from_numpy(keep): inp[0] * keep * 2.0
            )
            for i, keep in zip((2, 5), masks, strict=True)
        ]
        try:
            with torch.no_grad():
                want = model.train()(xt).numpy()
        finally:
            model.eval()
            for h in hooks:
                h.remove()
        assert_close(ours, want, "vgg16 train mode (same dropout masks)")
        assert not np.allclose(ours, eval_logits, atol=1e-3)
        other, _ = _vgg_dropout_masks(module, variables, x, jax.random.key(1))
        assert not np.allclose(other, ours)  # the key draws the masks
    else:
        ours = np.asarray(module.apply(variables, jnp.asarray(x), train=True))
        with torch.no_grad():
            want = model.train()(xt).numpy()
        model.eval()
        np.testing.assert_array_equal(ours, eval_logits)
        assert_close(ours, want, "vit_b_16 train mode")
