"""Localisation metrics on hand-made 4x4 maps with hand-computed answers."""

import numpy as np
import pytest

from ttame_jax.benchmark import localization as loc


def _mask(*pixels, size=4):
    m = np.zeros((size, size), bool)
    for r, c in pixels:
        m[r, c] = True
    return m


def test_pointing_game_hit_miss_constant_and_ties():
    ev = _mask((0, 0), (0, 1))
    hit = np.zeros((4, 4))
    hit[0, 1] = 0.9
    miss = np.zeros((4, 4))
    miss[3, 3] = 0.9
    constant = np.full((4, 4), 0.5)
    tie_in = np.zeros((4, 4))
    tie_in[0, 0] = tie_in[0, 1] = 1.0  # both maxima inside
    tie_out = np.zeros((4, 4))
    tie_out[0, 0] = tie_out[2, 2] = 1.0  # one maximum outside
    maps = np.stack([hit, miss, constant, tie_in, tie_out])
    got = loc.pointing_game(maps, np.stack([ev] * 5))
    np.testing.assert_array_equal(got, [1, 0, 0, 1, 0])


def test_mass_inside_hand_computed():
    ev = _mask((0, 0), (1, 1))
    m = np.zeros((4, 4))
    m[0, 0], m[1, 1], m[3, 3] = 0.5, 0.25, 0.25  # 0.75 of 1.0 inside
    uniform = np.ones((4, 4))  # 2 of 16 pixels inside
    zero = np.zeros((4, 4))
    got = loc.mass_inside(np.stack([m, uniform, zero]), np.stack([ev] * 3))
    np.testing.assert_allclose(got, [0.75, 2 / 16, 0.0])
    np.testing.assert_allclose(loc.evidence_area(ev[None]), [2 / 16])


def test_counterfactual_needs_both_maps_on_their_own_object():
    ev_a, ev_b = _mask((0, 0), (0, 1)), _mask((3, 3))
    on_a, on_b = np.zeros((4, 4)), np.zeros((4, 4))
    on_a[0, 0] = 1.0
    on_b[3, 3] = 1.0
    # image 0: map A on A, map B on B -> success; image 1: both maps on A -> failure;
    # image 2: maps swapped -> failure.
    maps_a = np.stack([on_a, on_a, on_b])
    maps_b = np.stack([on_b, on_a, on_a])
    evs_a, evs_b = np.stack([ev_a] * 3), np.stack([ev_b] * 3)
    np.testing.assert_array_equal(loc.counterfactual(maps_a, maps_b, evs_a, evs_b), [1, 0, 0])


def test_counterfactual_ignores_overlap_pixels():
    ev_a, ev_b = _mask((0, 0), (1, 1)), _mask((1, 1), (2, 2))
    map_a = np.zeros((4, 4))
    map_a[1, 1], map_a[0, 0] = 1.0, 0.1  # peak on the shared pixel: only 0.1 counts for A
    map_b = np.zeros((4, 4))
    map_b[2, 2] = 1.0
    got = loc.counterfactual(map_a[None], map_b[None], ev_a[None], ev_b[None])
    np.testing.assert_array_equal(got, [1])


def test_extra_metrics_skip_two_object_images():
    ev = np.stack([_mask((0, 0)), _mask((1, 1))])
    maps = np.zeros((2, 4, 4))
    maps[:, 0, 0] = 1.0
    batch = {"evidence": ev, "label": np.array([0, 1]), "label2": np.array([-1, 2])}
    fns = loc.extra_metrics()
    got = fns["pointing_game"](maps, batch)
    assert got[0] == 1.0 and np.isnan(got[1])
    np.testing.assert_allclose(fns["evidence_area"](maps, batch)[:1], [1 / 16])


@pytest.mark.parametrize(
    "maps, mask, match",
    [
        (np.zeros((4, 4)), np.zeros((4, 4), bool), r"\(B, H, W\)"),
        (np.zeros((1, 4, 4)), np.zeros((1, 3, 3), bool), "does not match"),
        (-np.ones((1, 4, 4)), np.zeros((1, 4, 4), bool), "non-negative"),
        (np.full((1, 4, 4), np.nan), np.zeros((1, 4, 4), bool), "finite"),
    ],
)
def test_bad_input_is_explained(maps, mask, match):
    with pytest.raises(ValueError, match=match):
        loc.mass_inside(maps, mask)


def test_evidence_ring_is_the_disc_dilation_minus_the_evidence():
    ev = _mask((3, 3), size=7)
    ring = loc.evidence_ring(ev[None], 1)[0]
    # width 1: the 4 neighbours (the diagonals lie at sqrt(2) > 1)
    np.testing.assert_array_equal(ring, _mask((2, 3), (4, 3), (3, 2), (3, 4), size=7))
    ring2 = loc.evidence_ring(ev[None], 2)[0]
    assert ring2.sum() == 12  # 13 pixel centres within distance 2, minus the centre
    assert not ring2[3, 3] and ring2[1, 3] and ring2[2, 2] and not ring2[1, 2]
    with pytest.raises(ValueError, match="ring width"):
        loc.evidence_ring(ev[None], 0.5)


def test_ring_contrast_signs_and_hand_values():
    ev = _mask((3, 3), size=7)
    ring = _mask((2, 3), (4, 3), (3, 2), (3, 4), size=7)
    on = ev * 1.0  # peak on the object: 1 - 0
    inverted = ring * 0.5  # ring around it: 0 - 0.5
    flat = np.full((7, 7), 0.3)
    got = loc.ring_contrast(np.stack([on, inverted, flat]), np.stack([ev] * 3), 1)
    np.testing.assert_allclose(got, [1.0, -0.5, 0.0])
    empty = loc.ring_contrast(np.zeros((1, 7, 7)), np.zeros((1, 7, 7), bool), 1)
    assert np.isnan(empty[0])
