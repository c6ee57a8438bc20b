"""Source.batches on an in-memory image set: order, determinism, skipping, early exit."""

import random
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ttame_jax.data.loader import ImageSource

N = 23
BAD = {5, 17}


def _read(i, jitter=False):
    """Example i: a flat image of grey level i (so the pixels name the example)."""
    if jitter:  # Make the threads finish out of order.
        time.sleep(random.uniform(0, 0.004))
    if i in BAD:
        raise OSError(f"image {i} is corrupt")
    return Image.new("RGB", (20 + i % 3, 18), (i, i, i)), i % 4


def _source(num_workers=3, seed=0, jitter=False, read=None):
    return ImageSource(
        size=N,
        read=read or (lambda i: _read(i, jitter)),
        input_size=16,
        seed=seed,
        num_classes=4,
        class_names=None,
        num_workers=num_workers,
        split="test",
    )


def _collect(source, **kw):
    return list(source.batches(4, **kw))


def test_eval_pass_in_index_order_with_bad_images_skipped():
    source = _source()
    batches = _collect(source)
    indices = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(indices, [i for i in range(N) if i not in BAD])
    assert [len(b["index"]) for b in batches] == [4, 4, 4, 4, 4, 1]
    for b in batches:
        assert b["image"].dtype == np.float32 and b["image"].shape[1:] == (16, 16, 3)
        assert b["label"].dtype == np.int32 and b["index"].dtype == np.int64
        np.testing.assert_array_equal(b["label"], b["index"] % 4)
        # A flat image of grey level i stays flat at i / 255 through resize and crop.
        expected = np.broadcast_to((b["index"] / 255.0)[:, None, None, None], b["image"].shape)
        np.testing.assert_allclose(b["image"], expected, rtol=1e-6)
    assert source.skipped == 2


def test_drop_remainder_drops_the_short_batch():
    batches = _collect(_source(), drop_remainder=True)
    assert [len(b["index"]) for b in batches] == [4, 4, 4, 4, 4]


def test_order_depends_on_seed_and_epoch_only():
    ref = _collect(_source(num_workers=1), epoch=2, shuffle=True, augment=True)
    again = _collect(_source(num_workers=4, jitter=True), epoch=2, shuffle=True, augment=True)
    for a, b in zip(ref, again, strict=True):
        for key in ("image", "label", "index"):
            np.testing.assert_array_equal(a[key], b[key])
    order = np.concatenate([b["index"] for b in ref])
    assert sorted(order.tolist()) == [i for i in range(N) if i not in BAD]
    assert order.tolist() != sorted(order.tolist())
    other_epoch = np.concatenate([b["index"] for b in _collect(_source(), epoch=3, shuffle=True)])
    other_seed = np.concatenate([b["index"] for b in _collect(_source(seed=1), shuffle=True)])
    assert not np.array_equal(order, other_epoch)
    assert not np.array_equal(_source().order(0, True), other_seed)


def test_skips_are_counted_once_per_image_and_logged(caplog):
    source = _source()
    with caplog.at_level("WARNING", logger="ttame_jax.data.loader"):
        _collect(source, epoch=0)
        _collect(source, epoch=1, shuffle=True)
    assert source.skipped == 2
    text = caplog.text
    assert "skipping unreadable image 5" in text and "image 5 is corrupt" in text
    assert text.count("skipping unreadable image") == 2  # once per image, not per epoch
    assert "skipped 2 unreadable image(s)" in text


def test_all_images_unreadable_raises():
    def broken(i):
        raise OSError("no such file")

    with pytest.raises(RuntimeError, match="first 23 images of this pass could not be read"):
        _collect(_source(read=broken))


def test_a_short_tail_of_bad_images_is_not_an_error():
    # A pass slice that happens to hold only bad images must not raise: starting at batch
    # 11 of 2 leaves only example 22, made unreadable here; the source as a whole is fine.
    source = _source(read=lambda i: _read(i) if i != 22 else _read(17))
    tail = list(source.batches(2, start=11))
    assert tail == [] and source.skipped == 1


def test_early_exit_stops_the_worker_threads():
    before = threading.active_count()
    it = _source(num_workers=4).batches(2)
    next(it)
    it.close()
    assert threading.active_count() == before


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        next(_source().batches(0))
    with pytest.raises(ValueError, match="at least one example"):
        ImageSource(size=0, read=_read, input_size=8, seed=0, num_classes=1, class_names=None)


def _good_source():
    return _source(read=lambda i: (Image.new("RGB", (20, 18), (i, i, i)), i % 4))


def test_start_skips_batches_without_reading_them():
    reads = []

    def counting_read(i):
        reads.append(i)
        return Image.new("RGB", (20, 18), (i, i, i)), i % 4

    full = _collect(_good_source(), epoch=1, shuffle=True)
    resumed = list(_source(read=counting_read).batches(4, epoch=1, shuffle=True, start=2))
    assert len(resumed) == len(full) - 2
    for a, b in zip(full[2:], resumed, strict=True):
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(a["image"], b["image"])
    assert sorted(reads) == sorted(np.concatenate([b["index"] for b in full[2:]]).tolist())
    assert list(_good_source().batches(4, start=99)) == []


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_processes_together_load_the_single_process_global_batches(drop_remainder):
    kw = {"epoch": 4, "shuffle": True, "augment": True, "drop_remainder": drop_remainder}
    one = list(_good_source().batches(6, **kw))  # global batch 6 = 3 processes x 2
    parts = [
        list(_good_source().batches(2, process_index=p, process_count=3, **kw)) for p in range(3)
    ]
    assert len(one) == (3 if drop_remainder else 4)  # 23 examples
    for g, global_batch in enumerate(one):
        rows = [part[g] for part in parts if g < len(part)]
        for key in ("image", "label", "index"):
            joined = np.concatenate([r[key] for r in rows])
            np.testing.assert_array_equal(joined, global_batch[key])
    with pytest.raises(ValueError, match="process_index"):
        next(_good_source().batches(2, process_index=3, process_count=3))
