"""Image preprocessing of DESIGN §4, on PIL images, matching torchvision.

Train: resize the short side to R, random crop S x S, random horizontal flip.
Eval: resize the short side to R, centre crop S x S.
R = round(S * 256 / 224) (256 for the usual S = 224). Output: float32 (S, S, 3) in [0, 1],
like torchvision's ``ToTensor`` but channels-last.

Resizing is PIL's bilinear filter (``Image.BILINEAR``), which is what
``torchvision.transforms.Resize(R)`` runs on a PIL image (PIL always filters with a support
scaled to the downsampling factor, i.e. it is antialiased; torchvision's ``antialias`` flag
only matters for tensors). The output size and the centre-crop offsets use torchvision's
arithmetic (``int()`` truncation of the long side, ``int(round(.))`` offsets), so the eval
path is bit-identical to ``Resize(R) + CenterCrop(S) + ToTensor()`` (tested). The opt-in
draft decoding of large JPEGs (``load_image(..., draft_short_side=R)``, ``data.jpeg_draft``)
trades that exactness for speed.

The work per image is bounded: images beyond ``MAX_PIXELS`` pixels or a 1:``MAX_ASPECT_RATIO``
aspect ratio raise :class:`ImageSizeError` (one of ``DECODE_ERRORS``) from their header size,
before they are decoded or resized, and are skipped like corrupt files.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

# Errors PIL raises for unreadable, truncated or corrupt files (and ImageSizeError, a
# ValueError); images that raise one of these are skipped (and counted) by the loader and
# the CLI instead of crashing an epoch or a run.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

# Bounds on the work per image, checked on the header size before decoding and before
# resizing. Resizing the short side to R = 256 makes a 1:A image R x (R * A), so the
# aspect ratio bounds the memory of the resize (1:100 -> 20 MB at R = 256); ImageNet's
# widest panoramas are about 1:10. The pixel count is Pillow's own decompression-bomb
# limit (2 * 89,478,485 ~ 179 megapixels, ~540 MB decoded as RGB), above the largest
# camera sensors (150 MP), enforced here even where Pillow's limit is switched off.
MAX_ASPECT_RATIO = 100
MAX_PIXELS = 2 * 89_478_485


class ImageSizeError(ValueError):
    """An image too elongated or too large to preprocess with bounded memory."""


def check_size(width: int, height: int) -> None:
    """Raises :class:`ImageSizeError` unless a ``width x height`` image is within bounds.

    Bounds: ``MAX_PIXELS`` pixels and a long/short side ratio of ``MAX_ASPECT_RATIO``.
    """
    if width < 1 or height < 1:
        raise ImageSizeError(f"the image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageSizeError(
            f"{width}x{height} image has {width * height / 1e6:.0f} megapixels, more than "
            f"the {MAX_PIXELS / 1e6:.0f} that are read (preprocess.MAX_PIXELS); downscale it"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageSizeError(
            f"{width}x{height} image has aspect ratio 1:{ratio:.0f}, more than the "
            f"1:{MAX_ASPECT_RATIO} that are read (preprocess.MAX_ASPECT_RATIO): resizing its "
            f"short side would need {_resized_mb(width, height):,.0f} MB; crop it first"
        )


def _resized_mb(width: int, height: int, side: int = 256) -> float:
    short, long = sorted((width, height))
    return side * int(side * long / short) * 3 / 1e6


def resize_size(input_size: int) -> int:
    """Short-side resize target for a given crop size: 256 for 224 (ratio 256/224)."""
    return int(round(input_size * 256 / 224))


def to_rgb(img: Image.Image) -> Image.Image:
    """Converts any PIL mode (L, LA, P, RGBA, CMYK, I;16, ...) to 3-channel RGB.

    Alpha is dropped (as torchvision's default ``pil_loader`` does), CMYK uses PIL's
    conversion. 16-bit greyscale ("I;16*", and "I", which PIL uses for 16-bit PNGs) is
    scaled from [0, 65535] to [0, 255] instead of being clipped; float ("F") is clipped to
    [0, 255].
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(
                f"the {img.mode} image has {np.count_nonzero(~np.isfinite(arr))} NaN or "
                f"infinite pixel value(s)"
            )
        if img.mode != "F":
            arr = arr * (255.0 / 65535.0)
        arr = np.clip(np.floor(arr + 0.5), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    return img.convert("RGB")


def load_image(
    source: str | os.PathLike | bytes, draft_short_side: int | None = None
) -> Image.Image:
    """Decodes an image file (path or encoded bytes) into an RGB PIL image.

    With ``draft_short_side`` = R (``data.jpeg_draft``), a JPEG at least twice as large
    as its resize target (short side R, long side as in :func:`short_side_size`) is
    decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (PIL ``Image.draft``; the
    reduced image is never smaller than the target) and resized at once to the target
    with the same bilinear filter, so the transforms' own resize then leaves it as it
    is. The pixels differ from the full decode (docs/data.md, "Draft decoding"); other
    images, and JPEGs less than twice the target, come out exactly as without it.

    Raises:
      One of ``DECODE_ERRORS`` if the file is missing, truncated or not an image, or
      ``ImageSizeError`` (checked on the header, before decoding) if it is out of bounds.
    """
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(fp) as img:
        check_size(*img.size)
        full_size, drafted = img.size, None
        if draft_short_side is not None:
            target = short_side_size(*full_size, draft_short_side)
            drafted = img.draft("RGB", target)  # JPEG: (mode, box); other formats: None.
        img.load()  # Decode now, so corrupt data fails here and not later.
        if drafted is None or img.size == full_size:
            return to_rgb(img)
        # box = (0, 0, W / scale, H / scale): the full image's extent in reduced pixels, so
        # the output pixel centres are those of the full-size resize.
        return to_rgb(img).resize(target, Image.BILINEAR, box=drafted[1])


def from_array(array: np.ndarray) -> Image.Image:
    """Wraps a decoded uint8 array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) as RGB PIL."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"expected an image array (H, W[, 1|3|4]), got shape {array.shape}")
    check_size(array.shape[1], array.shape[0])
    return to_rgb(Image.fromarray(array))


def short_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after resizing the short side to ``size`` (torchvision ``Resize``).

    The long side is ``int(size * long / short)`` (truncated, as torchvision computes it).
    """
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    """Resizes so the short side is ``size`` (torchvision ``Resize(size)`` on PIL)."""
    if min(img.size) == size:
        return img
    return img.resize(short_side_size(*img.size, size), Image.BILINEAR)


def _check_fits(img: Image.Image, size: int) -> None:
    if img.size[0] < size or img.size[1] < size:
        raise ValueError(f"cannot crop {size}x{size} from an image of size {img.size}")


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """PIL crop box (left, top, right, bottom) of torchvision's ``CenterCrop(size)``."""
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def to_float(img: Image.Image, flip: bool = False) -> np.ndarray:
    """RGB PIL image -> float32 (H, W, 3) in [0, 1] (``ToTensor``: uint8 / 255)."""
    arr = np.asarray(img, dtype=np.uint8)
    if flip:
        arr = arr[:, ::-1]
    return arr.astype(np.float32) / np.float32(255.0)


def eval_transform(img: Image.Image, input_size: int) -> np.ndarray:
    """Resize short side to ``resize_size(S)`` + centre crop S -> float32 (S, S, 3) in [0, 1].

    Raises ``ImageSizeError`` (before resizing) for an image out of ``check_size``'s bounds.
    """
    check_size(*img.size)
    img = resize_short_side(to_rgb(img), resize_size(input_size))
    _check_fits(img, input_size)
    return to_float(img.crop(center_crop_box(*img.size, input_size)))


def sample_crop(
    rng: np.random.Generator, width: int, height: int, size: int
) -> tuple[int, int, bool]:
    """Draws (top, left, flip) like ``RandomCrop(size)`` + ``RandomHorizontalFlip(0.5)``.

    ``top`` is uniform on [0, height - size], ``left`` on [0, width - size].
    """
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    flip = bool(rng.random() < 0.5)
    return top, left, flip


def crop_flip(img: Image.Image, top: int, left: int, size: int, flip: bool) -> np.ndarray:
    """Crops the S x S window at (top, left), optionally mirrors it -> float32 (S, S, 3)."""
    return to_float(img.crop((left, top, left + size, top + size)), flip=flip)


def train_transform(img: Image.Image, input_size: int, rng: np.random.Generator) -> np.ndarray:
    """Resize short side + random crop S + random horizontal flip -> float32 (S, S, 3).

    Raises ``ImageSizeError`` (before resizing) for an image out of ``check_size``'s bounds.
    """
    check_size(*img.size)
    img = resize_short_side(to_rgb(img), resize_size(input_size))
    _check_fits(img, input_size)
    top, left, flip = sample_crop(rng, img.size[0], img.size[1], input_size)
    return crop_flip(img, top, left, input_size, flip)
