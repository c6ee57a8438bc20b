"""The seeded val/test selection of the validation set, and list-file parsing."""

import numpy as np
import pytest

from ttame_jax.data import split


def test_default_split_sizes_disjoint_and_sorted():
    val = split.holdout_indices(50_000, "val", seed=0)
    test = split.holdout_indices(50_000, "test", seed=0)
    assert val.shape == (2000,) and test.shape == (2000,)
    assert val.dtype == np.int64
    assert len(np.intersect1d(val, test)) == 0
    assert np.all(np.diff(val) > 0) and np.all(np.diff(test) > 0)
    assert val.min() >= 0 and max(val.max(), test.max()) < 50_000


def test_split_is_fixed_by_its_seed():
    a = split.holdout_indices(1000, "val", val_size=10, test_size=10, seed=3)
    b = split.holdout_indices(1000, "val", val_size=10, test_size=10, seed=3)
    c = split.holdout_indices(1000, "val", val_size=10, test_size=10, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Defined as the first val_size entries of the seeded permutation.
    expected = np.sort(np.random.default_rng(3).permutation(1000)[:10])
    np.testing.assert_array_equal(a, expected)


def test_val_and_test_cover_everything_when_sizes_add_up():
    val = split.holdout_indices(10, "val", val_size=4, test_size=6, seed=1)
    test = split.holdout_indices(10, "test", val_size=4, test_size=6, seed=1)
    np.testing.assert_array_equal(np.sort(np.concatenate([val, test])), np.arange(10))


def test_exclude_draws_only_this_part_from_the_rest():
    fixed_test = np.array([0, 1, 2, 3, 4])
    val = split.holdout_indices(8, "val", val_size=3, test_size=5, seed=0, exclude=fixed_test)
    np.testing.assert_array_equal(val, [5, 6, 7])
    fixed_val = np.array([5, 6, 7])
    test = split.holdout_indices(8, "test", val_size=3, test_size=2, seed=0, exclude=fixed_val)
    assert len(test) == 2 and set(test.tolist()) <= {0, 1, 2, 3, 4}


def test_too_small_a_validation_set_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot draw 4000 disjoint"):
        split.holdout_indices(3000, "val")
    with pytest.raises(ValueError, match="'val' or 'test'"):
        split.holdout_indices(10, "train")
    with pytest.raises(ValueError, match="unknown split"):
        split.check_split("validation")


def test_read_list_parses_paths_labels_and_comments(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# header\n\na/x.JPEG\nb/y.JPEG 7\nc/z.png,n01440764\n")
    assert split.read_list(path) == [
        ("a/x.JPEG", None),
        ("b/y.JPEG", "7"),
        ("c/z.png", "n01440764"),
    ]


def test_read_list_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="list file"):
        split.read_list(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no images"):
        split.read_list(empty)
    bad = tmp_path / "bad.txt"
    bad.write_text("a b c\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        split.read_list(bad)
