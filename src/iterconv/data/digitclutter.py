"""Digitclutter (Spoerer, McClure & Kriegeskorte 2017): images of overlapping digits.

Each image is conceptually drawn on a ``canvas_size`` (512) square of grey ``background`` (119):
``n`` distinct digits, each a bold sans glyph at ``font_size`` 384 with a black face and a white
``stroke_width`` (20 px) outline, centred (Pillow anchor "mm") at the canvas centre plus an offset
``dx ~ U[-0.29, 0.29] * 512``, ``dy ~ U[0.076 - 0.19, 0.076 + 0.19] * 512`` (image coordinates:
positive ``dy`` points down), rounded to whole pixels. Later digits occlude earlier ones. The canvas
is then box-downscaled (mean of each block, like ImageMagick ``-scale``) to ``image_size`` and
rounded to uint8 grey levels (no uint8 wrap-around, unlike the reference code).

Speed: each glyph is rendered once with Pillow into a coverage mask ``a`` and a premultiplied value
``p``; drawing a digit is then ``canvas = canvas * (1 - a) + p`` on the slice it covers, in float32
at full resolution with integer offsets (exact up to Pillow's own 8-bit rounding). Images are
generated in chunks across processes; each image has its own random stream derived from
(seed, split, index), so the output is byte-identical for any number of workers.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = {"train": 0, "val": 1}  # part of each image's seed: the splits never share a seed
X_RANGE = (-0.29, 0.29)  # horizontal offset, fraction of canvas size
Y_RANGE = (0.076 - 0.19, 0.076 + 0.19)  # vertical offset (positive = down), fraction
CHUNK = 500  # images per parallel task


def default_font() -> str:
    """Path of DejaVu Sans Bold as shipped with matplotlib (no system font needed)."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")


@dataclass(frozen=True)
class DigitclutterParams:
    n_digits: int | tuple[int, int] = 3  # digits per image: n, or an inclusive range (lo, hi)
    n_train: int = 100_000
    n_val: int = 10_000
    seed: int = 0
    font_path: str | None = None  # None: matplotlib's DejaVu Sans Bold
    image_size: int = 32  # output side; must divide canvas_size
    canvas_size: int = 512
    font_size: int = 384
    stroke_width: int = 20
    background: int = 119

    def __post_init__(self) -> None:
        lo, hi = self.digit_range
        if not 1 <= lo <= hi <= 10:
            raise ValueError(f"n_digits must lie in 1..10 with lo <= hi, got {self.n_digits}")
        if self.image_size < 1 or self.canvas_size % self.image_size:
            raise ValueError(
                f"image_size {self.image_size} must divide the canvas size {self.canvas_size}"
            )
        if self.n_train < 0 or self.n_val < 0 or self.seed < 0:
            raise ValueError("n_train, n_val and seed must be non-negative")

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


# --- fast path: pre-rendered glyphs --------------------------------------------------------


@dataclass(frozen=True)
class Glyph:
    inv_alpha: np.ndarray  # (h, w) float32, 1 - coverage
    value: np.ndarray  # (h, w) float32, premultiplied grey value (outline white, face black)
    top: int  # row of the glyph box relative to the anchor point
    left: int  # column of the glyph box relative to the anchor point


def _draw_digit(image, digit: int, xy: tuple[int, int], font, stroke_width: int) -> None:
    from PIL import ImageDraw

    ImageDraw.Draw(image).text(
        xy, str(digit), font=font, fill=0, stroke_width=stroke_width, stroke_fill=255, anchor="mm"
    )


@functools.lru_cache(maxsize=4)
def render_glyphs(font_path: str, font_size: int, stroke_width: int) -> tuple[Glyph, ...]:
    """The ten digits, each rendered once by Pillow on black and on white.

    Drawing on background B gives ``B * (1 - a) + p``; the renders on B=0 and B=255 give ``p`` and
    ``a`` exactly as Pillow composites them.
    """
    from PIL import Image, ImageFont

    font = ImageFont.truetype(font_path, font_size)
    size = 4 * font_size  # generous: the glyph never touches the border
    c = size // 2
    glyphs = []
    for d in range(10):
        on = {}
        for bg in (0, 255):
            im = Image.new("L", (size, size), bg)
            _draw_digit(im, d, (c, c), font, stroke_width)
            on[bg] = np.asarray(im, dtype=np.float32)
        p, inv_a = on[0], (on[255] - on[0]) / 255.0
        rows, cols = np.nonzero(inv_a < 1.0)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        glyphs.append(
            Glyph(
                np.ascontiguousarray(inv_a[r0:r1, c0:c1]),
                np.ascontiguousarray(p[r0:r1, c0:c1]),
                int(r0 - c),
                int(c0 - c),
            )
        )
    return tuple(glyphs)


def compose_full(
    digits: np.ndarray, offsets: np.ndarray, params: DigitclutterParams, canvas=None
) -> np.ndarray:
    """One image at full resolution (canvas_size square, float32 grey levels 0..255)."""
    glyphs = render_glyphs(params.resolved_font(), params.font_size, params.stroke_width)
    s = params.canvas_size
    if canvas is None:
        canvas = np.empty((s, s), np.float32)
    canvas.fill(params.background)
    for d, (dx, dy) in zip(digits, offsets, strict=True):
        g = glyphs[d]
        top, left = s // 2 + dy + g.top, s // 2 + dx + g.left
        h, w = g.value.shape
        r0, r1, c0, c1 = max(top, 0), min(top + h, s), max(left, 0), min(left + w, s)
        if r0 >= r1 or c0 >= c1:
            continue
        window = canvas[r0:r1, c0:c1]
        window *= g.inv_alpha[r0 - top : r1 - top, c0 - left : c1 - left]
        window += g.value[r0 - top : r1 - top, c0 - left : c1 - left]
    return canvas


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
    """One Pillow font rendering per digit on a full canvas, then ``Image.BOX`` resize (uint8)."""
    from PIL import Image, ImageFont

    font = ImageFont.truetype(params.resolved_font(), params.font_size)
    s = params.canvas_size
    im = Image.new("L", (s, s), params.background)
    for d, (dx, dy) in zip(digits, offsets, strict=True):
        _draw_digit(im, int(d), (s // 2 + int(dx), s // 2 + int(dy)), font, params.stroke_width)
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
