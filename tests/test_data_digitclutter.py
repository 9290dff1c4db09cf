"""Digitclutter generator: determinism, labels, geometry, and agreement with the reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from iterconv.cli import main
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
    assert data.manifest["params"]["font_file"] == "DejaVuSans-Bold.ttf"
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
