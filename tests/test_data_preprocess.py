"""Preprocessing parity with torchvision.transforms on identical PIL images."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from ttame_jax.data import preprocess


def _photo(width, height, mode="RGB", seed=0):
    """A smooth random image (so resampling differences would show) in a given mode."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in (0.0, 1.0, 2.0)], -1)
    noise = rng.uniform(-0.2, 0.2, (height, width, 3))
    arr = np.clip((base + noise + 1.2) / 2.4 * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(arr).convert(mode)


def _torch_hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


# (width, height): landscape, portrait, odd centre-crop offsets (x.5 -> banker's rounding in
# torchvision), a short side already equal to 256, and images smaller than the crop.
SIZES = [(500, 375), (375, 500), (341, 257), (256, 300), (120, 90), (257, 1000)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("input_size", [224, 112])
def test_eval_transform_matches_torchvision(size, input_size):
    img = _photo(*size, seed=size[0])
    resize = preprocess.resize_size(input_size)
    ref = T.Compose([T.Resize(resize), T.CenterCrop(input_size), T.ToTensor()])(img)
    ours = preprocess.eval_transform(img, input_size)
    assert ours.dtype == np.float32 and ours.shape == (input_size, input_size, 3)
    # Same PIL resize and the same crop arithmetic: bit-identical, not just within 1/255.
    np.testing.assert_array_equal(ours, _torch_hwc(ref))


def test_resize_size_is_the_256_over_224_ratio():
    assert preprocess.resize_size(224) == 256
    assert preprocess.resize_size(112) == 128
    assert preprocess.resize_size(32) == 37  # 36.57 rounded


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK"])
def test_modes_convert_like_torchvision_pil_loader(mode):
    img = _photo(90, 70, mode=mode, seed=3)
    # torchvision's ImageFolder loader: Image.open(f).convert("RGB").
    ref = T.Compose([T.Resize(73), T.CenterCrop(64), T.ToTensor()])(img.convert("RGB"))
    ours = preprocess.eval_transform(img, 64)
    np.testing.assert_array_equal(ours, _torch_hwc(ref))


def test_sixteen_bit_greyscale_is_rescaled_not_clipped():
    arr = np.array([[0, 32768], [65535, 257]], dtype=np.uint16)
    rgb = preprocess.to_rgb(Image.frombytes("I;16", (2, 2), arr.astype("<u2").tobytes()))
    out = np.asarray(rgb)
    assert out.shape == (2, 2, 3)
    # 65535 -> 255, 32768 -> 127.5 -> 128, 257 -> 1; channels equal.
    np.testing.assert_array_equal(out[..., 0], [[0, 128], [255, 1]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("flip", [False, True])
def test_crop_flip_matches_torchvision_functional(flip):
    img = preprocess.resize_short_side(_photo(300, 200, seed=5), 256)
    top, left, size = 17, 101, 224
    ref = TF.crop(img, top, left, size, size)
    if flip:
        ref = TF.hflip(ref)
    ours = preprocess.crop_flip(img, top, left, size, flip)
    np.testing.assert_array_equal(ours, _torch_hwc(TF.to_tensor(ref)))


def test_sample_crop_covers_the_valid_range():
    rng = np.random.default_rng(0)
    draws = [preprocess.sample_crop(rng, width=230, height=227, size=224) for _ in range(400)]
    tops, lefts, flips = (np.array(v) for v in zip(*draws, strict=True))
    assert set(tops.tolist()) == {0, 1, 2, 3}  # height - size + 1 = 4 positions
    assert set(lefts.tolist()) == set(range(7))
    assert 0.4 < flips.mean() < 0.6


def test_train_transform_is_a_window_of_the_resized_image():
    img = _photo(320, 240, seed=9)
    resized = np.asarray(TF.resize(img, 37), dtype=np.float32) / 255  # torchvision's resize
    out = preprocess.train_transform(img, 32, np.random.default_rng(4))
    windows = [
        resized[i : i + 32, j : j + 32][:, ::step]
        for i in range(resized.shape[0] - 31)
        for j in range(resized.shape[1] - 31)
        for step in (1, -1)
    ]
    assert any(np.array_equal(out, w) for w in windows)


def test_load_image_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.JPEG"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(preprocess.DECODE_ERRORS):
        preprocess.load_image(bad)


def test_from_array_checks_dtype_and_shape():
    with pytest.raises(ValueError, match="uint8"):
        preprocess.from_array(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        preprocess.from_array(np.zeros((4, 4, 2), np.uint8))
    assert preprocess.from_array(np.zeros((4, 5, 1), np.uint8)).size == (5, 4)
