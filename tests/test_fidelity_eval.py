"""Issue 12, evaluation fidelity: the paper's protocol vs the reference code's, as options.

D2: RISE mask weights (softmax probability | raw logit), against a hand computation.
D4: where ROAD imputes (normalised | [0, 1] pixel space), against SciPy's imputer and the
    noise scale worked out by hand.
D6: where AD/IC masks (pixel | the backbone's rule), against a hand computation.
D3: the CAM baselines on another classifier (the reference's DeiT-B for the ViT), end to end.
Plus: the config fields, the paper-recipe configs, and that every option changes the
evaluator's cache key (only of the methods whose numbers it changes).
"""

from __future__ import annotations

import glob
import os
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from ttame_jax import baselines, configs, metrics, rundir
from ttame_jax.baselines.rise_sampling import rise_masks
from ttame_jax.config import EvalConfig, with_overrides
from ttame_jax.evaluation import scoring
from ttame_jax.evaluation.methods import method_options
from ttame_jax.metrics.road import imputation_space

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Linear(nn.Module):
    """Logits = a dense layer on the flattened input (3 classes)."""

    tap_paths = {}

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def _linear(size: int, scale: float = 1.0):
    module = Linear()
    variables = module.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
    variables = jax.tree.map(lambda v: v * scale, variables)
    w = np.asarray(variables["params"]["Dense_0"]["kernel"], np.float64)
    b = np.asarray(variables["params"]["Dense_0"]["bias"], np.float64)
    return module, variables, lambda x: np.asarray(x, np.float64).reshape(len(x), -1) @ w + b


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def _norm(x):
    return (np.asarray(x, np.float64) - np.asarray(MEAN)) / np.asarray(STD)


# ---------------------------------------------------------------- D2: RISE weights


@pytest.mark.parametrize("scores", ["softmax", "logits"])
def test_rise_weights_match_hand_computation(scores):
    size, n, s, p1 = 12, 48, 3, 0.5
    module, variables, f = _linear(size)
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    target = np.array([0, 2], np.int32)
    key = jax.random.key(3)
    ours = baselines.rise(module, variables, x, target=target, key=key, n_masks=n, s=s,
                          p1=p1, batch_size=16, scores=scores)  # fmt: skip
    masks = np.asarray(rise_masks(key, jnp.arange(n), (size, size), s, p1), np.float64)
    for i in range(2):
        out = f(x[i][None] * masks[..., None])  # (N, 3) logits of the masked inputs
        weight = (_softmax(out) if scores == "softmax" else out)[:, target[i]]
        sal = np.einsum("n,nhw->hw", weight, masks) / (n * p1)
        sal = sal - sal.min()
        sal = sal / (1e-7 + sal.max())
        np.testing.assert_allclose(np.asarray(ours[i]), sal, atol=2e-5)
    if scores == "softmax":  # the default is the softmax weighting
        default = baselines.rise(module, variables, x, target=target, key=key, n_masks=n,
                                 s=s, p1=p1, batch_size=16)  # fmt: skip
        np.testing.assert_array_equal(np.asarray(default), np.asarray(ours))


def test_rise_scores_option_is_checked_and_reaches_the_method():
    module, variables, _ = _linear(8)
    with pytest.raises(ValueError, match="scores must be one of"):
        baselines.rise(module, variables, np.zeros((1, 8, 8, 3)), target=0, scores="probs")
    baselines.METHODS["rise"].check_options("rise", {"scores": "logits"})  # a known option
    assert method_options(EvalConfig(methods=("rise",)), ["rise"]) == {"rise": {"seed": 0}}
    ec = EvalConfig(methods=("rise",), rise_scores="logits")
    assert method_options(ec, ["rise"]) == {"rise": {"seed": 0, "scores": "logits"}}
    assert method_options(ec, ["ttame"]) == {}


# ---------------------------------------------------------------- D4: ROAD space


def _scipy_impute(image, keep):
    """pytorch-grad-cam's NoisyLinearImputer (SciPy spsolve), noise off; HWC."""
    out = NoisyLinearImputer(noise=0.0)(
        torch.tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
        torch.tensor(keep.astype(np.float32)),
    )
    return out.numpy().transpose(1, 2, 0)


def test_road_pixel_space_matches_scipy_reference():
    rng = np.random.default_rng(0)
    size, levels = 16, (0.2, 0.5, 0.9)
    x = ndi.gaussian_filter(rng.random((2, size, size, 3)), (0, 1.0, 1.0, 0))
    x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)
    maps = rng.random((2, size, size)).astype(np.float32)
    _, variables, f = _linear(size, scale=3.0)
    module = Linear()
    target = np.array([0, 1], np.int32)

    def apply_fn(xn):
        return module.apply(variables, xn)

    out = metrics.road(apply_fn, x, maps, target, jax.random.key(0), mean=MEAN, std=STD,
                       levels=levels, space="pixel", noise=0.0)  # fmt: skip
    for order in ("morf", "lerf"):
        for i in range(2):
            score = maps[i] if order == "morf" else 1.0 - maps[i]
            for j, r in enumerate(levels):
                keep = score < np.percentile(score, 100 - 100 * r)  # pytorch-grad-cam's rule
                imputed = _scipy_impute(x[i], keep)  # in [0, 1] pixel space, then normalise
                want = _softmax(f(_norm(imputed)[None]))[0, target[i]]
                got = float(out[f"{order}_prob"][i, j])
                assert got == pytest.approx(want, abs=2e-3), (order, i, r)


@pytest.mark.parametrize("space", ["normalised", "pixel"])
def test_road_noise_is_in_the_units_of_its_space(space):
    # A constant image imputes to itself, so the imputed (normalised) image differs from
    # the original only by the noise on the removed pixels: sigma = 0.01 there, in
    # normalised units, or 0.01 / std_c in channel c when imputing in pixel space.
    size, r = 32, 0.5
    const = np.array([0.3, 0.5, 0.7], np.float32)
    x = np.broadcast_to(const, (1, size, size, 3)).astype(np.float32)
    maps = np.random.default_rng(1).random((1, size, size)).astype(np.float32)
    ref = jnp.asarray(_norm(x), jnp.float32)
    gain = 300.0

    def msd_model(xn):  # softmax[0] = gain * mean squared deviation from the original
        p = jnp.clip(gain * jnp.mean((xn - ref) ** 2, axis=(1, 2, 3)), 1e-6, 1 - 1e-6)
        return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1)

    out = metrics.road(msd_model, x, maps, np.array([0]), jax.random.key(2), mean=MEAN,
                       std=STD, levels=(r,), orders=("morf",), space=space)  # fmt: skip
    removed = (maps[0] >= np.percentile(maps[0], 100 - 100 * r)).mean()
    var = 0.01**2 * (np.mean(1 / np.square(STD)) if space == "pixel" else 1.0)
    assert float(out["morf_prob"][0, 0]) == pytest.approx(gain * var * removed, rel=0.15)


def test_road_space_defaults_and_errors():
    assert imputation_space("grad-cam") == "normalised"
    assert imputation_space("road") == "pixel"
    assert imputation_space("road", "normalised") == "normalised"
    with pytest.raises(ValueError, match="imputation space"):
        imputation_space("grad-cam", "raw")
    with pytest.raises(ValueError, match="compat"):
        imputation_space("x")


# ---------------------------------------------------------------- D6: AD/IC masking


def _soft_keep(m, nu):
    return np.where(m >= np.quantile(m, 1 - nu), m, 0.0)


@pytest.mark.parametrize("space", ["pixel", "normalised"])
def test_adic_masking_space_matches_hand_computation(space):
    rng = np.random.default_rng(0)
    size, kept = 8, (1.0, 0.5, 0.15)
    module, variables, f = _linear(size, scale=3.0)
    x = rng.random((2, size, size, 3)).astype(np.float32)
    maps = rng.random((2, size, size)).astype(np.float32)
    target = np.array([1, 2], np.int32)

    def apply_fn(xn):
        return module.apply(variables, xn)

    out = metrics.ad_ic(apply_fn, x, maps, target, mean=MEAN, std=STD, kept=kept, space=space)
    for i in range(2):
        y = _softmax(f(_norm(x[i])[None]))[0, target[i]]
        assert float(out["confidence"][i]) == pytest.approx(y, abs=1e-5)
        for j, nu in enumerate(kept):
            m = _soft_keep(maps[i], nu)[..., None]
            masked = _norm(x[i] * m) if space == "pixel" else m * _norm(x[i])
            o = _softmax(f(masked[None]))[0, target[i]]
            assert float(out["masked_confidence"][i, j]) == pytest.approx(o, abs=1e-5)
    with pytest.raises(ValueError, match="masking space"):
        metrics.ad_ic(apply_fn, x, maps, target, mean=MEAN, std=STD, space="backbone")


# ---------------------------------------------------------------- scoring and cache keys


def _explainer(kind="cnn", masking="auto", size=16):
    module, variables, _ = _linear(size, scale=3.0)
    spec = SimpleNamespace(builder=Linear, kind=kind)
    return SimpleNamespace(spec=spec, model_cfg=SimpleNamespace(masking=masking),
                           backbone_vars=variables, mean=jnp.asarray(MEAN),
                           std=jnp.asarray(STD))  # fmt: skip


OLD_KEY = {  # the scoring key before these options: defaults must keep old caches valid
    "adic_kept": (1.0, 0.5, 0.15),
    "road_removed": (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9),
    "road_compat": "grad-cam",
    "road_noise_seed": 0,
    "insertion_deletion": False,
    "insertion_deletion_steps": 100,
}


def test_every_option_changes_the_cache_key_of_the_methods_it_changes():
    ex = _explainer()
    default = scoring.Context.from_eval(ex, EvalConfig())
    assert default.key() == OLD_KEY
    for name in ("ttame", "gradcam", "rise"):
        assert default.for_method(name).key() == OLD_KEY
    # ROAD space of T-TAME: the report's key and T-TAME's key change, the baselines' not.
    ctx = scoring.Context.from_eval(ex, EvalConfig(road_space_ttame="pixel"))
    assert ctx.key() == {**OLD_KEY, "road_space_ttame": "pixel"}
    assert ctx.for_method("ttame").key() == {**OLD_KEY, "road_space": "pixel"}
    assert ctx.for_method("gradcam").key() == OLD_KEY
    with pytest.raises(ValueError, match="for_method"):
        ctx.road_space()
    ctx = scoring.Context.from_eval(ex, EvalConfig(road_space_baselines="pixel"))
    assert ctx.for_method("rise").key() == {**OLD_KEY, "road_space": "pixel"}
    assert ctx.for_method("ttame").key() == OLD_KEY
    # Under compat "road" the default space is pixel; normalised is then the change.
    road = scoring.Context.from_eval(ex, EvalConfig(road_compat="road"))
    assert road.for_method("ttame").key() == {**OLD_KEY, "road_compat": "road"}
    road_n = scoring.Context.from_eval(
        ex, EvalConfig(road_compat="road", road_space_ttame="normalised")
    )
    assert road_n.for_method("ttame").key()["road_space"] == "normalised"
    # AD/IC masking: keyed by what it resolves to (a CNN's own rule is the pixel rule).
    backbone = EvalConfig(adic_masking="backbone")
    assert scoring.Context.from_eval(ex, backbone).key() == OLD_KEY
    vit = scoring.Context.from_eval(_explainer("vit"), backbone)
    assert vit.key() == {**OLD_KEY, "adic_space": "normalised"}
    assert vit.for_method("gradcam").key()["adic_space"] == "normalised"
    swapped = scoring.Context.from_eval(_explainer("cnn", masking="vit"), backbone)
    assert swapped.adic_space == "normalised"  # paper Table 7: T-TAME's rule, swapped
    with pytest.raises(ValueError, match="adic_masking"):
        scoring.Context.create(ex, adic_masking="vit")


def test_score_batch_passes_each_methods_spaces_to_the_metrics(monkeypatch):
    # The metrics' numbers per space are checked above; here: which space each gets.
    calls = []

    def spy(name, real):
        def fn(*args, space, **kwargs):
            calls.append((name, space))
            return real(*args, space=space, **kwargs)

        return fn

    monkeypatch.setattr(metrics, "ad_ic", spy("ad_ic", metrics.ad_ic))
    monkeypatch.setattr(metrics, "road", spy("road", metrics.road))

    class Fresh(Linear):  # a module no earlier trace of the jitted scoring has seen
        pass

    size = 8
    rng = np.random.default_rng(0)
    x = rng.random((1, size, size, 3)).astype(np.float32)
    maps = rng.random((1, size, size)).astype(np.float32)
    ex = _explainer("vit", size=size)
    ex.spec.builder = Fresh
    ec = EvalConfig(road_space_ttame="pixel", adic_masking="backbone")
    ctx = scoring.Context.from_eval(ex, ec)
    for name in ("ttame", "gradcam"):
        out = scoring.score_batch(ctx.for_method(name), x, maps, np.array([0]), np.array([0]))
        assert out["morf_prob"].shape == (1, 7) and out["drop"].shape == (1, 3)
    assert calls == [("ad_ic", "normalised"), ("road", "pixel"),
                     ("ad_ic", "normalised"), ("road", "normalised")]  # fmt: skip


# ---------------------------------------------------------------- config and recipes


def test_eval_fields_are_checked():
    bad = EvalConfig(road_space_ttame="raw", road_space_baselines="x", adic_masking="vit",
                     rise_scores="probs")  # fmt: skip
    text = "\n".join(bad.errors())
    for name in ("road_space_ttame", "road_space_baselines", "adic_masking", "rise_scores"):
        assert f"eval.{name}" in text
    assert EvalConfig().errors() == []


def test_paper_recipes_use_the_reference_protocol_and_the_benchmark_does_not():
    for name, road_space in (("vgg16", "pixel"), ("resnet50", "pixel"), ("vit", None)):
        ec = configs.load(name).eval
        assert (ec.rise_scores, ec.road_space_ttame) == ("logits", road_space), name
        deit = "deit_base_patch16_224" if name == "vit" else None
        assert (ec.cam_backbone, ec.cam_backbone_weights) == (deit, None), name  # D3
        assert (ec.road_space_baselines, ec.adic_masking) == (None, "pixel"), name
        assert configs.load(f"{name}:1tap").eval.rise_scores == "logits"
        assert configs.load(f"{name}:smoke").eval == EvalConfig()  # smoke: the defaults
    ec = configs.load("synthetic").eval
    assert (ec.rise_scores, ec.road_space_ttame, ec.road_space_baselines, ec.adic_masking) == (
        "softmax", None, None, "pixel"
    )  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _reuse_backbone_init(cached_load_pretrained):
    """The evaluation below loads the random synthetic_cnn of the shared tiny run."""


def test_evaluator_keys_each_methods_cache_by_its_own_settings(tiny_run, tmp_path, monkeypatch):
    from ttame_jax.evaluation import evaluate

    seen = []

    def fake_score_batch(ctx, x01, maps, target, index):  # the metrics are tested above
        seen.append((ctx.method, ctx.road_space()))
        n = len(target)
        out = {k: np.zeros((n, 3)) for k in ("masked_confidence", "drop", "increase")}
        out.update({f"{o}_{k}": np.zeros((n, 7)) for o in ("morf", "lerf")
                    for k in ("correct", "prob")})  # fmt: skip
        return {**out, "confidence": np.ones(n)}

    monkeypatch.setattr(scoring, "score_batch", fake_score_batch)
    base = {"eval.methods": ("ttame", "gradcam"), "eval.num_images": 2,
            "eval.batch_size": 2, "eval.progress": False}  # fmt: skip
    config = rundir.read_config(tiny_run)
    out = str(tmp_path)
    first = evaluate(tiny_run, with_overrides(config, base), workdir=out)
    assert seen == [("ttame", "normalised"), ("gradcam", "normalised")]
    seen.clear()
    second = evaluate(
        tiny_run, with_overrides(config, {**base, "eval.road_space_ttame": "pixel"}), workdir=out
    )
    assert seen == [("ttame", "pixel")]  # the baseline's cached batches are reused
    folders = lambda m: sorted(glob.glob(os.path.join(out, "cache", f"{m}-*")))  # noqa: E731
    assert (len(folders("ttame")), len(folders("gradcam"))) == (2, 1)
    assert first["meta"]["report_dir"] != second["meta"]["report_dir"]
    assert second["meta"]["settings"]["scoring"]["road_space_ttame"] == "pixel"


# ---------------------------------------------------------------- D3: CAM baselines on DeiT


def test_cam_backbone_explains_targets_and_scores_the_cam_baselines(
    tiny_run, tiny_deit, tmp_path, monkeypatch
):
    """eval.cam_backbone (the reference's ViT protocol): Grad-CAM explains the other
    classifier at its cam_layer, with that classifier's top-1 as target, and that
    classifier scores the maps; T-TAME stays on the checkpoint's backbone; only the CAM
    method's cache key changes."""
    import functools

    import torch
    from flax import serialization

    from ttame_jax.backbones import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, register, vit
    from ttame_jax.evaluation import evaluate, inputs

    tm, _, variables, size = tiny_deit
    layer = "encoder.layers.encoder_layer_1.ln"
    register(BackboneSpec(
        "tiny_deit_64px", "vit", functools.partial(vit.ViT_B_16, **size),
        64, 8, IMAGENET_MEAN, IMAGENET_STD, (layer,), cam_layer=layer,
    ))  # fmt: skip
    weights = tmp_path / "tiny_deit.msgpack"
    weights.write_bytes(serialization.to_bytes(variables))

    seen = []

    def spy(ctx, x01, maps, target, index):  # the metrics are tested elsewhere
        seen.append((ctx.method, ctx.variables, ctx.mean, np.asarray(target)))
        n = len(target)
        out = {k: np.zeros((n, 3)) for k in ("masked_confidence", "drop", "increase")}
        out.update({f"{o}_{k}": np.zeros((n, 7)) for o in ("morf", "lerf")
                    for k in ("correct", "prob")})  # fmt: skip
        return {**out, "confidence": np.ones(n)}

    monkeypatch.setattr(scoring, "score_batch", spy)
    config = rundir.read_config(tiny_run)
    base = {"eval.methods": ("ttame", "gradcam"), "eval.num_images": 2,
            "eval.batch_size": 2, "eval.progress": False}  # fmt: skip
    out = str(tmp_path / "eval")
    plain = evaluate(tiny_run, with_overrides(config, base), workdir=out)
    seen.clear()
    cam = {**base, "eval.cam_backbone": "tiny_deit_64px", "eval.cam_backbone_weights": str(weights)}
    results = evaluate(tiny_run, with_overrides(config, cam), workdir=out)

    folders = lambda m: sorted(glob.glob(os.path.join(out, "cache", f"{m}-*")))  # noqa: E731
    assert (len(folders("ttame")), len(folders("gradcam"))) == (1, 2)  # ttame's is reused
    assert [m for m, *_ in seen] == ["gradcam"]
    assert results["meta"]["cam_backbone"] == "tiny_deit_64px"
    assert results["meta"]["baseline_layer"] == layer
    assert plain["meta"]["baseline_layer"] == "layer3" and "cam_backbone" not in plain["meta"]
    assert (
        "tiny_deit_64px" in results["meta"]["settings"]["methods"][1]["options"]["backbone"]["name"]
    )

    # Scored by the DeiT (its variables and mean/std), on the DeiT's top-1 for the images.
    _, scored_vars, mean, target = seen[0]
    for a, b in zip(jax.tree.leaves(scored_vars), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(mean, IMAGENET_MEAN, rtol=1e-6)  # not the synthetic data's
    source = inputs.open_split(config, "test", 64)
    x = next(source.batches(2, shuffle=False, augment=False))["image"][:2]
    xn = ((x - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)).astype(np.float32)
    with torch.no_grad():
        want = tm(torch.from_numpy(xn.transpose(0, 3, 1, 2).copy())).argmax(1).numpy()
    np.testing.assert_array_equal(target, want)


def test_cam_backbone_must_take_the_checkpoints_input_size(tiny_run):
    from ttame_jax.evaluation.methods import cam_backbone

    ex = SimpleNamespace(spec=SimpleNamespace(name="synthetic_cnn", input_size=64))
    ec = EvalConfig(methods=("gradcam",), cam_backbone="deit_base_patch16_224")
    with pytest.raises(ValueError, match="same input size"):
        cam_backbone(ex, ec, ec.methods)
    assert cam_backbone(ex, EvalConfig(cam_backbone="deit_base_patch16_224"), ("ttame",)) is None
    with pytest.raises(ValueError, match="unknown backbone"):
        cam_backbone(ex, EvalConfig(cam_backbone="deit"), ("gradcam",))
    assert "eval.cam_backbone_weights" in "\n".join(
        EvalConfig(cam_backbone_weights="w.pth").errors()
    )
