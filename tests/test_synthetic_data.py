"""The synthetic benchmark's generator: ground truth, determinism, batches."""

import numpy as np
import pytest

from ttame_jax.config import DataConfig
from ttame_jax.data import build_source, synthetic
from ttame_jax.data import synthetic_scene as scene_lib
from ttame_jax.data.source import DataSource

SIZE = 64


def _source(split="test", n=40, seed=0, two=0.25):
    return synthetic.SyntheticSource(
        split, size=SIZE, num_examples=n, seed=seed, two_object_fraction=two
    )


def _obj(pattern, stripe=2, shape="square", r=20.0):
    return scene_lib.Obj(shape, 32.0, 32.0, r, 0.0, ((0, 0, 0), (1, 1, 1)), pattern, stripe)


@pytest.mark.parametrize(
    "pattern, expected",
    [  # rows 0..4, cols 0..4 of the bit pattern, worked out by hand (stripe w = 2)
        ("hstripes", [[0] * 5, [0] * 5, [1] * 5, [1] * 5, [0] * 5]),
        ("vstripes", [[0, 0, 1, 1, 0]] * 5),
        (
            "checker",
            [[0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [1, 1, 0, 0, 1], [1, 1, 0, 0, 1], [0, 0, 1, 1, 0]],
        ),  # fmt: skip
        ("dots", [[1, 1, 0, 0, 1], [1, 1, 0, 0, 1], [0] * 5, [0] * 5, [1, 1, 0, 0, 1]]),
        ("grid", [[1] * 5, [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]),
    ],
)
def test_pattern_bits_by_hand(pattern, expected):
    bits = scene_lib._local_bits(_obj(pattern), slice(0, 5), slice(0, 5))
    np.testing.assert_array_equal(bits, expected)


def test_every_pattern_is_flip_invariant_up_to_a_shift():
    # The training augmentation flips images; a flipped pattern must be the same
    # pattern (with some phase), else flips would change the class.
    for pattern in scene_lib.PATTERNS:
        bits = scene_lib._local_bits(_obj(pattern, stripe=3), slice(0, 42), slice(0, 42))
        for flipped in (bits[::-1], bits[:, ::-1]):
            ok = any(
                np.array_equal(flipped[dy : dy + 28, dx : dx + 28], bits[:28, :28])
                for dy in range(14)
                for dx in range(14)
            )
            assert ok, pattern


def test_shape_areas_match_pi_r_squared():
    r = 12.0
    for shape in scene_lib.SHAPES:
        area = scene_lib.shape_mask(_obj(None, shape=shape, r=r), SIZE).sum()
        assert abs(area / (np.pi * r**2) - 1.0) < 0.12, (shape, area)


def test_evidence_is_exactly_the_target_pixels():
    src = _source(n=30, two=0.5)
    changed_share = []
    for i in range(len(src)):
        full = src.example(i)
        empty = src.example(i, with_targets=False)
        evidence = full["evidence"] | full["evidence2"]
        assert full["evidence"].any()
        # Removing the targets leaves every other pixel bit-identical ...
        np.testing.assert_array_equal(full["image"][~evidence], empty["image"][~evidence])
        # ... and changes the target pixels (patterned colours vs the background).
        diff = np.abs(full["image"].astype(int) - empty["image"].astype(int)).max(-1)
        changed_share.append((diff[evidence] > 12).mean())
        np.testing.assert_array_equal(empty["evidence"], full["evidence"])
    assert np.mean(changed_share) > 0.9


def test_only_targets_are_patterned_and_clutter_is_solid():
    src = _source(n=50)
    for i in range(len(src)):
        scene = src.scene(i)
        assert all(obj.pattern is None and obj.label == -1 for obj in scene.clutter)
        assert [t.label for t in scene.targets] == list(scene.labels)
        assert all(t.pattern == scene_lib.PATTERNS[t.label] for t in scene.targets)


def test_deterministic_per_seed_and_split():
    a, b = _source(seed=3), _source(seed=3)
    for i in (0, 7, 39):
        for key, value in a.example(i).items():
            np.testing.assert_array_equal(value, b.example(i)[key])
    assert not np.array_equal(a.example(0)["image"], _source(seed=4).example(0)["image"])
    assert not np.array_equal(a.example(0)["image"], _source("val", seed=3).example(0)["image"])
    # An example does not depend on the split size.
    np.testing.assert_array_equal(a.example(5)["image"], _source(n=6, seed=3).example(5)["image"])


def test_two_object_images():
    src = _source(n=200, two=0.25)
    data = src.arrays()
    two = data["label2"] >= 0
    assert 0.15 < two.mean() < 0.35
    assert np.all(data["label2"][two] != data["label"][two])
    assert np.all(data["evidence2"][two].any(axis=(1, 2)))
    assert not np.any(data["evidence"] & data["evidence2"])
    assert not data["evidence2"][~two].any() and np.all(data["label2"][~two] == -1)
    # Only the test split gets two-object images.
    data_cfg = DataConfig(name="synthetic", train_size=4000, val_size=500, test_size=1000)
    train = build_source(data_cfg, "train", input_size=SIZE, seed=0)
    assert train.split == "train" and train._two == 0.0


def test_batches_shapes_order_and_flips():
    src = _source("train", n=10, two=0.0)
    batches = list(src.batches(4, epoch=1, shuffle=True))
    assert [len(b["label"]) for b in batches] == [4, 4, 2]
    b = batches[0]
    assert b["image"].shape == (4, SIZE, SIZE, 3) and b["image"].dtype == np.float32
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
    assert b["label"].dtype == np.int32 and b["index"].dtype == np.int64
    assert b["evidence"].shape == (4, SIZE, SIZE) and b["evidence"].dtype == bool
    assert b["label2"].dtype == np.int32 and b["evidence2"].dtype == bool
    assert sorted(np.concatenate([b["index"] for b in batches])) == list(range(10))
    again = list(src.batches(4, epoch=1, shuffle=True))
    np.testing.assert_array_equal(again[1]["image"], batches[1]["image"])
    assert len(list(src.batches(4, drop_remainder=True))) == 2
    # The DataSource interface: start= skips whole batches of the same order; describe(i).
    assert isinstance(src, DataSource)
    later = list(src.batches(4, epoch=1, shuffle=True, start=1))
    assert len(later) == 2
    for got, want in zip(later, batches[1:], strict=True):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert list(src.batches(4, start=3)) == []
    assert src.describe(7) == "synthetic:train:7"
    # Augmented images and masks are flips of the originals, flipped together.
    ref = next(src.batches(10))
    row = {int(i): k for k, i in enumerate(ref["index"])}
    flipped = 0
    for batch in src.batches(5, epoch=2, shuffle=True, augment=True):
        for k, i in enumerate(batch["index"]):
            img, ev = ref["image"][row[int(i)]], ref["evidence"][row[int(i)]]
            match = [
                np.array_equal(batch["image"][k], img[sy, sx])
                and np.array_equal(batch["evidence"][k], ev[sy, sx])
                for sy in (slice(None), slice(None, None, -1))
                for sx in (slice(None), slice(None, None, -1))
            ]
            assert any(match)
            flipped += not match[0]
    assert flipped > 0


def test_normalisation_constants_match_the_data():
    images = _source("train", n=600, two=0.0).arrays()["image"] / 255.0
    np.testing.assert_allclose(images.mean((0, 1, 2)), synthetic.MEAN, atol=0.02)
    np.testing.assert_allclose(images.std((0, 1, 2)), synthetic.STD, atol=0.02)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="split must be one of"):
        synthetic.SyntheticSource("training", size=SIZE, num_examples=4)
    with pytest.raises(ValueError, match="at least one image"):
        synthetic.SyntheticSource("train", size=SIZE, num_examples=0)
    with pytest.raises(ValueError, match="at least 32 px"):
        synthetic.SyntheticSource("train", size=16, num_examples=2).example(0)
    with pytest.raises(IndexError, match="out of range"):
        _source(n=3).scene(3)


def test_split_is_rendered_once_per_process_and_read_only():
    a, b = _source(n=12, seed=5), _source(n=12, seed=5)
    assert a.arrays() is b.arrays()  # a second source of the same split reuses the pixels
    assert _source(n=12, seed=6).arrays()["image"] is not a.arrays()["image"]
    with pytest.raises(ValueError, match="read-only"):
        a.arrays()["image"][0, 0, 0, 0] = 0
    # Batches are copies: flipping them for augmentation leaves the cached split intact.
    before = a.arrays()["image"].copy()
    for _ in a.batches(4, augment=True, shuffle=True):
        pass
    np.testing.assert_array_equal(a.arrays()["image"], before)
