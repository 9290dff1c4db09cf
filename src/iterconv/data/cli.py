"""Subcommands ``digitclutter`` (generate) and ``prepare`` (CIFAR-10/100, MNIST archives)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from iterconv.cli import UserError
from iterconv.data.torchvision_sets import SOURCES


def register(sub) -> None:
    p = sub.add_parser("digitclutter", help="generate a Digitclutter dataset")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--n-digits", default="3", help='digits per image: "3" or a range "2-5"')
    p.add_argument("--n-train", type=int, default=100_000)
    p.add_argument("--n-val", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32, help="must divide 512")
    p.add_argument(
        "--font",
        default=None,
        help="TrueType/OpenType font (default: the shipped Nimbus Sans Bold)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--name", default=None, help="name in the manifest (default: --out's name)")
    p.add_argument("--contact-sheet", type=Path, default=None, help="also save a PNG of examples")
    p.set_defaults(handler=run_digitclutter)

    p = sub.add_parser(
        "prepare", help="prepare CIFAR-10/100, MNIST or Fashion-MNIST from the public archives"
    )
    p.add_argument("--dataset", required=True, choices=list(SOURCES))
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--archives", type=Path, default=Path("data/archives"))
    p.add_argument("--download", action="store_true", help="fetch missing archives")
    p.add_argument("--n-train", type=int, default=None, help="seeded training subset")
    p.add_argument("--n-val", type=int, default=None, help="validation size (5000 / 10000)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--name", default=None, help="name in the manifest (default: --out's name)")
    p.set_defaults(handler=run_prepare)


def run_digitclutter(args: argparse.Namespace) -> int:
    from iterconv.data.digitclutter import (
        DigitclutterParams,
        parse_n_digits,
        prepare_digitclutter,
        save_contact_sheet,
    )

    if args.font is not None and not os.path.isfile(args.font):
        raise UserError(f"font file not found: {args.font}")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    try:
        n_digits = parse_n_digits(args.n_digits)
    except ValueError as err:
        raise UserError(
            f"--n-digits must be a number of digits (3) or a range (2-5), got {args.n_digits!r}"
        ) from err
    try:
        params = DigitclutterParams(
            n_digits=n_digits,
            n_train=args.n_train,
            n_val=args.n_val,
            seed=args.seed,
            font_path=args.font,
            image_size=args.image_size,
        )
    except ValueError as err:
        raise UserError(f"invalid Digitclutter parameters: {err}") from err
    start, done = time.perf_counter(), {"train": 0, "val": 0}
    total = params.n_train + params.n_val
    step = max(total // 10, 1)  # about ten progress lines

    def progress(split: str, k: int) -> None:
        before = sum(done.values())
        done[split] += k
        if (before + k) // step > before // step or before + k == total:
            rate = (before + k) / (time.perf_counter() - start)
            print(f"{split}: {done[split]} images ({rate:,.0f} images/s)", file=sys.stderr)

    _, splits = prepare_digitclutter(
        params, args.out, workers=args.workers, name=args.name, progress=progress
    )
    seconds = time.perf_counter() - start
    print(f"{total} images in {seconds:.1f} s -> {args.out}", file=sys.stderr)
    if args.contact_sheet is not None:
        try:
            save_contact_sheet(args.contact_sheet, splits["train"]["x"], splits["train"]["digits"])
        except OSError as err:
            raise UserError(f"cannot write {args.contact_sheet}: {err.strerror}") from err
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from iterconv.data.torchvision_sets import prepare

    manifest = prepare(
        args.dataset,
        args.out,
        args.archives,
        download=args.download,
        n_train=args.n_train,
        n_val=args.n_val,
        split_seed=args.split_seed,
        name=args.name,
    )
    shapes = manifest["shapes"]
    print(
        f"{args.dataset}: train {shapes['train']}, val {shapes['val']} -> {args.out}",
        file=sys.stderr,
    )
    return 0
