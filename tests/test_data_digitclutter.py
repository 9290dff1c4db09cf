"""Digitclutter generator: determinism, labels, geometry, and agreement with the reference."""

from __future__ import annotations

import base64
import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pytest

from iterconv.cli import main
from iterconv.data import PREPARATION_VERSION
from iterconv.data import digitclutter as dc
from iterconv.data.prepared import load_prepared

P = dc.DigitclutterParams(n_digits=(2, 5), n_train=600, n_val=100, seed=7)


@pytest.fixture(scope="module")
def data() -> dict:
    return dc.generate(P, workers=1)


def test_deterministic_across_worker_counts(data):
    again = dc.generate(P, workers=2)
    for split in ("train", "val"):
        for key in ("x", "y", "digits", "n_digits"):
            assert again[split][key].tobytes() == data[split][key].tobytes()


def test_shapes_and_dtypes(data):
    train = data["train"]
    assert train["x"].shape == (600, 1, 32, 32) and train["x"].dtype == np.uint8
    assert train["y"].shape == (600, 10) and train["y"].dtype == np.uint8
    assert train["digits"].shape == (600, 5) and train["digits"].dtype == np.int8
    assert train["n_digits"].dtype == np.int8


def test_grey_levels_plausible(data):
    x = data["train"]["x"]
    counts = np.bincount(x.ravel(), minlength=256)
    assert counts.argmax() == 119  # background is the most common level
    assert 0.1 < counts[119] / x.size < 0.8
    assert x.min() < 20 and x.max() > 235  # black faces and white outlines survive downscaling


def test_labels_consistent(data):
    d, y, n = data["train"]["digits"], data["train"]["y"], data["train"]["n_digits"]
    for i in range(len(d)):
        drawn = d[i][d[i] >= 0]
        assert (d[i][len(drawn) :] == -1).all()  # padding only at the end
        assert len(set(drawn.tolist())) == len(drawn) == n[i]  # distinct digits
        assert sorted(np.nonzero(y[i])[0].tolist()) == sorted(drawn.tolist())


def test_digit_count_range_covered(data):
    counts = np.bincount(data["train"]["n_digits"], minlength=6)
    assert counts[:2].sum() == 0 and (counts[2:6] > 100).all()


def test_fixed_digit_count():
    out = dc.generate(dataclasses.replace(P, n_digits=3, n_train=50, n_val=0), ("train",), 1)
    assert (out["train"]["n_digits"] == 3).all() and out["train"]["digits"].shape == (50, 3)


def test_train_and_val_differ(data):
    train = {row.tobytes() for row in data["train"]["x"]}
    assert not any(row.tobytes() in train for row in data["val"]["x"])
    assert dc.sample_layout(P, "train", 3)[1].tolist() != dc.sample_layout(P, "val", 3)[1].tolist()


def test_front_digit_fully_visible():
    for index in range(5):
        digits, offsets = dc.sample_layout(P, "train", index)
        full = dc.render_full(P, "train", index)
        front = digits[-1:], offsets[-1:]
        alone = dc.compose_full(*front, P)
        # Where the front glyph covers completely, its render does not depend on the background.
        on_black = dc.compose_full(*front, dataclasses.replace(P, background=0))
        on_white = dc.compose_full(*front, dataclasses.replace(P, background=255))
        covered = on_black == on_white
        covered &= alone != P.background
        assert covered.sum() > 5000
        np.testing.assert_array_equal(full[covered], alone[covered])


def test_offsets_within_stated_ranges():
    offs = np.concatenate([dc.sample_layout(P, "train", i)[1] for i in range(300)])
    assert offs[:, 0].min() >= round(-0.29 * 512) and offs[:, 0].max() <= round(0.29 * 512)
    assert offs[:, 1].min() >= round(-0.114 * 512) and offs[:, 1].max() <= round(0.266 * 512)
    assert offs[:, 1].mean() > 20  # positive y is down: digits sit 0.076 * 512 below centre


def test_matches_reference_renderer(data):
    for i in range(6):
        digits, offsets = dc.sample_layout(P, "train", i)
        ref = dc.render_reference(digits, offsets, P)
        diff = np.abs(ref.astype(int) - data["train"]["x"][i, 0].astype(int))
        assert diff.max() <= 1  # observed: 0 or 1 grey level (Pillow rounds to 8 bits per draw)


def test_image_size_must_divide_canvas():
    with pytest.raises(ValueError, match="must divide"):
        dc.DigitclutterParams(image_size=30)
    small = dc.generate(dataclasses.replace(P, image_size=16, n_train=4, n_val=0), ("train",), 1)
    assert small["train"]["x"].shape == (4, 1, 16, 16)


def test_parse_n_digits():
    assert dc.parse_n_digits("3") == 3 and dc.parse_n_digits("2-5") == (2, 5)


def test_cli_end_to_end(tmp_path, capsys):
    out, sheet = tmp_path / "digits", tmp_path / "sheet.png"
    argv = ["digitclutter", "--out", str(out), "--n-digits", "2-3", "--n-train", "64"]
    argv += ["--n-val", "32", "--seed", "1", "--workers", "1", "--contact-sheet", str(sheet)]
    assert main(argv) == 0
    assert "images/s" in capsys.readouterr().err
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = load_prepared(out)
    assert data.multilabel and data.num_classes == 10 and data.augment == "none"
    assert tuple(data.train_x.shape) == (64, 1, 32, 32) and tuple(data.val_y.shape) == (32, 10)
    assert data.manifest["params"]["n_digits"] == [2, 3]
    assert data.manifest["params"]["font_file"] == "NimbusSans-Bold.otf"
    assert data.manifest["params"]["generator_version"] == PREPARATION_VERSION["digitclutter"] == 2
    assert abs(data.mean.item() - data.train_x.float().mean().item() / 255) < 1e-6
    with np.load(out / "train.npz") as npz:
        assert set(npz.files) == {"x", "y", "digits", "n_digits"}
    # Regenerating gives the same bytes (the manifest records the same checksums).
    first = (out / "manifest.json").read_text()
    assert main(argv) == 0
    assert (out / "manifest.json").read_text() == first


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--n-digits", "5-2"], "n_digits"),
        (["--image-size", "30"], "must divide"),
        (["--font", "/nonexistent.ttf"], "font file not found"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, extra, message):
    argv = ["digitclutter", "--out", str(tmp_path / "d"), "--n-train", "4", "--n-val", "4"]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["digitclutter", "--out", str(blocker / "d"), "--n-train", "4", "--n-val", "4"]
    assert main(argv) == 2
    assert "cannot create output directory" in capsys.readouterr().err


# --- agreement with ImageMagick (the reference generator's renderer) -----------------------

# Measured with ImageMagick 6.9.11-60 Q16 and fonts-urw-base35 20200910 (Helvetica-Bold), commands
# as in bench/digitclutter_reference.py; single digits at offset (0, 0), default parameters.
# Per digit: (ink box: any |v - 119| > 8; face box: v < 60), each (row0, row1, col0, col1).
MAGICK_BOXES = {
    0: ((105, 412, 150, 358), (126, 391, 171, 337)),
    1: ((111, 403, 165, 304), (132, 382, 186, 283)),
    2: ((105, 403, 151, 357), (126, 382, 172, 336)),
    3: ((105, 412, 150, 357), (126, 391, 171, 336)),
    4: ((111, 403, 148, 359), (131, 382, 169, 339)),
    5: ((111, 412, 149, 358), (132, 391, 171, 337)),
    6: ((105, 412, 151, 358), (126, 391, 172, 338)),
    7: ((111, 403, 150, 362), (132, 382, 171, 341)),
    8: ((105, 412, 147, 361), (126, 391, 168, 340)),
    9: ((105, 412, 150, 357), (126, 391, 171, 336)),
}
# ImageMagick's 32x32 images (zlib, base64) of three scenes: (digits, offsets, faces, edges, image).
MAGICK_SCENES = [
    (
        [0, 7, 8],
        [(133, -20), (144, 80), (-73, -33)],
        None,
        None,
        "eNorLx8coHL6+q2renBKL//w99a5Z//v9YN5zRtPnds3A0l6x68mUQYGBt1NP6cCeZt/PVo5/8ifOy0w6Qn/Qhl"
        "sl+ydLM+46E1l+Y7vqUxAxWonX9dD5Y8cZPD4c2Xf45cSor9m9/0NZwi8+mIaB9+tY1D5Wx0M20+Xl1e9LWa4vu"
        "H4YQb93wdXfZzMEP6rFiJ/bQrDgYNA+mktw/NVb3MZ+u8BXfyZhfPHPIj8lqeCWT+3zj/xU9v934T/tmx7D1VVd"
        "f/XZju/AyJf++KSYcn972fc4t4d6/+PDI5CFGz7Pw3oYgamx78nzfi/3xYOtp2DhM6fXKaqJ3/OuvCv+brm/1o2"
        "CGBmYJgPlq/6XMtQ9GPT3JM/NFhOvoOb/VNE6tk+kPzU/8IMN7YDGY/bGZL+/3eyfbF/xoyl/6awHHpWDZJf9JG"
        "B4dMiIOPMYgan//8lGS5uKS+/cZqt7j8kgGb/Zme4BDSp4lkLQ/Cv/9YMW46Ur/quqfvr31awfMMfb4b4P0c33n"
        "ovzzDr9usihrpXzV9qGA4d/j0L4r2zl7gZIg5cW6nNYPxz8eEzDBIvv9xh9/vV9a0aIt/09oQWyP+MwW/OlXf+z"
        "mAw/h/LcGrT072wCG699e/Y1I75d//srywvX/enpvYJq/n/b49qEClk6r4rty5saYME15f/LQxT/p2rw5Xa+v7r"
        "MzzajDuxrnnOqPofd2ItP7WGIfIrnsT+uIah6T4e+R/hbAvP4ZauB8XeQTz6J06fPr2euHwHAP+OFi4=",
    ),
    (
        [7, 4, 2, 1],
        [(94, 92), (19, 66), (19, 9), (130, 40)],
        None,
        None,
        "eNorLx9BoHbD1WfPb+xowSE95cPLGUUFE27/WotVuu3bQi4GbiEGptw/K1oOHNxbgyZ/4iwz+8I//08pM1R/Ofx"
        "qz/9+VOmKrwkMdZ8O//9/nIH7+/84MXT5tv9aDJdOvFnW/X/e1d+1DGL/1zaiyPf+n93/7f8rwbZ3a6qVGYDy//"
        "egyNdfvn790f/ksktnnZycVIDyb/ZieOHyCZM//0HgDFD+PYb8nL9mJ//v45J/8v8CUP7fHDTpqlez2v7PZjd6/"
        "H0vSH4Xuvbtfy9/jGbI/H77xxeQfD96+P38f0KRb8337Ij//7HJX/y/kV388v+JDBF/V2CRn/X/OifD3r+fDpcu"
        "/bwVi/ze/zEMTLvOgMFXLPL7/gszwMB5bPI/SuHgKTb7Hz8Bge8vz9zD7n4IuNbPAPTfi9YJ+OQ/3r59+3oDdvk"
        "vT9/9P4k7Dc/+v2HRq1245bt+/f37dynRWQIA6DcQwg==",
    ),
    (
        [3, 8, 0],
        [(-60, 30), (20, 10), (90, 60)],
        [90, 30, 200],
        [240, 160, 10],
        "eNorLx9JoLl/6rRJHZXYpNqWblk9fW5VUnz+1LnNGLINx94/Or+6UVdOUUVOKXl+E5p07e1r9VF1/SpqxXMXtCo"
        "Lm7sEFqPIb7+bErNgcbRc8dQDs+SEHIOcRcWikOUfz4xa+Xyxp9yswhzhoD0nTpzYH80Tg2T7h/Ko+ytnRstNqB"
        "b3ObHOTsJ69YlwiVKE2z/cuPJ+es9k3cByvq1HNQSjjVQO7xYMgctXrFi7dnVtzaJpjjLWJ2byNM+t4J10wsUM1"
        "Q+XXq6fbMeffKJCuHFek3zBiSwlVPnbm1s1TMSrT6QKyqfN04890SyKKn9ivoFcm0jXiWgzPfl2h6ATE3hR5Wd2"
        "ymktEOg7EWoXJJfg5H9iOhdS4Le3t/Q0yuktEOw7EWYbLheBKj/7AxDMnignP1m080SMhY1cpn0IsvnT3xfkPlm"
        "3wE7OU7bqRLq4nPJkk4QTjQj3Nbxrjlryaluvlhx/4olaHvn8OXKlJ9KVkdx+PjZ6xpH5kwKkLE4s5cqYV8A994"
        "StJUK+9emxnKiomPo51TwbTrhIWIrandjCF4nkuc7r785s23ryxRlVx2OHCnzzDh73kC1D9n3FtO3Hju2cU5Uq5"
        "LQBGL+b3QWSsSfRVAUeXXt9HrlknIk4zsXGJaaMSjkCAIfw1z8=",
    ),
]


def test_shipped_font_is_the_default():
    from PIL import ImageFont

    path = Path(dc.default_font())
    assert path.parent.name == "fonts" and path.parent.parent == Path(dc.__file__).parent
    assert path.name == "NimbusSans-Bold.otf" and P.resolved_font() == str(path)
    assert (path.parent / "README.txt").exists() and (path.parent / "COPYING-AGPL-3.txt").exists()
    assert ImageFont.truetype(str(path), 384).getname() == ("Nimbus Sans", "Bold")


def _stem_runs(params: dc.DigitclutterParams, row: int = 300) -> dict[str, int]:
    """Widths (px) along one row through the stem of a '1' at offset (0, 0)."""
    g = params.background

    def dark(faces, edges) -> int:
        line = dc.render_scene([1], [(0, 0)], params, faces, edges, full=True)[row]
        return int((line < g / 2).sum())

    layer = dc.glyph_layers(params.resolved_font(), params.font_size, params.stroke_width)[1]
    glyph = int((layer.face[row - params.canvas_size // 2 - layer.top] >= 0.5).sum())
    line = dc.render_scene([1], [(0, 0)], params, [0], [255], full=True)[row]
    return {
        "glyph": glyph,  # the glyph's own stem
        "dilated": dark([0], [0]),  # stroke in the face's grey: glyph plus the outer half
        "face": dark([0], [g]),  # stroke in the background's grey: the visible face
        "white": int((line > (255 + g) / 2).sum()),
    }


def test_stroke_is_centred_on_the_outline_and_drawn_over_the_face():
    runs = _stem_runs(P)
    half = P.stroke_width / 2
    assert 50 <= runs["glyph"] <= 58  # Helvetica Bold's stem of "1" is 140 units = 54 px
    assert abs((runs["dilated"] - runs["glyph"]) / 2 - half) <= 1  # 10 px outside
    assert abs((runs["glyph"] - runs["face"]) / 2 - half) <= 1  # 10 px over the face
    assert abs(runs["white"] - 2 * P.stroke_width) <= 2  # two bands of 20 px on the row
    thin = _stem_runs(dataclasses.replace(P, stroke_width=8))
    assert abs((thin["dilated"] - thin["glyph"]) / 2 - 4) <= 1
    assert abs((thin["glyph"] - thin["face"]) / 2 - 4) <= 1


def _face_rows_cols(params, digit: int, offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns where the face (no stroke) is at least half covered."""
    params = dataclasses.replace(params, stroke_width=0)
    dark = dc.render_scene([digit], [offset], params, full=True) < params.background / 2
    return np.nonzero(dark.any(axis=1))[0], np.nonzero(dark.any(axis=0))[0]


@pytest.mark.parametrize("offset", [(0, 0), (-37, 51)])
def test_placement_follows_the_metric_rule(offset):
    # ImageMagick's -gravity Center: origin x = cx + dx - advance / 2, baseline
    # y = cy + dy + (ascent + descent) / 2, face at the origin rounded to whole pixels. For
    # Helvetica-Bold ImageMagick uses ascent 1 em and descent -1/3.5 em; advance 556 units.
    dx, dy = offset
    size, c = P.font_size, P.canvas_size // 2
    baseline = c + dy + (size - size / 3.5) / 2  # 393.14 + dy
    origin_x = c + dx - round(556 * size / 1000) / 2
    m = dc.text_metrics(P.resolved_font(), size, 1)
    assert (m.advance, m.ascent, m.descent) == (214, size, pytest.approx(-size / 3.5))
    for digit, lsb in ((1, 68), (2, 30), (4, 24), (7, 29)):  # flat bottoms on the baseline
        rows, cols = _face_rows_cols(P, digit, offset)
        assert rows.max() + 1 == round(baseline)
        assert abs(cols.min() - (origin_x + lsb * size / 1000)) <= 1


def test_placement_rule_uses_the_fonts_own_metrics():
    import matplotlib
    from PIL import ImageFont

    dejavu = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")
    params = dataclasses.replace(P, font_path=dejavu)
    up, down = ImageFont.truetype(dejavu, P.font_size).getmetrics()  # FreeType's, in pixels
    rows, _ = _face_rows_cols(params, 1, (0, 0))
    assert rows.max() + 1 == round(P.canvas_size // 2 + (up - down) / 2)


def test_single_digits_match_imagemagick_boxes():
    g = P.background
    for digit, (ink, face) in MAGICK_BOXES.items():
        full = dc.render_scene([digit], [(0, 0)], P, full=True)
        for expected, mask in ((ink, np.abs(full - g) > 8), (face, full < 60)):
            rows, cols = np.nonzero(mask)
            box = (rows.min(), rows.max(), cols.min(), cols.max())
            assert box == expected, (digit, box, expected)


@pytest.mark.parametrize("scene", range(len(MAGICK_SCENES)))
def test_scenes_match_imagemagick(scene):
    digits, offsets, faces, edges, encoded = MAGICK_SCENES[scene]
    magick = np.frombuffer(zlib.decompress(base64.b64decode(encoded)), np.uint8).reshape(32, 32)
    ours = dc.render_scene(digits, offsets, P, faces, edges)
    diff = np.abs(ours.astype(int) - magick.astype(int))
    assert diff.max() <= 1 and (diff > 0).sum() <= 10  # observed: 3-5 pixels off by 1
