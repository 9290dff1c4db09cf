"""Digitclutter against ImageMagick: our renderer vs the reference generator's commands.

For each digit count n in 2..5, --per-n scenes (digits and offsets from ``sample_layout`` with
--seed) are drawn twice on a 512x512 canvas of grey 119: by ImageMagick 6 ``convert`` with the
reference generator's command (per digit ``-fill FACE -stroke EDGE -strokewidth 20 -font
Helvetica-Bold -pointsize 384 -gravity Center -draw "text dx,dy 'd'"``, rendered at 16 bits),
and by ``render_scene``. Both canvases go through the same ``box_downscale`` to 32x32. Printed:
per n the mean absolute grey difference and the share of pixels off by more than 16 (at 32x32
and at 512x512), then statistics of the images (grey histograms, face/edge/background
fractions, each digit's bounding box). ``--colours`` adds scenes with random face and edge greys.

Needs ImageMagick 6 and the URW base35 fonts, which ImageMagick uses for Helvetica-Bold
(Debian/Ubuntu: ``apt-get install imagemagick fonts-urw-base35``). A benchmark, not a test.
Usage: PYTHONPATH=src python bench/digitclutter_reference.py [--per-n 50] [--seed 0] [--colours]
    [--font PATH] [--sheet DIR]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from iterconv.data import digitclutter as dc

COUNTS = (2, 3, 4, 5)
BIG = 16  # "off by more than" threshold, grey levels


def magick_command(digits, offsets, faces, edges, params: dc.DigitclutterParams) -> list[str]:
    s, g = params.canvas_size, params.background
    args = ["convert", "-size", f"{s}x{s}", f"xc:rgb({g},{g},{g})"]
    for d, (dx, dy), f, e in zip(digits, offsets, faces, edges):
        args += ["-fill", f"rgb({f},{f},{f})", "-stroke", f"rgb({e},{e},{e})"]
        args += ["-strokewidth", str(params.stroke_width), "-font", "Helvetica-Bold"]
        args += ["-pointsize", str(params.font_size), "-gravity", "Center"]
        args += ["-draw", f"text {int(dx)},{int(dy)} '{int(d)}'"]
    return [*args, "-colorspace", "Gray", "-depth", "16", "-endian", "MSB", "gray:-"]


def magick_render(digits, offsets, faces, edges, params: dc.DigitclutterParams) -> np.ndarray:
    """ImageMagick's 512x512 canvas as float grey levels 0..255."""
    cmd = magick_command(digits, offsets, faces, edges, params)
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    s = params.canvas_size
    return np.frombuffer(raw, ">u2").reshape(s, s).astype(np.float32) / 257.0


def versions() -> list[str]:
    lines = [subprocess.run(["convert", "-version"], capture_output=True, text=True).stdout]
    fonts = subprocess.run(["convert", "-list", "font"], capture_output=True, text=True).stdout
    blocks = fonts.split("Font: ")
    used = next((b for b in blocks if b.startswith("Helvetica-Bold\n")), "")
    glyphs = next((ln.split(":", 1)[1].strip() for ln in used.splitlines() if "glyphs:" in ln), "")
    out = [lines[0].splitlines()[0]]
    if glyphs and Path(glyphs).exists():
        digest = hashlib.sha256(Path(glyphs).read_bytes()).hexdigest()[:16]
        out.append(f"ImageMagick's Helvetica-Bold: {glyphs} (sha256 {digest}...)")
    if shutil.which("dpkg-query"):
        q = ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "fonts-urw-base35"]
        pkg = subprocess.run(q, capture_output=True, text=True).stdout.strip()
        out.append(f"font package: {pkg or 'fonts-urw-base35 not installed'}")
    return out


def scenes(n: int, per_n: int, seed: int, colours: bool):
    params = dc.DigitclutterParams(n_digits=n, seed=seed)
    rng = np.random.default_rng([seed, n])
    for i in range(per_n):
        digits, offsets = dc.sample_layout(params, "train", i)
        if colours:
            faces, edges = rng.integers(0, 256, (2, n)).tolist()
        else:
            faces, edges = [params.face] * n, [params.edge] * n
        yield digits.tolist(), offsets.tolist(), faces, edges


def compare(args, params: dc.DigitclutterParams, colours: bool, pool) -> dict:
    """Per n: (reference, ours) at 32 (uint8) and 512 (rounded), for every scene."""
    out = {}
    for n in COUNTS:
        items = list(scenes(n, args.per_n, args.seed, colours))
        refs = list(pool.map(lambda it: magick_render(*it, params), items))
        ref_big = np.stack([np.floor(r + 0.5) for r in refs])
        ref_small = np.stack([dc.box_downscale(r, params.image_size) for r in refs])
        ours_big, ours_small = [], []
        for digits, offsets, faces, edges in items:
            kw = {"faces": faces, "edges": edges} if colours else {}
            full = dc.render_scene(digits, offsets, params, full=True, **kw)
            ours_big.append(np.floor(full + 0.5))
            ours_small.append(dc.box_downscale(full, params.image_size))
        out[n] = {
            "ref": ref_small,
            "ours": np.stack(ours_small),
            "ref_big": ref_big,
            "ours_big": np.stack(ours_big),
        }
    return out


def print_differences(title: str, res: dict) -> None:
    print(f"\n{title}")
    print("  n | 32px: mean|diff|  >16     >0  max | 512px: mean|diff|  >16     >0  max")
    for n, r in res.items():
        d = np.abs(r["ref"].astype(int) - r["ours"].astype(int))
        big = np.abs(r["ref_big"] - r["ours_big"]).astype(int)
        print(
            f"  {n} | {d.mean():16.3f} {(d > BIG).mean():5.2%} {(d > 0).mean():6.2%} {d.max():4d}"
            f" | {big.mean():17.3f} {(big > BIG).mean():5.2%} {(big > 0).mean():6.2%}"
            f" {big.max():4d}"
        )


def print_statistics(res: dict, params: dc.DigitclutterParams) -> None:
    ref = np.concatenate([r["ref"] for r in res.values()])
    ours = np.concatenate([r["ours"] for r in res.values()])
    h_ref = np.bincount(ref.ravel(), minlength=256) / ref.size
    h_ours = np.bincount(ours.ravel(), minlength=256) / ours.size
    print("\nimage statistics, all scenes, black face / white edge")
    coarse = 0.5 * np.abs(h_ref.reshape(16, 16).sum(1) - h_ours.reshape(16, 16).sum(1)).sum()
    tvd = 0.5 * np.abs(h_ref - h_ours).sum()
    print(f"  32px grey histograms, total variation distance {tvd:.2%} (16 bins {coarse:.2%})")
    print(f"  32px mean grey: reference {ref.mean():.2f}, ours {ours.mean():.2f}")
    print(f"  32px grey std: reference {ref.std():.2f}, ours {ours.std():.2f}")
    big_ref = np.concatenate([r["ref_big"] for r in res.values()])
    big_ours = np.concatenate([r["ours_big"] for r in res.values()])
    classes = {
        "face (< 8)": lambda a: a < 8,
        "edge (> 247)": lambda a: a > 247,
        "background (119)": lambda a: a == params.background,
        "transition": lambda a: (a >= 8) & (a <= 247) & (a != params.background),
    }
    print("  512px pixel classes:       reference     ours")
    for name, sel in classes.items():
        print(f"    {name:22s} {sel(big_ref).mean():10.2%} {sel(big_ours).mean():8.2%}")


def print_boxes(params: dc.DigitclutterParams) -> None:
    print("\nsingle digits at offset (0, 0), 512px bounding boxes (rows, columns; inclusive)")
    print("  digit  ink (any |v - 119| > 8): reference / ours       face (< 60): reference / ours")
    g = params.background

    def box(mask: np.ndarray) -> str:
        rows, cols = np.nonzero(mask)
        return f"{rows.min():3d}-{rows.max():3d},{cols.min():3d}-{cols.max():3d}"

    for d in range(10):
        ref = magick_render([d], [(0, 0)], [params.face], [params.edge], params)
        ours = dc.render_scene([d], [(0, 0)], params, full=True)
        ink = [box(np.abs(a - g) > 8) for a in (ref, ours)]
        face = [box(a < 60) for a in (ref, ours)]
        print(f"  {d}      {ink[0]} / {ink[1]}     {face[0]} / {face[1]}")


def save_sheet(path: Path, res: dict, k: int = 8) -> None:
    """k scenes per n (one column block per n): reference | ours | 128 + 4 (ours - reference)."""
    from PIL import Image

    blocks = []
    for r in res.values():
        rows = []
        for i in range(min(k, len(r["ref"]))):
            a, b = r["ref"][i].astype(int), r["ours"][i].astype(int)
            diff = np.clip(128 + 4 * (b - a), 0, 255)
            gap = np.full((a.shape[0], 2), 255)
            rows += [np.concatenate([a, gap, b, gap, diff, gap, gap], 1)]
            rows += [np.full((2, rows[-1].shape[1]), 255)]
        blocks.append(np.concatenate(rows))
    sheet = np.concatenate(blocks, 1).astype(np.uint8)
    img = Image.fromarray(sheet).resize((sheet.shape[1] * 4, sheet.shape[0] * 4), Image.NEAREST)
    img.save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-n", type=int, default=50, help="scenes per digit count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--colours", action="store_true", help="also random face/edge greys")
    parser.add_argument("--font", default=None, help="our font (default: the shipped one)")
    parser.add_argument("--sheet", type=Path, default=None, help="folder for contact sheets")
    args = parser.parse_args(argv)
    if shutil.which("convert") is None:
        raise SystemExit("ImageMagick's convert is not installed")
    params = dc.DigitclutterParams(font_path=args.font)
    font = params.resolved_font()
    print(f"date       {datetime.datetime.now().isoformat(timespec='seconds')}")
    for line in versions():
        print(f"reference  {line}")
    digest = hashlib.sha256(Path(font).read_bytes()).hexdigest()[:16]
    print(f"ours       {Path(font).name} (sha256 {digest}...), {args.per_n} scenes per n")
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        res = compare(args, params, False, pool)
        print_differences("black face, white edge (the dataset's colours)", res)
        if args.colours:
            res_c = compare(args, params, True, pool)
            print_differences("random face and edge greys per digit", res_c)
    print_statistics(res, params)
    print_boxes(params)
    if args.sheet is not None:
        args.sheet.mkdir(parents=True, exist_ok=True)
        save_sheet(args.sheet / "digitclutter_reference.png", res)
        print(f"\ncontact sheet: {args.sheet / 'digitclutter_reference.png'}")


if __name__ == "__main__":
    main()
