"""Pure pieces of T-TAME: resize, adapter, Ψ selection, loss terms, masking.

Expected values are hand-computed on tiny arrays, or come from torch
(``F.interpolate``, torchvision's ViT token layout) on identical inputs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ttame_jax.config import LossConfig, from_dict
from ttame_jax.core.adapter import adapt, explanation_size
from ttame_jax.core.loss import (
    cross_entropy,
    paper_energy,
    paper_variation,
    psi_classes,
    reference_area,
    reference_smoothness,
    ttame_loss,
)
from ttame_jax.core.masking import mask_images, masking_rule
from ttame_jax.core.resize import resize_bilinear

# ---------------------------------------------------------------- resize


@pytest.mark.parametrize(
    "src,dst",
    [
        ((7, 7), (28, 28)),
        ((14, 14), (224, 224)),
        ((3, 5), (5, 9)),
        ((112, 112), (56, 56)),
        ((9, 6), (4, 4)),
        ((6, 6), (6, 6)),
    ],
)
def test_resize_matches_torch_interpolate(src, dst):
    x = np.random.default_rng(0).normal(size=(2, *src, 3)).astype(np.float32)
    want = F.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), size=dst, mode="bilinear", align_corners=False
    ).permute(0, 2, 3, 1)
    got = resize_bilinear(jnp.asarray(x), dst)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=1e-5, rtol=1e-5)


def test_resize_hand_values_and_axes():
    # in=2 -> out=4: source coords -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped index).
    m = jnp.array([[[0.0, 1.0]]])  # (1, 1, 2) with axes (1, 2) = (H, W)
    got = resize_bilinear(m, (1, 4))
    np.testing.assert_allclose(np.asarray(got), [[[0.0, 0.25, 0.75, 1.0]]], atol=1e-7)
    # Same through other axes (B, k, H, W).
    got = resize_bilinear(m.reshape(1, 1, 1, 2), (1, 4), axes=(2, 3))
    np.testing.assert_allclose(np.asarray(got)[0, 0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-7)


def test_resize_rejects_int_arrays():
    with pytest.raises(TypeError, match="floating"):
        resize_bilinear(jnp.zeros((1, 2, 2, 1), jnp.int32), (4, 4))


# ---------------------------------------------------------------- adapter


def test_vit_adapter_inverts_torchvision_patch_embedding():
    b, d, side = 2, 5, 3
    fmap = torch.randn(b, d, side, side)  # conv_proj output, NCHW
    # torchvision VisionTransformer._process_input + class token.
    tokens = fmap.reshape(b, d, side * side).permute(0, 2, 1)
    tokens = torch.cat([torch.randn(b, 1, d), tokens], dim=1)  # (B, 1 + N, D)
    got = adapt(jnp.asarray(tokens.numpy()), "vit")
    assert got.shape == (b, side, side, d)
    np.testing.assert_array_equal(np.asarray(got), fmap.permute(0, 2, 3, 1).numpy())


def test_adapter_cnn_identity_and_errors():
    x = jnp.arange(24.0).reshape(1, 2, 3, 4)
    assert adapt(x, "cnn") is x
    with pytest.raises(ValueError, match="square number"):
        adapt(jnp.zeros((1, 1 + 6, 4)), "vit")
    with pytest.raises(ValueError, match="token sequence"):
        adapt(jnp.zeros((1, 2, 2, 4)), "vit")
    with pytest.raises(ValueError, match="NHWC"):
        adapt(jnp.zeros((1, 5, 4)), "cnn")


def test_explanation_size_is_largest_tap_capped():
    shapes = [(2, 28, 28, 8), (2, 14, 14, 8), (2, 7, 7, 8)]
    assert explanation_size(shapes, 56) == (28, 28)
    assert explanation_size([(2, 112, 112, 4), (2, 56, 56, 4)], 56) == (56, 56)
    assert explanation_size([(2, 14, 14, 4)], 8) == (8, 8)


# ---------------------------------------------------------------- Ψ selection


def test_psi_classes_reference_is_all_predicted_classes():
    y = jnp.array([2, 0, 1])
    got = psi_classes(y, "reference", num_classes=5)
    np.testing.assert_array_equal(np.asarray(got), [[2, 0, 1], [2, 0, 1], [2, 0, 1]])


def test_psi_classes_paper_own_class_then_random_others():
    y = jnp.array([0, 3, 2, 2])
    key = jax.random.key(1)
    got = np.asarray(psi_classes(y, "paper", num_classes=4, rng=key))
    assert got.shape == (4, 4)
    np.testing.assert_array_equal(got[:, 0], [0, 3, 2, 2])
    assert ((got[:, 1:] >= 0) & (got[:, 1:] < 4)).all()
    assert (got[:, 1:] != got[:, :1]).all()  # never the own class again
    np.testing.assert_array_equal(got, np.asarray(psi_classes(y, "paper", 4, rng=key)))
    # With K = 2 the only other class is forced: 1 - y.
    two = np.asarray(psi_classes(jnp.array([0, 1, 1]), "paper", 2, rng=key))
    np.testing.assert_array_equal(two[:, 1:], [[1, 1], [0, 0], [0, 0]])
    with pytest.raises(ValueError, match="rng"):
        psi_classes(y, "paper", 4)


def test_psi_classes_own_is_the_images_class_in_every_slot():
    y = jnp.array([2, 0, 1])
    for variant in ("reference", "paper"):  # no rng needed: nothing is drawn
        got = psi_classes(y, variant, num_classes=5, selection="own")
        np.testing.assert_array_equal(np.asarray(got), [[2, 2, 2], [0, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="psi_selection"):
        psi_classes(y, "reference", 5, selection="diagonal")


# ---------------------------------------------------------------- loss terms


def test_cross_entropy_hand_values():
    logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    # image 0: -log(1/2); image 1, label 1: -log(1/4).
    got = cross_entropy(logits, jnp.array([0, 1]))
    np.testing.assert_allclose(float(got), (math.log(2) + math.log(4)) / 2, rtol=1e-6)


def _psi_b2():
    # (B=2, H=2, W=2, k=2): image 0 slot 0 has a 1 at (0, 0); image 1 slot 1 has 0.5 at (1, 1).
    psi = np.zeros((2, 2, 2, 2), np.float32)
    psi[0, 0, 0, 0] = 1.0
    psi[1, 1, 1, 1] = 0.5
    return jnp.asarray(psi)


def test_reference_smoothness_hand_values_b2():
    # Δ_h² = 1 + 0.25, Δ_w² = 1 + 0.25; on 2x2 maps every pixel lies on one edge row and
    # one edge column: border = 2·(1 + 0.25). (1.25 + 1.25 + 0.3·2.5) / (2·2) = 0.8125.
    np.testing.assert_allclose(float(reference_smoothness(_psi_b2(), 0.3)), 0.8125, rtol=1e-6)


def test_reference_border_is_first_last_row_and_column():
    centre = jnp.zeros((1, 3, 3, 1)).at[0, 1, 1, 0].set(1.0)
    corner = jnp.zeros((1, 3, 3, 1)).at[0, 0, 0, 0].set(1.0)
    edge = jnp.zeros((1, 3, 3, 1)).at[0, 0, 1, 0].set(1.0)
    # centre: diffs 2 + 2, no border: 4 / 2.
    np.testing.assert_allclose(float(reference_smoothness(centre, 0.3)), 2.0, rtol=1e-6)
    # corner: diffs 1 + 1, counted in row 0 and column 0: (2 + 0.3·2) / 2.
    np.testing.assert_allclose(float(reference_smoothness(corner, 0.3)), 1.3, rtol=1e-6)
    # top edge middle: diffs 1 (down) + 2 (left, right), row 0 only: (3 + 0.3) / 2.
    np.testing.assert_allclose(float(reference_smoothness(edge, 0.3)), 1.65, rtol=1e-6)


def test_reference_area_hand_values():
    psi = jnp.array([0.25, 1.0, 0.0, 0.04]).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(float(reference_area(psi, 0.5, 0.0)), 1.7 / 4, rtol=1e-6)
    zeros = jnp.zeros((2, 2, 2, 2))
    np.testing.assert_allclose(float(reference_area(zeros, 0.3, 0.0005)), 0.0005**0.3, rtol=1e-6)


def test_paper_terms_hand_values():
    psi = _psi_b2()  # S = B·H·W·k = 16 values summed (eqs. 16-17)
    by_hand = (1.0 + math.sqrt(0.5)) / 16  # Σ Ψ^0.5 over the two non-zero values, over S
    np.testing.assert_allclose(float(paper_energy(psi, 0.5)), by_hand, rtol=1e-6)
    np.testing.assert_allclose(float(paper_variation(psi)), 2.5 / 32, rtol=1e-6)
    # With k = 1 (one map per image) S = B·H·W: the definition does not depend on k's role.
    one = psi[..., :1]
    np.testing.assert_allclose(float(paper_energy(one, 0.5)), 1.0 / 8, rtol=1e-6)


def test_paper_energy_gradient_finite_where_sigmoid_underflows():
    g = jax.grad(lambda c: paper_energy(jax.nn.sigmoid(c), 0.3))(jnp.full((1, 2, 2, 1), -200.0))
    assert np.isfinite(np.asarray(g)).all()


def test_ttame_loss_combines_weighted_terms():
    logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    y = jnp.array([0, 1])
    psi = _psi_b2()
    ce = (math.log(2) + math.log(4)) / 2
    ref = LossConfig(area_power=0.5, area_eps=0.0)
    loss, terms = ttame_loss(logits, y, psi, ref)
    want = {"ce": 1.5 * ce, "area": 2.0 * (1 + math.sqrt(0.5)) / 16, "tv": 0.01 * 0.8125}
    for name, value in want.items():
        np.testing.assert_allclose(float(terms[name]), value, rtol=1e-6)
    np.testing.assert_allclose(float(loss), sum(want.values()), rtol=1e-6)

    # Paper variant: S = number of values summed = B·H_e·W_e·k = 2·2·2·2 = 16 (eqs. 16-17;
    # issue 12 D9: it was B·H_e·W_e = 8). Σ Ψ^0.5 = 1 + √0.5; Σ (Δ_h² + Δ_w²) = 2.5.
    paper = LossConfig(variant="paper", area_power=0.5)
    loss, terms = ttame_loss(logits, y, psi, paper)
    want = {"ce": 1.5 * ce, "area": 2.0 * (1 + math.sqrt(0.5)) / 16, "tv": 0.01 * 2.5 / 32}
    for name, value in want.items():
        np.testing.assert_allclose(float(terms[name]), value, rtol=1e-6)
    np.testing.assert_allclose(float(loss), sum(want.values()), rtol=1e-6)


def test_loss_config_validation():
    assert from_dict({"loss": {"variant": "paper"}}).loss.variant == "paper"
    assert LossConfig().errors() == []
    # Sections do not raise on construction: the problems are listed, and raised by the
    # checked conversions and by the loss itself.
    bad = LossConfig(variant="literal")
    assert any("variant" in e for e in bad.errors())
    with pytest.raises(ValueError, match="variant"):
        from_dict({"loss": {"variant": "literal"}})
    with pytest.raises(ValueError, match="variant"):
        ttame_loss(jnp.zeros((2, 2)), jnp.array([0, 1]), _psi_b2(), bad)
    with pytest.raises(ValueError, match="unknown field"):
        from_dict({"loss": {"lambda5": 1.0}})
    assert LossConfig().psi_selection == "auto"  # the paper's / reference's selection
    with pytest.raises(ValueError, match="psi_selection must be one of"):
        from_dict({"loss": {"psi_selection": "diagonal"}})


# ---------------------------------------------------------------- masking


def test_masking_cnn_vs_vit_hand_values():
    x = jnp.ones((1, 2, 2, 3))
    x = x.at[0, 0, 0].set(0.5)
    mask = jnp.full((1, 1, 1), 0.5)  # resized to a constant 0.5 everywhere
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    cnn = np.asarray(mask_images(x, mask, "cnn", mean, std))
    vit = np.asarray(mask_images(x, mask, "vit", mean, std))
    # CNN: (0.5·x - 0.5) / 0.25 -> x=1: 0, x=0.5: -1.  ViT: 0.5·(x - 0.5)/0.25 -> 1, 0.
    np.testing.assert_allclose(cnn[0, 1, 1], [0.0] * 3, atol=1e-7)
    np.testing.assert_allclose(cnn[0, 0, 0], [-1.0] * 3, atol=1e-7)
    np.testing.assert_allclose(vit[0, 1, 1], [1.0] * 3, atol=1e-7)
    np.testing.assert_allclose(vit[0, 0, 0], [0.0] * 3, atol=1e-7)


def test_masking_upsamples_each_images_own_map():
    x = jnp.ones((2, 1, 4, 3))
    mask = jnp.array([[[0.0, 1.0]], [[1.0, 1.0]]])  # (B=2, 1, 2)
    got = np.asarray(mask_images(x, mask, "vit", (0.0,) * 3, (1.0,) * 3))
    np.testing.assert_allclose(got[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-7)
    np.testing.assert_allclose(got[1, 0, :, 0], [1.0] * 4, atol=1e-7)


def test_masking_rule_auto_picks_kind():
    assert masking_rule("auto", "vit") == "vit"
    assert masking_rule("auto", "cnn") == "cnn"
    assert masking_rule("vit", "cnn") == "vit"
    with pytest.raises(ValueError, match="masking"):
        masking_rule("both", "cnn")
