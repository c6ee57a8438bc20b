"""Draft (reduced-scale) JPEG decoding, ``data.jpeg_draft``: bounded against torchvision's
full decode, and exactly the default path wherever no reduction applies."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from test_data_preprocess import _photo, _torch_hwc
from torchvision import transforms as T

from ttame_jax.config import DataConfig, from_dict
from ttame_jax.data import build_source, preprocess

S = 112  # R = 128: a JPEG is reduced when both sides are >= 2x its resize target


def _jpeg(width, height, mode="RGB", quality=90):
    buf = io.BytesIO()
    _photo(width, height, mode=mode, seed=width).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _torchvision_eval(data: bytes, input_size: int = S) -> np.ndarray:
    """torchvision's ImageFolder path on the same bytes: full decode, Resize, CenterCrop."""
    resize = preprocess.resize_size(input_size)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return _torch_hwc(T.Compose([T.Resize(resize), T.CenterCrop(input_size), T.ToTensor()])(img))


def _drafted_size(data: bytes, input_size: int = S) -> tuple[int, int]:
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", preprocess.short_side_size(*img.size, preprocess.resize_size(input_size)))
    return img.size


# (width, height, mean bound in 1/255): sizes not divisible by the scale, both orientations.
# Reduced to just above the target (scale 2, reduced ~1x-1.2x the target) the final resize
# barely filters; reduced to >= 1.5x the target it smooths the DCT-scaled pixels. Measured
# means: 1.43-1.49 and 0.53-0.69; the same code without the resize's box alignment
# (pixel centres shifted by the reduced image's padding) gives 1.93-2.01 and 0.97-1.00.
CASES = [(263, 259, 1.6), (301, 263, 1.6), (261, 300, 1.6), (527, 403, 0.8), (1103, 601, 0.8)]
CASES += [(601, 1103, 0.8), (900, 700, 0.8)]


@pytest.mark.parametrize(("width", "height", "mean_bound"), CASES)
def test_draft_is_within_bound_of_torchvision(width, height, mean_bound):
    data = _jpeg(width, height)
    assert _drafted_size(data) != (width, height)  # the case really is reduced
    ours = preprocess.eval_transform(preprocess.load_image(data, 128), S)
    diff = np.abs(ours - _torchvision_eval(data)) * 255
    assert ours.shape == (S, S, 3) and ours.dtype == np.float32
    assert 0 < diff.max() <= 16  # not exact (it is another decode), and bounded
    assert diff.mean() <= mean_bound


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_draft_of_grey_and_cmyk_jpegs_gives_rgb_within_bound(mode):
    data = _jpeg(527, 403, mode=mode)
    img = preprocess.load_image(data, 128)
    assert img.mode == "RGB" and img.size == preprocess.short_side_size(527, 403, 128)
    diff = np.abs(preprocess.eval_transform(img, S) - _torchvision_eval(data)) * 255
    assert 0 < diff.max() <= 16 and diff.mean() <= 1.0  # CMYK: 0.81


@pytest.mark.parametrize("size", [(255, 300), (600, 250), (300, 200)])
def test_jpegs_under_twice_the_target_are_exact(size):
    data = _jpeg(*size)
    assert _drafted_size(data) == size  # no reduction applies
    ours = preprocess.eval_transform(preprocess.load_image(data, 128), S)
    np.testing.assert_array_equal(ours, _torchvision_eval(data))


def test_non_jpeg_is_exact_with_draft():
    buf = io.BytesIO()
    _photo(600, 500, seed=2).save(buf, "PNG")  # large, but PNG has no reduced decoding
    data = buf.getvalue()
    ours = preprocess.eval_transform(preprocess.load_image(data, 128), S)
    np.testing.assert_array_equal(ours, _torchvision_eval(data))


def _folder(root):
    for k, size in enumerate([(527, 403), (250, 200), (400, 640), (200, 150)]):
        path = root / "train" / f"n0{k % 2}" / f"{k}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_jpeg(*size))
    return root


def test_config_option_reaches_the_image_folder_loader(tmp_path):
    root = _folder(tmp_path)
    exact_cfg = DataConfig(root=str(root), num_workers=2)
    draft_cfg = DataConfig(root=str(root), num_workers=2, jpeg_draft=True)
    exact = build_source(exact_cfg, "train", input_size=S, seed=3)
    draft = build_source(draft_cfg, "train", input_size=S, seed=3)
    for augment in (False, True):  # the eval and the train (random crop + flip) paths
        (a,) = exact.batches(4, epoch=1, shuffle=True, augment=augment)
        (b,) = draft.batches(4, epoch=1, shuffle=True, augment=augment)
        np.testing.assert_array_equal(a["index"], b["index"])
        diff = np.abs(a["image"] - b["image"]).max(axis=(1, 2, 3)) * 255
        reduced = [draft.describe(i).endswith(("0.JPEG", "2.JPEG")) for i in a["index"]]
        for d, r in zip(diff, reduced, strict=True):
            # Same crop windows; only the two reducible files differ, within the bound.
            assert (0 < d <= 16) if r else d == 0


def test_config_default_and_checks():
    assert DataConfig().jpeg_draft is False  # today's exact decoding
    for name, extra in (("synthetic", {}), ("imagenet_tfds", {"tfds_decoder": "tfds"})):
        cfg = DataConfig(name=name, jpeg_draft=True, **extra)
        assert any("data.jpeg_draft applies to our JPEG decoder only" in e for e in cfg.errors())
    assert DataConfig(name="imagenet_tfds", jpeg_draft=True).errors() == []
    with pytest.raises(ValueError, match="data.jpeg_draft must be true or false"):
        from_dict({"data": {"jpeg_draft": "yes"}})


def test_old_run_directories_keep_exact_decoding_and_a_change_is_seen(tmp_path):
    from ttame_jax import rundir
    from ttame_jax.config import to_dict

    old = to_dict(from_dict({}))
    del old["data"]["jpeg_draft"]  # a config.json written before the field existed
    (tmp_path / rundir.CONFIG_FILE).write_text(json.dumps(old))
    before = rundir.read_config(str(tmp_path))
    assert before.data.jpeg_draft is False
    after = from_dict({"data": {"jpeg_draft": True}})
    assert rundir.config_changes(before, after) == [("data.jpeg_draft", False, True)]
