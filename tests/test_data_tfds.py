"""TFDS sources without TensorFlow: tfds mock data, and a tiny real array_record dataset."""

import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T

from ttame_jax.config import DataConfig
from ttame_jax.data import build_source, tfds_source
from ttame_jax.data.source import DataSource

tfds = pytest.importorskip("tensorflow_datasets")

S = 32
EVAL = T.Compose([T.Resize(37), T.CenterCrop(S), T.ToTensor()])


def _hwc(t):
    return t.permute(1, 2, 0).numpy()


def _record(source, i):
    """The TFDS record index behind example i (from its description "name/split[k]")."""
    return int(re.search(r"\[(\d+)\]$", source.describe(i)).group(1))


def test_mock_imagenet2012_val_test_train():
    # The mock makes decoded arrays only (encoding fake images would need TensorFlow), so
    # this path uses TFDS's decoder; the array_record tests below cover the default one.
    cfg = DataConfig(name="imagenet_tfds", val_size=3, test_size=4, tfds_decoder="tfds")
    with tfds.testing.mock_data(num_examples=10):
        val = build_source(cfg, "val", input_size=S, seed=0)
        test = build_source(cfg, "test", input_size=S, seed=0)
        train = build_source(cfg, "train", input_size=S, seed=0)
        raw = tfds.data_source("imagenet2012", split="validation")
        batch = next(val.batches(3))
        train_batch = next(train.batches(4, shuffle=True, augment=True))
        refs = [raw[_record(val, i)] for i in range(len(val))]
    assert (len(val), len(test), len(train)) == (3, 4, 10)
    assert not {_record(val, i) for i in range(3)} & {_record(test, i) for i in range(4)}
    assert val.num_classes == 1000 and val.class_names[:2] == ("n01440764", "n01443537")
    assert batch["image"].shape == (3, S, S, 3) and batch["image"].dtype == np.float32
    assert train_batch["image"].shape == (4, S, S, 3)
    for k, ref in enumerate(refs):
        assert batch["label"][k] == ref["label"]
        expected = _hwc(EVAL(Image.fromarray(ref["image"])))
        np.testing.assert_array_equal(batch["image"][k], expected)


class TtameTinyImagenet(tfds.core.GeneratorBasedBuilder):
    """5 train (one corrupt) and 9 validation images, written without TensorFlow."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["n01", "n02", "n03"]),
                    "file_name": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(5, 1), "validation": self._generate_examples(9)}

    def _generate_examples(self, n, corrupt=None):
        for i in range(n):
            yield i, {"image": _jpeg(i), "label": i % 3, "file_name": f"img{i}.JPEG"}
            if i == corrupt:
                yield "bad", {"image": b"\xff\xd8garbage", "label": 0, "file_name": "bad.JPEG"}


def _jpeg(i):
    rng = np.random.default_rng(i)
    arr = rng.integers(0, 256, (40 + i, 60 - i, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    TtameTinyImagenet(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def _tiny_cfg(data_dir, **kw):
    return DataConfig(
        name="imagenet_tfds", tfds_name="ttame_tiny_imagenet", data_dir=data_dir, **kw
    )


@pytest.mark.parametrize("decoder", ["pil", "tfds"])
def test_real_array_record_read_without_tensorflow(tiny_dir, decoder):
    cfg = _tiny_cfg(tiny_dir, val_size=4, test_size=3, split_seed=1, tfds_decoder=decoder)
    val = build_source(cfg, "val", input_size=S, seed=0)
    test = build_source(cfg, "test", input_size=S, seed=0)
    assert (len(val), len(test)) == (4, 3) and val.class_names == ("n01", "n02", "n03")
    assert not {_record(val, i) for i in range(4)} & {_record(test, i) for i in range(3)}
    raw = tfds.data_source("ttame_tiny_imagenet", split="validation", data_dir=tiny_dir)
    batch = next(val.batches(4))
    # The DataSource interface: start= skips whole batches.
    assert isinstance(val, DataSource)
    later = next(val.batches(2, start=1))
    np.testing.assert_array_equal(later["index"], batch["index"][2:])
    np.testing.assert_array_equal(later["image"], batch["image"][2:])
    for k in range(4):
        example = raw[_record(val, batch["index"][k])]
        i = int(re.search(rb"img(\d+)", example["file_name"]).group(1))
        expected = _hwc(EVAL(Image.open(io.BytesIO(_jpeg(i))).convert("RGB")))
        np.testing.assert_array_equal(batch["image"][k], expected)
        assert batch["label"][k] == i % 3


@pytest.mark.parametrize("decoder", ["pil", "tfds"])
def test_corrupt_record_is_skipped_and_counted(tiny_dir, caplog, decoder):
    train = build_source(_tiny_cfg(tiny_dir, tfds_decoder=decoder), "train", input_size=S, seed=0)
    assert len(train) == 6
    with caplog.at_level("WARNING"):
        batches = list(train.batches(4, shuffle=True, augment=True))
    assert sum(len(b["index"]) for b in batches) == 5
    assert train.skipped == 1 and "skipping unreadable image ttame_tiny_imagenet/train[" in (
        caplog.text
    )


def test_jpeg_draft_reaches_our_decoder(tiny_dir, monkeypatch):
    # The tiny JPEGs are too small to be reduced, so the draft only shows in the call.
    from ttame_jax.data import preprocess

    calls, load = [], preprocess.load_image
    spy = lambda data, draft=None: calls.append(draft) or load(data, draft)  # noqa: E731
    monkeypatch.setattr(preprocess, "load_image", spy)
    cfg = _tiny_cfg(tiny_dir, val_size=2, test_size=2, jpeg_draft=True)
    val = build_source(cfg, "val", input_size=S, seed=0)
    assert len(next(val.batches(2))["index"]) == 2 and calls == [37, 37]  # R for S = 32
    with pytest.raises(ValueError, match="jpeg_draft needs our JPEG decoder"):
        tfds_source.build_source("val", input_size=S, seed=0, decoder="tfds", jpeg_draft=True)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
    cfg = DataConfig(name="imagenet_tfds", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        build_source(cfg, "train", input_size=S, seed=0)
    message = str(info.value)
    assert "ILSVRC2012_img_train.tar" in message
    assert f"tfds build imagenet2012 --data_dir={tmp_path}" in message
    assert "--file_format=array_record" in message


def test_dataset_prepared_as_tfrecord_says_to_rebuild(tiny_dir, tmp_path):
    # Same files, but metadata claiming the (default) tfrecord format, as a dataset built
    # without --file_format=array_record would have.
    copy = tmp_path / "tfds"
    shutil.copytree(tiny_dir, copy)
    info = copy / "ttame_tiny_imagenet" / "1.0.0" / "dataset_info.json"
    info.write_text(info.read_text().replace('"array_record"', '"tfrecord"'))
    with pytest.raises(FileNotFoundError, match="probably in the tfrecord format"):
        build_source(_tiny_cfg(str(copy)), "val", input_size=S, seed=0)
