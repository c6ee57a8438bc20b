"""Scenes of the synthetic ground-truth benchmark: sampling and rendering in NumPy.

A scene is a textured background, a few *clutter* objects and one or two
*target* objects. The class is the fill pattern of a target (``PATTERNS``, 8
classes: stripes, checkers, dots, grids, zigzags). Clutter objects are filled
with one colour. Nothing else depends on the label:

- targets and clutter take the same shapes (``SHAPES``, drawn at random
  angles), the same sizes and colours from the same distribution (a solid
  object keeps one colour of a pattern's colour pair);
- positions are uniform, and the background is a smooth random two-colour
  field with the same grain noise on every pixel.

So a target's pixels are the only class evidence; they are returned as the
ground-truth mask. Targets are drawn last and clutter never overlaps them, so
the mask is exactly the target's pixels. Every pattern keeps its class under
left-right and up-down flips (the augmentation of the training split).
Everything is deterministic given the ``numpy.random.Generator``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("circle", "square", "triangle", "bar", "cross", "ring")
PATTERNS = (
    "hstripes",
    "vstripes",
    "checker",
    "diamonds",
    "dots",
    "grid",
    "crosshatch",
    "zigzag",
)
CLASS_NAMES = PATTERNS
NUM_CLASSES = len(CLASS_NAMES)

# Distance from the centre to the farthest pixel, in units of the object size r.
# Sizes are chosen so that every shape covers about pi * r^2 pixels.
_EXTENT = {
    "circle": 1.0,
    "square": 0.886 * np.sqrt(2.0),
    "triangle": 1.555,
    "bar": float(np.hypot(0.5, 1.57)),
    "cross": float(np.hypot(1.3, 0.35)),
    "ring": 1.15,
}
_BASE_SIZE = 64.0  # sizes below are in pixels of a 64 x 64 image and scale with it


@dataclasses.dataclass(frozen=True)
class Obj:
    """One object: a shape, filled with one colour or a two-colour pattern."""

    shape: str
    cy: float  # centre, pixels
    cx: float
    r: float  # size, pixels (see _EXTENT)
    angle: float  # rotation, radians
    colors: tuple[tuple[float, float, float], ...]  # 1 (solid) or 2 (pattern) RGB colours
    pattern: str | None  # None = solid
    stripe: int = 2  # stripe / checker cell width, pixels
    phase: tuple[int, int] = (0, 0)

    @property
    def extent(self) -> float:
        return _EXTENT[self.shape] * self.r

    @property
    def label(self) -> int:
        """Class index of a target (its pattern); -1 for a solid object."""
        return -1 if self.pattern is None else PATTERNS.index(self.pattern)


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything needed to render one image (see :func:`render`)."""

    size: int
    bg_colors: tuple[tuple[float, float, float], tuple[float, float, float]]
    waves: tuple[tuple[float, float, float], ...]  # (ky, kx, phase) of the background field
    noise_seed: int
    clutter: tuple[Obj, ...]
    targets: tuple[Obj, ...]

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(t.label for t in self.targets)


def _grid(size: int):
    c = np.arange(size, dtype=np.float32) + 0.5
    return c[:, None], c[None, :]


def _window(obj: Obj, size: int) -> tuple[slice, slice]:
    """The pixel rows and columns that ``obj``'s bounding disc can touch."""
    e = obj.extent + 1.0
    lo_y, lo_x = (max(0, int(np.floor(c - e))) for c in (obj.cy, obj.cx))
    hi_y, hi_x = (min(size, int(np.ceil(c + e)) + 1) for c in (obj.cy, obj.cx))
    return slice(lo_y, hi_y), slice(lo_x, hi_x)


def _local_mask(obj: Obj, rows: slice, cols: slice) -> np.ndarray:
    """Inside-test of the pixel centres in ``rows`` x ``cols``, in the object's frame."""
    dy = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + 0.5 - obj.cy
    dx = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] + 0.5 - obj.cx
    cos, sin = np.cos(obj.angle), np.sin(obj.angle)
    u, v = cos * dy + sin * dx, -sin * dy + cos * dx
    r = obj.r
    if obj.shape == "circle":
        return u**2 + v**2 <= r**2
    if obj.shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.886 * r
    if obj.shape == "triangle":  # equilateral: 3 half-planes at the inradius (R / 2)
        inside = np.ones(u.shape, bool)
        for k in range(3):
            a = 2.0 * np.pi * k / 3.0
            inside &= u * np.cos(a) + v * np.sin(a) <= 0.5 * 1.555 * r
        return inside
    if obj.shape == "bar":
        return (np.abs(u) <= 0.5 * r) & (np.abs(v) <= 1.57 * r)
    if obj.shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.35 * r) & (av <= 1.3 * r)) | ((av <= 0.35 * r) & (au <= 1.3 * r))
    if obj.shape == "ring":
        d2 = u**2 + v**2
        return (d2 >= (0.55 * r) ** 2) & (d2 <= (1.15 * r) ** 2)
    raise ValueError(f"unknown shape {obj.shape!r}; known: {SHAPES}")


def _local_bits(obj: Obj, rows: slice, cols: slice) -> np.ndarray:
    """Pattern colour index in {0, 1} for the pixels in ``rows`` x ``cols``.

    Patterns live in image coordinates (shifted by ``obj.phase``), with cell or
    stripe width ``w = obj.stripe``.
    """
    i = np.arange(rows.start, rows.stop)[:, None] + obj.phase[0]
    j = np.arange(cols.start, cols.stop)[None, :] + obj.phase[1]
    w = obj.stripe
    pattern = obj.pattern
    if pattern == "hstripes":
        bits = i // w % 2 + 0 * j
    elif pattern == "vstripes":
        bits = j // w % 2 + 0 * i
    elif pattern == "checker":
        bits = (i // w + j // w) % 2
    elif pattern == "diamonds":  # a checker turned by 45 degrees
        bits = ((i + j) // w + (i - j + 1000 * w) // w) % 2
    elif pattern == "dots":
        bits = (i % (2 * w) < w) & (j % (2 * w) < w)
    elif pattern == "grid":  # 1 px lines
        bits = (i % (2 * w + 1) == 0) | (j % (2 * w + 1) == 0)
    elif pattern == "crosshatch":  # 1 px diagonal lines
        bits = ((i + j) % (2 * w + 1) == 0) | ((i - j) % (2 * w + 1) == 0)
    elif pattern == "zigzag":  # horizontal stripes bent by a triangle wave
        bits = (i + np.abs(j % (2 * w) - w)) // w % 2
    else:
        raise ValueError(f"unknown pattern {pattern!r}; known: {PATTERNS}")
    return bits.astype(np.intp)


def shape_mask(obj: Obj, size: int) -> np.ndarray:
    """Boolean ``(size, size)`` mask of the pixels whose centre lies inside ``obj``."""
    mask = np.zeros((size, size), bool)
    rows, cols = _window(obj, size)
    mask[rows, cols] = _local_mask(obj, rows, cols)
    return mask


def draw(canvas: np.ndarray, obj: Obj) -> np.ndarray:
    """Paints ``obj`` onto ``canvas`` ``(S, S, 3)`` in place; returns its pixel mask."""
    rows, cols = _window(obj, canvas.shape[0])
    local = _local_mask(obj, rows, cols)
    colors = np.asarray(obj.colors, np.float32)
    patch = canvas[rows, cols]  # a view: writes go to the canvas
    patch[local] = colors[0] if obj.pattern is None else colors[_local_bits(obj, rows, cols)[local]]
    mask = np.zeros(canvas.shape[:2], bool)
    mask[rows, cols] = local
    return mask


def render(scene: Scene, *, with_targets: bool = True):
    """Renders a scene.

    Args:
      scene: from :func:`sample_scene`.
      with_targets: ``False`` renders the same image without its target objects
        (every other pixel identical), i.e. an image of no class.

    Returns:
      ``(image, masks)``: ``image`` uint8 ``(S, S, 3)``; ``masks`` bool
      ``(T, S, S)``, the pixels of each target (all ``False`` when
      ``with_targets`` is off).
    """
    s = scene.size
    yy, xx = _grid(s)
    field = np.zeros((s, s), np.float32)
    for ky, kx, ph in scene.waves:
        field += np.sin(2.0 * np.pi * (ky * yy + kx * xx) / s + ph)
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    c0, c1 = (np.asarray(c, np.float32) for c in scene.bg_colors)
    canvas = c0 * (1.0 - field[..., None]) + c1 * field[..., None]
    for obj in scene.clutter:
        draw(canvas, obj)
    masks = np.zeros((len(scene.targets), s, s), bool)
    if with_targets:
        for k, obj in enumerate(scene.targets):
            masks[k] = draw(canvas, obj)
    grain = np.random.default_rng(scene.noise_seed).standard_normal(canvas.shape, np.float32)
    image = np.clip(canvas + 0.03 * grain, 0.0, 1.0)
    return np.round(image * 255.0).astype(np.uint8), masks


_LUMA = np.array([0.299, 0.587, 0.114])


def _dist_to_segment(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each colour ``c`` ``(..., 3)`` to the segment between ``a`` and ``b``."""
    ab = b - a
    t = np.clip((c - a) @ ab / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(c - (a + t[..., None] * ab), axis=-1)


def _color_pair(rng: np.random.Generator, bg: tuple[np.ndarray, np.ndarray]):
    """Two colours that differ in brightness and stand out from the background.

    Targets and clutter both use this, so their colour distributions match.
    Rejection sampling, 32 candidate pairs at a time.
    """
    while True:
        cand = rng.uniform(0.05, 0.95, (32, 2, 3))
        ok = np.abs(cand @ _LUMA @ np.array([1.0, -1.0])) >= 0.3
        ok &= _dist_to_segment(cand, *bg).min(axis=1) >= 0.25
        if ok.any():
            a, b = cand[int(np.argmax(ok))]
            return tuple(map(float, a)), tuple(map(float, b))


def _new_obj(rng, scale, shape, pattern, bg) -> Obj:
    pair = _color_pair(rng, bg)
    return Obj(
        shape=shape,
        cy=0.0,
        cx=0.0,
        r=float(rng.uniform(6.5, 9.5) * scale),
        angle=float(rng.uniform(0.0, 2.0 * np.pi)),
        # Solid objects keep one colour of a pair, so their colours are distributed
        # exactly like a patterned object's.
        colors=pair if pattern is not None else (pair[int(rng.integers(2))],),
        pattern=pattern,
        stripe=max(1, round(int(rng.integers(2, 4)) * scale)),
        phase=tuple(int(p) for p in rng.integers(0, 6, 2)),
    )


def _place(rng, obj: Obj, placed: list[Obj], size: int, margin: float, tries: int = 64):
    """Puts ``obj`` fully inside the image, its bounding disc clear of ``placed``.

    Draws ``tries`` candidate centres at once and keeps the first that fits;
    returns ``None`` when none does.
    """
    lo, hi = obj.extent + 1.0, size - obj.extent - 1.0
    cand = rng.uniform(lo, hi, (tries, 2))
    ok = np.ones(tries, bool)
    if placed:
        centres = np.array([(p.cy, p.cx) for p in placed])
        gap = np.array([p.extent for p in placed]) + obj.extent + margin
        ok = (np.linalg.norm(cand[:, None] - centres[None], axis=-1) >= gap).all(axis=1)
    if not ok.any():
        return None
    cy, cx = cand[int(np.argmax(ok))]
    return dataclasses.replace(obj, cy=float(cy), cx=float(cx))


def sample_scene(
    rng: np.random.Generator,
    size: int,
    labels: tuple[int, ...],
    *,
    num_clutter: tuple[int, int] = (2, 5),
) -> Scene:
    """Samples a scene holding one target per entry of ``labels``.

    Args:
      rng: the only source of randomness.
      size: image side in pixels (object sizes scale with ``size / 64``).
      labels: class indices of the targets (1 or 2 distinct classes).
      num_clutter: inclusive range of the number of clutter objects.

    Returns:
      A :class:`Scene`; clutter that does not fit next to the targets is dropped.
    """
    if not 1 <= len(labels) <= 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be 1 or 2 distinct classes, got {labels}")
    if size < 32:
        raise ValueError(f"synthetic images need at least 32 px, got size={size}")
    scale = size / _BASE_SIZE
    bg = tuple(rng.uniform(0.05, 0.95, (2, 3)))
    freqs = rng.uniform(-2.5, 2.5, (3, 2))  # cycles per image, (ky, kx) of 3 waves
    phases = rng.uniform(0.0, 2.0 * np.pi, 3)
    waves = tuple((float(k[0]), float(k[1]), float(p)) for k, p in zip(freqs, phases, strict=True))
    placed: list[Obj] = []
    for label in labels:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        obj = _new_obj(rng, scale, shape, PATTERNS[label], bg)
        spot = _place(rng, obj, placed, size, 3.0 * scale)
        while spot is None:  # two large targets may not fit side by side: shrink
            obj = dataclasses.replace(obj, r=0.9 * obj.r)
            spot = _place(rng, obj, placed, size, 3.0 * scale)
        placed.append(spot)
    clutter = []
    for _ in range(int(rng.integers(num_clutter[0], num_clutter[1] + 1))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        obj = _place(rng, _new_obj(rng, scale, shape, None, bg), placed, size, 1.0 * scale)
        if obj is not None:
            placed.append(obj)
            clutter.append(obj)
    return Scene(
        size=size,
        bg_colors=tuple(tuple(map(float, c)) for c in bg),
        waves=waves,
        noise_seed=int(rng.integers(2**31)),
        clutter=tuple(clutter),
        targets=tuple(placed[: len(labels)]),
    )
