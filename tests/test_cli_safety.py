"""Issue 14, "never lose a user's work": ``ttame explain`` / ``ttame sanity`` never write
over files they did not create, give every image its own outputs, survive odd images,
and fail early with a clear message; the library checks behind them say what was wrong."""

import json
import os

import numpy as np
import pytest
from flax import serialization
from PIL import Image

from ttame_jax.backbones import load_pretrained
from ttame_jax.cli import common, explain
from ttame_jax.cli.main import main
from ttame_jax.data import preprocess
from ttame_jax.data.loader import ImageSource

S = 64  # synthetic_cnn's input size
EXPLAIN_SUFFIXES = (".overlay.png", ".maps.npy", ".explain.json")


@pytest.fixture(scope="module")
def checkpoint(tiny_run):
    """T-TAME trained 2 steps on synthetic data (random synthetic_cnn backbone; conftest)."""
    return tiny_run


def _image(path, size=(80, 70), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(path)
    return path


def _explain(checkpoint, *inputs, out, extra=()):
    argv = ["explain", *map(str, inputs), "--checkpoint", checkpoint, "--out", str(out),
            "--top-k", "2", "--no-progress", *extra]  # fmt: skip
    return main(argv)


def _tree(root):
    """{relative path: bytes} of every file under ``root``."""
    return {
        os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n), "rb").read()
        for d, _, names in os.walk(root)
        for n in names
    }


# ------------------------------------------------ item 1: never write over others' files


def test_explain_into_the_input_folder_keeps_the_users_files(checkpoint, tmp_path):
    photos = tmp_path / "photos"
    _image(photos / "cat.png")
    (photos / "cat.json").write_text('{"my": "notes"}')
    before = _tree(photos)
    assert _explain(checkpoint, photos, out=photos) == 0
    after = _tree(photos)
    assert {k: after[k] for k in before} == before  # the image and the notes untouched
    assert set(after) - set(before) == {"manifest.json"} | {"cat.png" + s for s in EXPLAIN_SUFFIXES}
    # A second run into the same folder with --overwrite does not explain our overlays.
    assert _explain(checkpoint, photos, out=photos, extra=["--overwrite"]) == 0
    manifest = json.load(open(photos / "manifest.json"))
    assert [r["image"] for r in manifest["images"]] == [str(photos / "cat.png")]
    assert set(_tree(photos)) == set(after)


def test_a_foreign_file_in_the_way_is_never_replaced(checkpoint, tmp_path, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _image(photos / "cat.png")
    out.mkdir()
    (out / "cat.png.explain.json").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert _explain(checkpoint, photos, out=out, extra=extra) == 2
        err = capsys.readouterr().err
        assert "cat.png.explain.json" in err and "not written by ttame" in err
        assert _tree(out) == {"cat.png.explain.json": b"mine"}  # nothing written


def test_a_foreign_manifest_is_never_replaced(checkpoint, tmp_path, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _image(photos / "cat.png")
    out.mkdir()
    (out / "manifest.json").write_text('{"shopping": ["milk"]}')
    assert _explain(checkpoint, photos, out=out, extra=["--overwrite"]) == 2
    assert "not a ttame manifest" in capsys.readouterr().err
    assert _tree(out) == {"manifest.json": b'{"shopping": ["milk"]}'}


def test_overwrite_replaces_only_our_own_outputs(checkpoint, tmp_path, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    _image(photos / "cat.png")
    assert _explain(checkpoint, photos, out=out) == 0
    (out / "cat.png.maps.npy").write_bytes(b"stale")  # our earlier output (manifest lists it)
    (out / "notes.txt").write_text("keep me")
    assert _explain(checkpoint, photos, out=out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _explain(checkpoint, photos, out=out, extra=["--overwrite"]) == 0
    assert np.load(out / "cat.png.maps.npy").shape == (2, S, S)
    assert (out / "notes.txt").read_text() == "keep me"
    # Outputs of the earlier run that this run does not rewrite stay ours (carried over).
    _image(photos / "dog.png", seed=1)
    assert _explain(checkpoint, photos / "dog.png", out=out, extra=["--overwrite"]) == 0
    outputs = set(json.load(open(out / "manifest.json"))["outputs"])
    assert {"cat.png.maps.npy", "dog.png.maps.npy"} <= outputs and "notes.txt" not in outputs


def test_sanity_never_replaces_a_foreign_file(checkpoint, tmp_path, capsys):
    image = _image(tmp_path / "cat.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sanity.png").write_bytes(b"my figure")
    argv = ["sanity", str(image), "--checkpoint", checkpoint, "--out", str(out),
            "--parts", "attention", "--overwrite"]  # fmt: skip
    assert main(argv) == 2
    assert "sanity.png" in capsys.readouterr().err
    assert _tree(out) == {"sanity.png": b"my figure"}
    os.remove(out / "sanity.png")
    assert main(argv) == 0
    assert main(argv[:-1]) == 2  # our own run: only with --overwrite
    assert main(argv) == 0
    manifest = json.load(open(out / "manifest.json"))
    assert set(manifest["outputs"]) == {"sanity.png", "sanity.json", "sanity.csv"}
    assert manifest["complete"] is True


# ------------------------------------------------ item 2: one set of outputs per image


def test_same_names_in_different_folders_get_their_own_outputs(checkpoint, tmp_path):
    _image(tmp_path / "a" / "cat.jpg", seed=1)
    _image(tmp_path / "b" / "cat.jpg", seed=2)
    _image(tmp_path / "cat-2.jpg", seed=3)
    _image(tmp_path / "b" / "cat.png", seed=4)  # same stem, other extension
    _image(tmp_path / "manifest.jpg", seed=5)  # must not collide with the run manifest
    inputs = [tmp_path / "a" / "cat.jpg", tmp_path / "b", tmp_path / "cat-2.jpg",
              tmp_path / "manifest.jpg"]  # fmt: skip
    out = tmp_path / "out"
    assert _explain(checkpoint, *inputs, out=out) == 0
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["command"] == "explain" and manifest["complete"] is True
    rel = ["a/cat.jpg", "b/cat.jpg", "b/cat.png", "cat-2.jpg", "manifest.jpg"]
    assert sorted(os.path.relpath(r["image"], tmp_path) for r in manifest["images"]) == rel
    for record in manifest["images"]:
        name = os.path.relpath(record["image"], tmp_path)
        files = record["files"]
        assert files == {
            "overlay": name + ".overlay.png",
            "maps": name + ".maps.npy",
            "json": name + ".explain.json",
        }
        assert json.load(open(out / files["json"])) == record
    written = set(_tree(out))
    assert written == {"manifest.json"} | {r + s for r in rel for s in EXPLAIN_SUFFIXES}
    assert set(manifest["outputs"]) == written - {"manifest.json"}


def test_output_names_are_unique_by_construction(tmp_path):
    inputs = [str(tmp_path / "x" / "photos"), str(tmp_path / "y" / "photos" / "cat.jpg")]
    files = [str(tmp_path / "x" / "photos" / "cat.jpg"), inputs[1]]
    (tmp_path / "x" / "photos").mkdir(parents=True)  # a folder input
    assert common.output_names(inputs, files) == ["x/photos/cat.jpg", "y/photos/cat.jpg"]
    assert common.output_names(inputs[:1], files[:1]) == ["cat.jpg"]
    # An input folder named like another input's output: refused before anything is written.
    with pytest.raises(ValueError, match="both a file and a folder"):
        common.check_layout(["cat.jpg.explain.json", "cat.jpg.explain.json/dog.jpg.maps.npy"])


# ------------------------------------------------ item 6: odd image sizes are bounded


def _png(path, width, height):
    Image.new("L", (width, height)).save(path, optimize=True)
    return path


def test_an_extreme_aspect_ratio_is_refused_from_the_header(tmp_path):
    path = _png(tmp_path / "line.png", 200_000, 1)
    assert os.path.getsize(path) < 1000
    with pytest.raises(preprocess.ImageSizeError, match="aspect ratio"):
        preprocess.load_image(path)
    with pytest.raises(preprocess.DECODE_ERRORS):  # skipped like a corrupt file
        preprocess.load_image(path)


def test_transforms_check_the_size_before_resizing():
    thin = Image.new("RGB", (4000, 1))  # 1 GB after resizing its short side to 256
    with pytest.raises(preprocess.ImageSizeError, match="1:4000"):
        preprocess.eval_transform(thin, 224)
    with pytest.raises(preprocess.ImageSizeError):
        preprocess.train_transform(thin, 224, np.random.default_rng(0))
    with pytest.raises(preprocess.ImageSizeError):
        preprocess.from_array(np.zeros((1, 4000), np.uint8))


def test_real_photo_shapes_are_accepted():
    assert preprocess.MAX_ASPECT_RATIO >= 20 and preprocess.MAX_PIXELS >= 150_000_000
    for w, h in ((2000, 200), (200, 2000), (1, 1), (30, 1)):  # 1:10 panoramas, tiny images
        preprocess.check_size(w, h)
        assert preprocess.eval_transform(Image.new("RGB", (w, h)), 32).shape == (32, 32, 3)
    with pytest.raises(preprocess.ImageSizeError, match="megapixels"):
        preprocess.check_size(20_000, 20_000)


def test_the_loader_skips_and_counts_an_elongated_image():
    def read(i):
        return Image.new("RGB", (4000, 1) if i == 1 else (20, 18), (i, i, i)), 0

    source = ImageSource(size=4, read=read, input_size=16, seed=0, num_classes=1,
                         class_names=None, num_workers=2)  # fmt: skip
    batches = list(source.batches(4))
    np.testing.assert_array_equal(batches[0]["index"], [0, 2, 3])
    assert source.skipped == 1


def test_explain_skips_odd_images_with_the_reason(checkpoint, tmp_path):
    photos = tmp_path / "photos"
    _image(photos / "ok.png")
    _png(photos / "thin.png", 4000, 1)
    Image.fromarray(np.full((70, 70), np.nan, np.float32), "F").save(photos / "nan.tif")
    out = tmp_path / "out"
    assert _explain(checkpoint, photos, out=out) == 0
    manifest = json.load(open(out / "manifest.json"))
    assert [os.path.basename(r["image"]) for r in manifest["images"]] == ["ok.png"]
    reasons = {os.path.basename(s["path"]): s["error"] for s in manifest["skipped"]}
    assert set(reasons) == {"thin.png", "nan.tif"}
    assert "aspect ratio" in reasons["thin.png"] and "NaN" in reasons["nan.tif"]


# ------------------------------------------------ item 10: NaN pixels


def test_the_batch_check_skips_an_image_with_nan(tmp_path, monkeypatch):
    path = str(_image(tmp_path / "cat.png"))
    good = preprocess.eval_transform

    def with_nan(img, size):
        x = good(img, size)
        x[3, 4, 1] = np.nan
        return x

    monkeypatch.setattr(preprocess, "eval_transform", with_nan)
    [(paths, images, skipped)] = list(explain._batches([path], S, 2))
    assert paths == images == []
    assert skipped[0][0] == path and "NaN" in skipped[0][1]


# ------------------------------------------------ item 11: unusable --out fails first


def _fail_if_loaded(*args):
    raise AssertionError("the checkpoint was loaded before --out was checked")


def test_an_unusable_out_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "load_checkpoint", _fail_if_loaded)
    image = _image(tmp_path / "cat.png")
    (tmp_path / "file.txt").write_text("x")
    for command in ("explain", "sanity"):
        argv = [command, str(image), "--checkpoint", "nowhere", "--out",
                str(tmp_path / "file.txt" / "out")]  # fmt: skip
        assert main(argv) == 2
        assert "--out" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_out_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "load_checkpoint", _fail_if_loaded)
    image = _image(tmp_path / "cat.png")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["explain", str(image), "--checkpoint", "nowhere", "--out", str(out)]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        out.chmod(0o755)


# ------------------------------------------------ item 12: messages name the file


def test_a_text_file_as_pth_weights_names_the_file(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "weights.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(ValueError) as e:
        load_pretrained("synthetic_cnn", path)
    msg = str(e.value)
    assert str(path) in msg and "state_dict" in msg and "weights_only=False" not in msg


def test_a_truncated_msgpack_names_the_file(tmp_path):
    variables = load_pretrained("synthetic_cnn", "random")
    data = serialization.to_bytes(variables)
    path = tmp_path / "weights.msgpack"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as e:
        load_pretrained("synthetic_cnn", path)
    msg = str(e.value)
    assert str(path) in msg and "flax.serialization.to_bytes" in msg and "truncated" in msg
