"""Digitclutter generation speed: fast (pre-rendered glyphs, numpy) vs straightforward reference.

Both run in this process on one core, side by side, on the same image layouts (2-5 digits);
the reference draws every digit separately on a 512x512 canvas (Pillow face, stroke computed
from the outline at the digit's position) and resizes with Image.BOX. The parallel run generates
--parallel images with ``generate`` over --workers processes, start-up included.
Usage: PYTHONPATH=src python bench/bench_digitclutter.py [--fast 2000] [--reference 40]
    [--parallel 20000] [--workers N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np

from iterconv.data import digitclutter as dc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", type=int, default=2000, help="images for the fast path")
    parser.add_argument("--reference", type=int, default=40, help="images for the reference")
    parser.add_argument("--parallel", type=int, default=20_000, help="images for the parallel run")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="for the parallel run")
    args = parser.parse_args(argv)
    params = dc.DigitclutterParams(n_digits=(2, 5), n_train=args.fast, n_val=0, seed=0)
    dc.render_glyphs(params.resolved_font(), params.font_size, params.stroke_width)  # warm-up

    t = time.perf_counter()
    fast = dc.generate(params, ("train",), workers=1)["train"]["x"]
    fast_rate = args.fast / (time.perf_counter() - t)

    layouts = [dc.sample_layout(params, "train", i) for i in range(args.reference)]
    t = time.perf_counter()
    ref = np.stack([dc.render_reference(d, o, params) for d, o in layouts])
    ref_rate = args.reference / (time.perf_counter() - t)

    par_params = dc.DigitclutterParams(n_digits=(2, 5), n_train=args.parallel, n_val=0, seed=1)
    t = time.perf_counter()
    dc.generate(par_params, ("train",), workers=args.workers)
    par_rate = args.parallel / (time.perf_counter() - t)

    diff = np.abs(ref.astype(int) - fast[: args.reference, 0].astype(int))
    print(f"date       {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine    {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, numpy {np.__version__}")  # fmt: skip
    print(f"fast       {fast_rate:9.0f} images/s  (1 process, {args.fast} images)")
    print(f"reference  {ref_rate:9.0f} images/s  (1 process, {args.reference} images)")
    print(f"ratio      {fast_rate / ref_rate:9.1f} x")
    print(f"parallel   {par_rate:9.0f} images/s  ({args.workers} processes incl. start-up, "
          f"{args.parallel} images)")  # fmt: skip
    print(f"fast vs reference: max |diff| {diff.max()} grey levels, "
          f"{(diff > 0).mean():.2%} of pixels differ")  # fmt: skip


if __name__ == "__main__":
    main()
