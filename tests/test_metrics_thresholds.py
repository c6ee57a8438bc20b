"""Quantiles and kept/removed masks: NumPy, pytorch-grad-cam and hand-computed references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import (
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)

from ttame_jax.metrics import percentile_keep, quantile, rank_keep, soft_keep


def _maps(rng, n=3, size=20):
    maps = rng.random((n, size, size)).astype(np.float32)
    maps[1] = np.round(maps[1] * 4) / 4  # ties
    return maps


@pytest.mark.parametrize("q", [0.0, 0.1, 0.15, 0.3, 0.5, 0.7, 0.85, 0.9, 1.0])
def test_quantile_bit_exact_with_numpy(q):
    values = _maps(np.random.default_rng(0)).reshape(3, -1)
    ref = np.array([np.percentile(v, round(100 * q, 9)) for v in values], np.float32)
    np.testing.assert_array_equal(np.asarray(quantile(jnp.asarray(values), q)), ref)


def test_soft_keep_hand_computed():
    maps = np.arange(16, dtype=np.float32).reshape(1, 4, 4) / 15
    # 0.5-quantile of 0..15 is 7.5 -> values 0..7 zeroed, 8..15 kept unchanged
    expected = np.where(maps < 7.5 / 15, 0.0, maps)
    np.testing.assert_array_equal(np.asarray(soft_keep(jnp.asarray(maps), 0.5)), expected)
    np.testing.assert_array_equal(np.asarray(soft_keep(jnp.asarray(maps), 1.0)), maps)
    # 0.85-quantile: index 12.75 -> 12.75/15; 13, 14, 15 survive
    assert int((np.asarray(soft_keep(jnp.asarray(maps), 0.15)) > 0).sum()) == 3


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("removed", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_percentile_keep_matches_grad_cam(order, removed):
    maps = _maps(np.random.default_rng(1))
    cls = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    # An "imputer" that returns the binary mask pytorch-grad-cam hands to it (1 = kept).
    rule = cls(round(100 - 100 * removed), lambda image, mask: mask)
    ref = np.stack([rule(None, torch.tensor(m)).numpy() > 0.5 for m in maps])
    ours = np.asarray(percentile_keep(jnp.asarray(maps), removed, order))
    np.testing.assert_array_equal(ours, ref)


def test_percentile_keep_removes_all_ties():
    maps = np.zeros((1, 4, 4), np.float32)
    maps[0, 0] = 1.0  # 4 of 16 pixels tied at the top
    keep = np.asarray(percentile_keep(jnp.asarray(maps), 0.1, "morf"))
    assert (~keep).sum() == 4  # strict '<': all tied maxima go, not 10 %


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_rank_keep_removes_exactly_k_in_order(order):
    maps = np.random.default_rng(2).permutation(100).reshape(1, 10, 10).astype(np.float32) / 99
    for removed in (0.1, 0.35, 0.9):
        keep = np.asarray(rank_keep(jnp.asarray(maps), removed, order, jax.random.key(0)))
        k = int(100 * removed)
        assert (~keep).sum() == k
        gone = np.sort(maps[~keep])
        expected = np.sort(maps.ravel())[-k:] if order == "morf" else np.sort(maps.ravel())[:k]
        np.testing.assert_array_equal(gone, expected)


def test_rank_keep_breaks_ties_and_nests_levels():
    maps = jnp.zeros((2, 8, 8))  # all tied: jitter decides, exactly k removed anyway
    key = jax.random.key(3)
    small = np.asarray(rank_keep(maps, 0.25, "morf", key))
    large = np.asarray(rank_keep(maps, 0.5, "morf", key))
    assert ((~small).sum(axis=(1, 2)) == 16).all() and ((~large).sum(axis=(1, 2)) == 32).all()
    assert not np.any(~small & large)  # removed at 25 % => removed at 50 %


def test_bad_order_raises():
    with pytest.raises(ValueError, match="order must be"):
        percentile_keep(jnp.zeros((1, 4, 4)), 0.1, "most")
