"""Digitclutter (Spoerer, McClure & Kriegeskorte 2017): images of overlapping digits.

Reproduces the reference generator, which draws each digit with ImageMagick 6
(``-font Helvetica-Bold -pointsize 384 -fill FACE -stroke EDGE -strokewidth 20 -gravity Center
-draw "text dx,dy 'd'"``) on a ``canvas_size`` (512) square of grey ``background`` (119), later
digits over earlier ones, then box-downscales to ``image_size``. What ImageMagick does, and how it
is reproduced here (measured against ImageMagick 6.9.11, bench/digitclutter_reference.py):

- **Font**: "Helvetica-Bold" is URW Nimbus Sans Bold, shipped in ``fonts/`` (the default).
- **Face**: the glyph as FreeType renders it (antialiased coverage), its origin rounded to whole
  pixels; here Pillow's FreeType rendering, identical to ImageMagick's.
- **Outline**: a stroke of width ``stroke_width`` centred on the glyph outline and drawn *over*
  the face: ``w/2`` px of edge grey outside the outline and ``w/2`` inside, so the visible face is
  the glyph shrunk by ``w/2``. ImageMagick's stroke coverage of pixel (row, col) depends only on
  the distance ``d`` from the point (col, row) to the (hinted) outline: 1 up to ``w/2 - 1/4``,
  then ``(w/2 + 3/4 - d)**2``, 0 beyond ``w/2 + 3/4``; computed here from the exact distance to
  the outline flattened into short chords.
- **Placement** (``-gravity Center``): the origin of the glyph (left end of its advance, on the
  baseline) lies at ``x = cx + dx - advance / 2`` and ``y = cy + dy + (ascent + descent) / 2``
  (descent negative, y down), with the advance rounded to whole pixels and the font's ascent
  and descent as ImageMagick reads them (``text_metrics``). The face is drawn at that origin
  rounded to whole pixels, the stroke at the exact point.

Offsets: ``dx ~ U[-0.29, 0.29] * 512``, ``dy ~ U[0.076 - 0.19, 0.076 + 0.19] * 512`` (positive
``dy`` points down), rounded to whole pixels. The canvas is box-downscaled (mean of each block,
like ImageMagick ``-scale``) and rounded to uint8 grey levels (no uint8 wrap-around).

Speed: each digit's face and stroke coverage are computed once; with the dataset's grey levels
they fold into one coverage ``a`` and premultiplied value ``p``, and drawing a digit is
``canvas = canvas * (1 - a) + p`` on the slice it covers, in float32 at full resolution with
integer offsets. Images are generated in chunks across processes; each image has its own random
stream derived from (seed, split, index), so the output is byte-identical for any number of
workers.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iterconv.data import PREPARATION_VERSION

SPLITS = {"train": 0, "val": 1}  # part of each image's seed: the splits never share a seed
X_RANGE = (-0.29, 0.29)  # horizontal offset, fraction of canvas size
Y_RANGE = (0.076 - 0.19, 0.076 + 0.19)  # vertical offset (positive = down), fraction
CHUNK = 500  # images per parallel task
FONT_DIR = Path(__file__).with_name("fonts")
DEFAULT_FONT = FONT_DIR / "NimbusSans-Bold.otf"
# Ascent and descent (em) that ImageMagick uses for Helvetica-Bold: it loads the Type 1
# NimbusSans-Bold with its AFM file, whose Ascender and Descender are 0, and then substitutes
# 1 em and -1/3.5 em. The OpenType file shipped here declares other values (729/-271 units).
DEFAULT_FONT_METRICS_EM = (1.0, -1.0 / 3.5)


def default_font() -> str:
    """Path of the shipped URW Nimbus Sans Bold (ImageMagick's Helvetica-Bold on Linux)."""
    return str(DEFAULT_FONT)


@dataclass(frozen=True)
class DigitclutterParams:
    n_digits: int | tuple[int, int] = 3  # digits per image: n, or an inclusive range (lo, hi)
    n_train: int = 100_000
    n_val: int = 10_000
    seed: int = 0
    font_path: str | None = None  # None: the shipped Nimbus Sans Bold
    image_size: int = 32  # output side; must divide canvas_size
    canvas_size: int = 512
    font_size: int = 384  # pixels per em
    stroke_width: int = 20  # ImageMagick -strokewidth: centred on the outline, over the face
    background: int = 119
    face: int = 0  # grey level of the digits' face (-fill)
    edge: int = 255  # grey level of their outline (-stroke)

    def __post_init__(self) -> None:
        lo, hi = self.digit_range
        if not 1 <= lo <= hi <= 10:
            raise ValueError(f"n_digits must lie in 1..10 with lo <= hi, got {self.n_digits}")
        if self.image_size < 1 or self.canvas_size % self.image_size:
            raise ValueError(
                f"image_size {self.image_size} must divide the canvas size {self.canvas_size}"
            )
        if self.canvas_size % 2:
            raise ValueError(f"canvas_size must be even, got {self.canvas_size}")
        if self.n_train < 0 or self.n_val < 0 or self.seed < 0 or self.stroke_width < 0:
            raise ValueError("n_train, n_val, seed and stroke_width must be non-negative")
        if not all(0 <= v <= 255 for v in (self.background, self.face, self.edge)):
            raise ValueError("background, face and edge must be grey levels 0..255")

    @property
    def digit_range(self) -> tuple[int, int]:
        n = self.n_digits
        return (n, n) if isinstance(n, int) else (int(n[0]), int(n[1]))

    def resolved_font(self) -> str:
        return self.font_path or default_font()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["n_digits"] = (
            list(self.digit_range) if not isinstance(self.n_digits, int) else d["n_digits"]
        )
        return d


def parse_n_digits(text: str) -> int | tuple[int, int]:
    """'3' -> 3, '2-5' -> (2, 5)."""
    lo, sep, hi = text.partition("-")
    if not sep:
        return int(lo)
    return int(lo), int(hi)


# --- sampling -----------------------------------------------------------------------------


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Counter-based stream keyed by (seed, split, index): independent of chunking and order."""
    if not (0 <= seed < 2**64 and 0 <= index < 2**48):
        raise ValueError("seed must be < 2**64 and index < 2**48")
    key = np.array([seed, (SPLITS[split] << 48) | index], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key))


def sample_layout(
    params: DigitclutterParams, split: str, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Digits (drawing order, front-most last) and integer (dx, dy) offsets of one image."""
    rng = image_rng(params.seed, split, index)
    lo, hi = params.digit_range
    n = int(rng.integers(lo, hi + 1))
    digits = rng.permutation(10)[:n]  # distinct within the image
    dx = rng.uniform(*X_RANGE, size=n) * params.canvas_size
    dy = rng.uniform(*Y_RANGE, size=n) * params.canvas_size
    return digits.astype(np.int64), np.rint(np.stack([dx, dy], axis=1)).astype(np.int64)


# --- glyph geometry ------------------------------------------------------------------------


@dataclass(frozen=True)
class TextMetrics:
    """What ImageMagick's ``-gravity Center`` uses to place one digit (pixels)."""

    advance: float  # hinted advance width, whole pixels
    ascent: float  # above the baseline, positive
    descent: float  # below the baseline, negative

    def origin(self, x: float, y: float) -> tuple[float, float]:
        """Glyph origin (left end of the advance, on the baseline) centred at (x, y)."""
        return x - self.advance / 2, y + (self.ascent + self.descent) / 2


def _is_default_font(font_path: str) -> bool:
    return Path(font_path).resolve() == DEFAULT_FONT.resolve()


@functools.lru_cache(maxsize=64)
def text_metrics(font_path: str, font_size: int, digit: int) -> TextMetrics:
    """Advance, ascent and descent as ImageMagick reads them from FreeType.

    Ascent and descent are FreeType's size metrics, or 1 em and -1/3.5 em where the font
    reports no ascender (ImageMagick's substitute); for the shipped font the values ImageMagick
    uses for Helvetica-Bold (``DEFAULT_FONT_METRICS_EM``).
    """
    from matplotlib.ft2font import FT2Font, LoadFlags
    from PIL import ImageFont

    ft = FT2Font(font_path)
    ft.set_size(font_size, 72)  # 72 dpi: the size is in pixels per em
    advance = ft.load_char(ord(str(digit)), flags=LoadFlags.DEFAULT).horiAdvance / 64
    if _is_default_font(font_path):
        ascent, descent = (v * font_size for v in DEFAULT_FONT_METRICS_EM)
    else:
        up, down = ImageFont.truetype(font_path, font_size).getmetrics()
        ascent, descent = (up, -down) if up else (font_size, -font_size / 3.5)
    return TextMetrics(float(advance), float(ascent), float(descent))


@functools.lru_cache(maxsize=64)
def outline_polylines(font_path: str, font_size: int, digit: int) -> tuple[np.ndarray, ...]:
    """The hinted glyph outline relative to its origin (x right, y up), as closed polylines.

    Curves are flattened into chords of about 2 px or less (error below 0.1 px for curve radii
    down to 5 px).
    """
    from matplotlib.ft2font import FT2Font, LoadFlags

    ft = FT2Font(font_path)
    ft.set_size(font_size, 72)
    ft.load_char(ord(str(digit)), flags=LoadFlags.DEFAULT)
    vertices, codes = ft.get_path()
    polys: list[np.ndarray] = []
    current: list[np.ndarray] = []
    i = 0
    while i < len(codes):
        code = int(codes[i])
        if code == 1:  # move to
            if len(current) > 1:
                polys.append(np.array(current))
            current, i = [vertices[i]], i + 1
        elif code == 2:  # line to
            current.append(vertices[i])
            i += 1
        elif code in (3, 4):  # quadratic (2 points) or cubic (3 points) Bezier
            ctrl = np.array([current[-1], *vertices[i : i + code - 1]])
            n = max(2, math.ceil(np.hypot(*np.diff(ctrl, axis=0).T).sum() / 2))
            t = np.linspace(0, 1, n + 1)[1:, None]
            k = len(ctrl) - 1
            weights = [math.comb(k, j) * t**j * (1 - t) ** (k - j) for j in range(k + 1)]
            current.extend(sum(w * p for w, p in zip(weights, ctrl, strict=True)))
            i += code - 1
        elif code == 79:  # close
            current.append(current[0])
            i += 1
        else:
            raise ValueError(f"unexpected path code {code} in {font_path}")
    if len(current) > 1:
        polys.append(np.array(current))
    return tuple(polys)


def stroke_coverage(
    polys: Sequence[np.ndarray], origin: tuple[float, float], shape: tuple[int, int], width: float
) -> np.ndarray:
    """ImageMagick's stroke of ``width`` along the outline placed at ``origin`` (float32).

    Pixel (row, col) is the point (col, row) in the coordinates in which FreeType's pixel
    (row, col) covers [col, col+1] x [row, row+1]; its coverage is ``clip(w/2 + 3/4 - d, 0, 1)**2``
    with ``d`` the distance from that point to the outline (1 for ``d <= w/2 - 1/4``).
    """
    h, w = shape
    half = width / 2
    reach = half + 0.75  # coverage is 0 beyond this distance
    dist = np.full(shape, np.inf, np.float64)
    ox, oy = origin
    for poly in polys:
        pts = np.stack([ox + poly[:, 0], oy - poly[:, 1]], axis=1).tolist()  # y down
        for (ax, ay), (bx, by) in itertools.pairwise(pts):
            c0 = max(math.floor(min(ax, bx) - reach), 0)
            c1 = min(math.ceil(max(ax, bx) + reach) + 1, w)
            r0 = max(math.floor(min(ay, by) - reach), 0)
            r1 = min(math.ceil(max(ay, by) + reach) + 1, h)
            if c0 >= c1 or r0 >= r1:
                continue
            px = np.arange(c0, c1, dtype=np.float64) - ax
            py = np.arange(r0, r1, dtype=np.float64)[:, None] - ay
            ex, ey = bx - ax, by - ay
            length2 = ex * ex + ey * ey
            t = np.clip((px * ex + py * ey) / length2, 0.0, 1.0) if length2 > 0 else 0.0
            d = np.hypot(px - t * ex, py - t * ey)
            np.minimum(dist[r0:r1, c0:c1], d, out=dist[r0:r1, c0:c1])
    return (np.clip(reach - dist, 0.0, 1.0) ** 2).astype(np.float32)


def _face_mask(font, digit: int) -> tuple[np.ndarray, int, int]:
    """Pillow's (FreeType's) coverage of the glyph drawn at an integer origin; (mask, top, left)."""
    mask, (left, top) = font.getmask2(str(digit), "L", anchor="ls")
    width, height = mask.size
    return np.asarray(mask, dtype=np.float32).reshape(height, width) / 255.0, top, left


# --- fast path: pre-rendered glyphs --------------------------------------------------------


@dataclass(frozen=True)
class GlyphLayers:
    """One digit's face and stroke coverage on a common box, relative to the anchor point."""

    face: np.ndarray  # (h, w) float32 face coverage
    stroke: np.ndarray  # (h, w) float32 stroke coverage (drawn over the face)
    top: int  # row of the box relative to the anchor (canvas centre plus offset)
    left: int  # column of the box relative to the anchor

    def composite(self, face: float, edge: float) -> Glyph:
        """``canvas * (1 - a) + p`` for face grey ``face`` and stroke grey ``edge``."""
        keep = 1.0 - self.stroke
        inv_alpha = (1.0 - self.face) * keep
        value = face * self.face * keep + edge * self.stroke
        return Glyph(inv_alpha.astype(np.float32), value.astype(np.float32), self.top, self.left)


@dataclass(frozen=True)
class Glyph:
    inv_alpha: np.ndarray  # (h, w) float32, 1 - coverage
    value: np.ndarray  # (h, w) float32, premultiplied grey value
    top: int  # row of the glyph box relative to the anchor point
    left: int  # column of the glyph box relative to the anchor point


@functools.lru_cache(maxsize=4)
def glyph_layers(font_path: str, font_size: int, stroke_width: int) -> tuple[GlyphLayers, ...]:
    """The ten digits' face and stroke coverage, for an anchor at whole-pixel coordinates."""
    from PIL import ImageFont

    font = ImageFont.truetype(font_path, font_size)
    layers = []
    for d in range(10):
        ox, oy = text_metrics(font_path, font_size, d).origin(0.0, 0.0)
        fx, fy = math.ceil(ox - 0.5), math.ceil(oy - 0.5)  # whole-pixel origin of the face
        mask, mtop, mleft = _face_mask(font, d)
        top, left = fy + mtop, fx + mleft
        bottom, right = top + mask.shape[0], left + mask.shape[1]
        polys = outline_polylines(font_path, font_size, d) if stroke_width > 0 else ()
        if polys:
            pts = np.concatenate(polys)
            reach = math.ceil(stroke_width / 2 + 1)
            left = min(left, math.floor(ox + pts[:, 0].min()) - reach)
            right = max(right, math.ceil(ox + pts[:, 0].max()) + reach + 1)
            top = min(top, math.floor(oy - pts[:, 1].max()) - reach)
            bottom = max(bottom, math.ceil(oy - pts[:, 1].min()) + reach + 1)
        shape = (bottom - top, right - left)
        face = np.zeros(shape, np.float32)
        r, c = fy + mtop - top, fx + mleft - left
        face[r : r + mask.shape[0], c : c + mask.shape[1]] = mask
        if polys:
            stroke = stroke_coverage(polys, (ox - left, oy - top), shape, stroke_width)
        else:
            stroke = np.zeros(shape, np.float32)
        layers.append(GlyphLayers(face, stroke, top, left))
    return tuple(layers)


@functools.lru_cache(maxsize=4)
def render_glyphs(
    font_path: str, font_size: int, stroke_width: int, face: int = 0, edge: int = 255
) -> tuple[Glyph, ...]:
    """The ten digits ready to draw with the given face and stroke grey levels.

    Drawing on background B gives ``B * (1 - a) + p``.
    """
    layers = glyph_layers(font_path, font_size, stroke_width)
    return tuple(g.composite(face, edge) for g in layers)


def compose_full(
    digits: np.ndarray,
    offsets: np.ndarray,
    params: DigitclutterParams,
    canvas: np.ndarray | None = None,
    faces: Sequence[float] | None = None,
    edges: Sequence[float] | None = None,
) -> np.ndarray:
    """One image at full resolution (canvas_size square, float32 grey levels 0..255).

    ``faces`` and ``edges`` give each digit its own grey levels (default: the params').
    """
    font, size, width = params.resolved_font(), params.font_size, params.stroke_width
    if faces is None and edges is None:
        glyphs = render_glyphs(font, size, width, params.face, params.edge)
    else:
        layers = glyph_layers(font, size, width)
        faces = [params.face] * len(digits) if faces is None else faces
        edges = [params.edge] * len(digits) if edges is None else edges
        items = zip(digits, faces, edges, strict=True)
        glyphs = {i: layers[d].composite(f, e) for i, (d, f, e) in enumerate(items)}
    s = params.canvas_size
    if canvas is None:
        canvas = np.empty((s, s), np.float32)
    canvas.fill(params.background)
    for i, (d, (dx, dy)) in enumerate(zip(digits, offsets, strict=True)):
        g = glyphs[d] if isinstance(glyphs, tuple) else glyphs[i]
        top, left = s // 2 + dy + g.top, s // 2 + dx + g.left
        h, w = g.value.shape
        r0, r1, c0, c1 = max(top, 0), min(top + h, s), max(left, 0), min(left + w, s)
        if r0 >= r1 or c0 >= c1:
            continue
        window = canvas[r0:r1, c0:c1]
        window *= g.inv_alpha[r0 - top : r1 - top, c0 - left : c1 - left]
        window += g.value[r0 - top : r1 - top, c0 - left : c1 - left]
    return canvas


def render_scene(
    digits: Sequence[int],
    offsets: Sequence[tuple[int, int]] | np.ndarray,
    params: DigitclutterParams,
    faces: Sequence[float] | None = None,
    edges: Sequence[float] | None = None,
    full: bool = False,
) -> np.ndarray:
    """One scene from explicit parameters: digits in drawing order, their whole-pixel offsets
    (dx, dy; positive dy down) and optionally their face and edge grey levels.

    Returns the ``image_size`` uint8 image, or with ``full`` the float32 canvas.
    """
    digits = np.asarray(digits, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64).reshape(len(digits), 2)
    canvas = compose_full(digits, offsets, params, faces=faces, edges=edges)
    return canvas if full else box_downscale(canvas, params.image_size)


def box_downscale(canvas: np.ndarray, size: int) -> np.ndarray:
    """Mean over each (k x k) block, rounded half up to uint8.

    Rows first (adds whole contiguous rows: fast), then columns of the k-times smaller array.
    """
    k = canvas.shape[0] // size
    sums = canvas.reshape(size, k, -1).sum(axis=1).reshape(size, size, k).sum(axis=2)
    return np.floor(sums / (k * k) + 0.5).clip(0, 255).astype(np.uint8)


def render_full(params: DigitclutterParams, split: str, index: int) -> np.ndarray:
    """Image ``index`` of ``split`` at full resolution (float32), for inspection and tests."""
    digits, offsets = sample_layout(params, split, index)
    return compose_full(digits, offsets, params)


def _generate_chunk(params: DigitclutterParams, split: str, start: int, stop: int) -> dict:
    _, hi = params.digit_range
    n = stop - start
    x = np.empty((n, 1, params.image_size, params.image_size), np.uint8)
    digits = np.full((n, hi), -1, np.int8)
    canvas = np.empty((params.canvas_size, params.canvas_size), np.float32)
    for i in range(n):
        ds, offsets = sample_layout(params, split, start + i)
        x[i, 0] = box_downscale(compose_full(ds, offsets, params, canvas), params.image_size)
        digits[i, : len(ds)] = ds
    return {"x": x, "digits": digits}


def generate(
    params: DigitclutterParams,
    splits: tuple[str, ...] = ("train", "val"),
    workers: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """All images of the given splits, in chunks over one process pool.

    Returns per split: x (N,1,S,S) uint8, y (N,10) uint8 multi-hot, digits (N, max) int8 in
    drawing order padded with -1, n_digits (N,) int8. ``progress(split, k)`` follows each chunk.
    """
    sizes = {"train": params.n_train, "val": params.n_val}
    tasks = [(s, a, min(a + CHUNK, sizes[s])) for s in splits for a in range(0, sizes[s], CHUNK)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    parts: dict[str, list[dict]] = {s: [] for s in splits}
    if workers == 1:
        results = (_generate_chunk(params, *t) for t in tasks)
        pool = None
    else:  # spawn: safe even when the parent already runs torch's thread pools
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=ctx)
        results = (f.result() for f in [pool.submit(_generate_chunk, params, *t) for t in tasks])
    try:
        for (split, a, b), part in zip(tasks, results, strict=True):
            parts[split].append(part)
            if progress:
                progress(split, b - a)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    _, hi = params.digit_range
    out = {}
    for split in splits:
        if parts[split]:
            x = np.concatenate([p["x"] for p in parts[split]])
            digits = np.concatenate([p["digits"] for p in parts[split]])
        else:
            x = np.empty((0, 1, params.image_size, params.image_size), np.uint8)
            digits = np.empty((0, hi), np.int8)
        out[split] = {"x": x, **labels_from_digits(digits)}
    return out


def labels_from_digits(digits: np.ndarray) -> dict[str, np.ndarray]:
    """Multi-hot y (N,10) uint8 and n_digits (N,) int8 from the padded drawing-order labels."""
    valid = digits >= 0
    y = np.zeros((len(digits), 10), np.uint8)
    rows = np.nonzero(valid)[0]
    y[rows, digits[valid]] = 1
    return {"y": y, "digits": digits, "n_digits": valid.sum(axis=1).astype(np.int8)}


# --- straightforward reference (benchmark and tests only) ---------------------------------


def render_reference(digits, offsets, params: DigitclutterParams) -> np.ndarray:
    """Each digit drawn separately on a full 8-bit canvas, then ``Image.BOX`` resize (uint8).

    Pillow draws the face at the digit's rounded origin; the stroke is computed on the whole
    canvas at the exact origin. Shares the metrics, the outline and the stroke rule with the
    fast path, not its pre-rendered boxes, slicing or float32 compositing.
    """
    from PIL import Image, ImageDraw, ImageFont

    path, size = params.resolved_font(), params.font_size
    font = ImageFont.truetype(path, size)
    s = params.canvas_size
    canvas = np.full((s, s), float(params.background))
    for d, (dx, dy) in zip(digits, offsets, strict=True):
        x, y = text_metrics(path, size, int(d)).origin(s / 2 + int(dx), s / 2 + int(dy))
        mask = Image.new("L", (s, s), 0)
        xy = (math.ceil(x - 0.5), math.ceil(y - 0.5))
        ImageDraw.Draw(mask).text(xy, str(int(d)), fill=255, font=font, anchor="ls")
        face = np.asarray(mask, dtype=np.float64) / 255.0
        stroke = np.zeros((s, s))
        if params.stroke_width > 0:
            polys = outline_polylines(path, size, int(d))
            stroke = stroke_coverage(polys, (x, y), (s, s), params.stroke_width)
        canvas = (canvas * (1 - face) + params.face * face) * (1 - stroke)
        canvas = np.floor(canvas + params.edge * stroke + 0.5)  # an 8-bit canvas
    im = Image.fromarray(canvas.astype(np.uint8))
    small = im.resize((params.image_size, params.image_size), Image.BOX)
    return np.asarray(small, dtype=np.uint8)


# --- contact sheet -------------------------------------------------------------------------


def save_contact_sheet(path, x: np.ndarray, digits: np.ndarray, n: int = 64) -> None:
    """PNG grid of the first ``n`` images titled with their digits in drawing order."""
    from matplotlib.figure import Figure

    from iterconv.io import atomic_path

    n = min(n, len(x))
    cols = int(np.ceil(np.sqrt(n))) or 1
    rows = int(np.ceil(n / cols)) or 1
    fig = Figure(figsize=(1.3 * cols, 1.45 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            ax.imshow(x[i, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title("".join(str(d) for d in digits[i] if d >= 0), fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# --- prepared dataset ----------------------------------------------------------------------


def prepare_digitclutter(
    params: DigitclutterParams,
    out,
    *,
    workers: int | None = None,
    name: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Generate both splits and write them as a prepared dataset; returns (manifest, splits)."""
    from iterconv.data.store import check_output_dir, write_prepared
    from iterconv.io import sha256

    out = Path(out)
    check_output_dir(out)
    font = params.resolved_font()
    splits = generate(params, ("train", "val"), workers, progress)
    meta = {**params.to_dict(), "font_file": Path(font).name, "font_sha256": sha256(font)}
    meta["generator_version"] = PREPARATION_VERSION["digitclutter"]
    meta["offset_ranges"] = {"x": list(X_RANGE), "y": list(Y_RANGE), "y_positive": "down"}
    manifest = write_prepared(
        out,
        train=splits["train"],
        val=splits["val"],
        name=name or out.name,
        source="digitclutter",
        num_classes=10,
        multilabel=True,
        augment="none",
        params=meta,
    )
    return manifest, splits
