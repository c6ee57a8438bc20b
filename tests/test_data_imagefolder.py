"""Image-folder sources on a generated ImageNet-like folder with broken and odd files."""

import os

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets.folder import pil_loader

from ttame_jax.config import DataConfig, from_dict
from ttame_jax.data import build_source
from ttame_jax.data.source import DataSource

WNIDS = ("n01440764", "n01443537", "n09999999")
S = 32  # input size; images are resized to 37 then cropped
BROKEN = ("train/n01443537/corrupt.JPEG", "train/n09999999/truncated.JPEG")


def _save(path, img, fmt):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, fmt)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """root/{train,val}/<wnid>/... with JPEGs of several sizes, a grayscale and an RGBA PNG,
    a CMYK JPEG, upper/lower-case extensions, a corrupt and a truncated JPEG, a text file."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 4), ("val", 5)):
        for c, wnid in enumerate(reversed(WNIDS)):  # creation order must not matter
            for k in range(per_class):
                w, h = int(rng.integers(38, 70)), int(rng.integers(38, 70))
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                ext = (".JPEG", ".jpg", ".Jpeg", ".JPG")[k % 4]
                _save(root / split / wnid / f"{split}_{c}_{k}{ext}", Image.fromarray(arr), "JPEG")
    train = root / "train"
    grey = Image.fromarray(rng.integers(0, 256, (50, 40), dtype=np.uint8))
    _save(train / WNIDS[0] / "grey.png", grey, "PNG")
    rgba = Image.fromarray(rng.integers(0, 256, (45, 60, 4), dtype=np.uint8))
    _save(train / WNIDS[1] / "rgba.PNG", rgba, "PNG")
    cmyk = Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).convert("CMYK")
    _save(train / WNIDS[2] / "cmyk.JPEG", cmyk, "JPEG")
    (root / BROKEN[0]).write_bytes(b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 256, 500)))
    good = (train / WNIDS[2] / "train_0_0.JPEG").read_bytes()
    (root / BROKEN[1]).write_bytes(good[: len(good) // 2])
    (train / WNIDS[0] / "notes.txt").write_text("not an image")
    return root


def _cfg(root, **kw):
    return DataConfig(**{"name": "imagefolder", "root": str(root), "num_workers": 2, **kw})


def _all(source, **kw):
    batches = list(source.batches(5, **kw))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_classes_sorted_and_files_found(root):
    source = build_source(_cfg(root), "train", input_size=S, seed=0)
    assert source.class_names == WNIDS and source.num_classes == 3
    assert len(source) == 3 * 4 + 3 + 2  # jpegs + grey/rgba/cmyk + the two broken ones
    names = [source.describe(i) for i in range(len(source))]
    assert not any(n.endswith(".txt") for n in names)
    assert isinstance(source, DataSource)


def test_pass_skips_broken_files_and_labels_follow_folders(root, caplog):
    source = build_source(_cfg(root), "train", input_size=S, seed=0)
    with caplog.at_level("WARNING"):
        out = _all(source)
    assert source.skipped == 2
    assert len(out["index"]) == len(source) - 2
    for broken in BROKEN:
        assert os.path.basename(broken) in caplog.text
    assert "skipped 2 unreadable image(s)" in caplog.text
    assert out["image"].shape == (len(source) - 2, S, S, 3) and out["image"].dtype == np.float32
    assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
    for index, label in zip(out["index"], out["label"], strict=True):
        wnid = os.path.basename(os.path.dirname(source.describe(index)))
        assert WNIDS[label] == wnid


@pytest.mark.parametrize("name", ["grey.png", "rgba.PNG", "cmyk.JPEG", "train_1_1.jpg"])
def test_images_match_torchvision_imagefolder_pipeline(root, name):
    source = build_source(_cfg(root), "train", input_size=S, seed=0)
    index = next(i for i in range(len(source)) if source.describe(i).endswith(name))
    ref = T.Compose([T.Resize(37), T.CenterCrop(S), T.ToTensor()])(
        pil_loader(source.describe(index))
    )
    np.testing.assert_array_equal(source.example(index), ref.permute(1, 2, 0).numpy())


def test_same_seed_same_batches_regardless_of_workers(root):
    kw = {"epoch": 1, "shuffle": True, "augment": True}
    a = _all(build_source(_cfg(root, num_workers=1), "train", input_size=S, seed=7), **kw)
    b = _all(build_source(_cfg(root, num_workers=3), "train", input_size=S, seed=7), **kw)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    c = _all(build_source(_cfg(root), "train", input_size=S, seed=7), epoch=2, shuffle=True)
    assert not np.array_equal(a["index"], c["index"])
    # start= resumes the same epoch at a later batch (the first 5 examples not decoded).
    source = build_source(_cfg(root), "train", input_size=S, seed=7)
    later = list(source.batches(5, start=1, **kw))
    rest = {k: np.concatenate([b[k] for b in later]) for k in later[0]}
    first = next(source.batches(5, **kw))
    for key in a:
        np.testing.assert_array_equal(rest[key], a[key][len(first["index"]) :])


def test_val_and_test_are_disjoint_seeded_selections(root):
    kw = {"val_size": 6, "test_size": 5, "split_seed": 3}
    val = build_source(_cfg(root, **kw), "val", input_size=S, seed=0)
    test = build_source(_cfg(root, **kw), "test", input_size=S, seed=0)
    assert len(val) == 6 and len(test) == 5
    val_files = {val.describe(i) for i in range(len(val))}
    test_files = {test.describe(i) for i in range(len(test))}
    assert not val_files & test_files
    assert all(os.sep + "val" + os.sep in f for f in val_files | test_files)
    again = build_source(_cfg(root, **kw), "val", input_size=S, seed=9)
    assert {again.describe(i) for i in range(len(again))} == val_files
    with pytest.raises(ValueError, match="cannot draw 16 disjoint"):
        build_source(_cfg(root, val_size=8, test_size=8), "val", input_size=S, seed=0)


def test_list_files_choose_images_and_labels(root, tmp_path):
    listing = tmp_path / "test.txt"
    listing.write_text(f"{WNIDS[2]}/val_0_0.JPEG\n{WNIDS[0]}/val_2_1.jpg 1\n{WNIDS[0]}/gone.JPEG\n")
    test = build_source(_cfg(root, test_list=str(listing)), "test", input_size=S, seed=0)
    assert len(test) == 3
    np.testing.assert_array_equal(_all(test)["label"], [2, 1])  # folder label, given label
    assert test.skipped == 1  # the listed file that does not exist
    # val is drawn from the rest, so it never contains the listed test images.
    val = build_source(_cfg(root, test_list=str(listing), val_size=13), "val", input_size=S, seed=0)
    val_files = {os.path.basename(val.describe(i)) for i in range(len(val))}
    assert len(val) == 13 and not val_files & {"val_0_0.JPEG", "val_2_1.jpg"}


def test_lists_of_bare_file_names_work_on_a_class_sorted_folder(root, tmp_path):
    # The paper's lists name flat ILSVRC2012_val_*.JPEG files with an integer label.
    listing = tmp_path / "Evaluation_2000.txt"
    listing.write_text("val_1_3.JPG 7 \nval_0_4.JPEG 0 \n")
    test = build_source(_cfg(root, test_list=str(listing)), "test", input_size=S, seed=0)
    assert [test.describe(i)[len(str(root)) + 1 :] for i in range(2)] == [
        os.path.join("val", WNIDS[1], "val_1_3.JPG"),
        os.path.join("val", WNIDS[2], "val_0_4.JPEG"),
    ]
    np.testing.assert_array_equal(_all(test)["label"], [7, 0])
    assert test.skipped == 0
    val = build_source(_cfg(root, test_list=str(listing), val_size=13), "val", input_size=S, seed=0)
    val_files = {os.path.basename(val.describe(i)) for i in range(len(val))}
    assert not val_files & {"val_1_3.JPG", "val_0_4.JPEG"}


def test_clear_errors_for_missing_or_empty_folders(tmp_path):
    with pytest.raises(ValueError, match="data.root is not set"):
        build_source(DataConfig(name="imagefolder"), "train", input_size=S, seed=0)
    with pytest.raises(FileNotFoundError, match="does not exist.*<wnid>"):
        build_source(_cfg(tmp_path / "nowhere"), "train", input_size=S, seed=0)
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no class folders"):
        build_source(_cfg(tmp_path), "train", input_size=S, seed=0)
    (tmp_path / "train" / WNIDS[0]).mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        build_source(_cfg(tmp_path), "train", input_size=S, seed=0)


def test_dispatcher_rejects_bad_names_and_splits(root):
    with pytest.raises(ValueError, match=r"data.name must be one of .*got 'imagenet'"):
        build_source(DataConfig(name="imagenet"), "train", input_size=S, seed=0)
    with pytest.raises(ValueError, match="unknown split"):
        build_source(_cfg(root), "validation", input_size=S, seed=0)
    tfds_list = DataConfig(name="imagenet_tfds", val_list="x")
    with pytest.raises(ValueError, match="only supported with data.name='imagefolder'"):
        build_source(tfds_list, "val", input_size=S, seed=0)
    # config.data is a typed DataConfig: a plain mapping is refused.
    with pytest.raises(TypeError, match="DataConfig"):
        build_source({"name": "imagefolder", "root": str(root)}, "train", input_size=S, seed=0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("val_size", -1, "data.val_size must be an integer >= 0"),
        ("split_seed", 1.5, "data.split_seed must be an integer"),
        ("num_workers", 0, "data.num_workers must be an integer >= 1"),
        ("prefetch", 0, "data.prefetch must be an integer >= 1"),
        ("tfds_decoder", "cv2", "data.tfds_decoder must be 'pil' or 'tfds'"),
    ],
)
def test_check_config_rejects_bad_values_before_reading_anything(field, value, message):
    cfg = DataConfig(**{"name": "imagenet_tfds", "root": "/nonexistent", field: value})
    assert any(message in e for e in cfg.errors())
    with pytest.raises(ValueError, match=message):
        build_source(cfg, "val", input_size=S, seed=0)
    with pytest.raises(ValueError, match=message):
        from_dict({"data": {"name": "imagenet_tfds", "root": "/nonexistent", field: value}})
    assert DataConfig(name="imagenet_tfds").errors() == []  # defaults are fine


def test_dispatcher_routes_synthetic_to_its_module():
    source = build_source(DataConfig(name="synthetic"), "val", input_size=S, seed=0)
    assert type(source).__module__ == "ttame_jax.data.synthetic"


def test_locked_configdict_with_placeholders(root):
    from ml_collections import config_dict

    cfg = config_dict.ConfigDict()
    cfg.name = "imagefolder"
    cfg.root = str(root)
    cfg.val_list = config_dict.placeholder(str)  # None -> the seeded selection
    cfg.num_workers = config_dict.placeholder(int)
    cfg.val_size = 4
    cfg.test_size = 4
    cfg.lock()
    config = from_dict(config_dict.ConfigDict({"data": cfg}))
    assert config.data.val_list is None and config.data.num_workers is None
    source = build_source(config.data, "val", input_size=S, seed=0)
    assert len(source) == 4 and source.num_workers >= 1
