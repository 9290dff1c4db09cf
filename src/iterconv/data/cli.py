"""Subcommands ``digitclutter`` (generate) and ``prepare`` (CIFAR-10/100, MNIST archives)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from iterconv.data.torchvision_sets import SOURCES
from iterconv.errors import UserError

DIGITCLUTTER = """\
Generate a Digitclutter dataset (Spoerer et al. 2017): each image shows several overlapping
digits of random font size, position and grey level; the labels are the digits it shows.
Writes a prepared dataset (train.npz, val.npz, manifest.json) to --out, and logs a progress
line about every tenth of the images."""
PREPARE = """\
Prepare CIFAR-10, CIFAR-100, MNIST or Fashion-MNIST from the public archives: verify each
archive's MD5, split the official training images into training and validation splits (the
official test sets are never used) and write a prepared dataset (train.npz, val.npz,
manifest.json) to --out. The archive names and checksums are listed in docs/data.md."""
PROGRESS_LINES = 10  # about this many progress lines per generated dataset


def register(sub) -> None:
    p = sub.add_parser(
        "digitclutter",
        help="generate a Digitclutter dataset",
        description=DIGITCLUTTER,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--n-digits", default="3", help='digits per image: "3" or a range "2-5"')
    p.add_argument("--n-train", type=int, default=100_000, help="training images (default 100000)")
    p.add_argument("--n-val", type=int, default=10_000, help="validation images (default 10000)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="generator seed: the same seed and sizes give the same images (default 0)",
    )
    p.add_argument(
        "--image-size", type=int, default=32, help="image side in pixels; must divide 512"
    )
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
        "prepare",
        help="prepare CIFAR-10/100, MNIST or Fashion-MNIST from the public archives",
        description=PREPARE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset", required=True, choices=list(SOURCES), help="which archive to prepare"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--archives",
        type=Path,
        default=Path("data/archives"),
        help="folder holding the downloaded archives under their upstream names "
        "(default data/archives; Fashion-MNIST's in its subfolder fashion_mnist/)",
    )
    p.add_argument(
        "--download", action="store_true", help="fetch missing archives with torchvision"
    )
    p.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="a seeded subset of this many training images (default: the whole training split)",
    )
    p.add_argument(
        "--n-val",
        type=int,
        default=None,
        help="validation images (default: 5000 for CIFAR, 10000 for MNIST and Fashion-MNIST)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the permutation that splits training and validation images (default 0)",
    )
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
    sizes = {"train": params.n_train, "val": params.n_val}
    start = time.perf_counter()
    _, splits = prepare_digitclutter(
        params,
        args.out,
        workers=args.workers,
        name=args.name,
        progress=GenerationProgress(sizes, start),
    )
    seconds = time.perf_counter() - start
    print(f"{sum(sizes.values()):,} images in {seconds:.1f} s -> {args.out}", file=sys.stderr)
    if args.contact_sheet is not None:
        try:
            save_contact_sheet(args.contact_sheet, splits["train"]["x"], splits["train"]["digits"])
        except OSError as err:
            raise UserError(f"cannot write {args.contact_sheet}: {err.strerror}") from err
    return 0


class GenerationProgress:
    """``progress(split, k)`` of the generator: what is generated (once the output directory
    has been accepted and the first images are drawn), then a line about every tenth of the
    images, e.g. ``train 1,500/3,072 images  640 images/s  2.3 s``."""

    def __init__(self, sizes: dict[str, int], start: float) -> None:
        self.sizes, self.start = sizes, start
        self.done = dict.fromkeys(sizes, 0)
        self.step = max(sum(sizes.values()) // PROGRESS_LINES, 1)

    def __call__(self, split: str, k: int) -> None:
        before = sum(self.done.values())
        if before == 0:
            sizes = " and ".join(f"{n:,} {name}" for name, n in self.sizes.items())
            print(f"generating {sizes} images", file=sys.stderr, flush=True)
        self.done[split] += k
        after = before + k
        if after // self.step > before // self.step or self.done[split] == self.sizes[split]:
            seconds = time.perf_counter() - self.start
            print(
                f"{split} {self.done[split]:,}/{self.sizes[split]:,} images  "
                f"{after / seconds:,.0f} images/s  {seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )


def run_prepare(args: argparse.Namespace) -> int:
    from iterconv.data.torchvision_sets import prepare

    start = time.perf_counter()
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
        f"{args.dataset}: train {shapes['train']}, val {shapes['val']} in "
        f"{time.perf_counter() - start:.1f} s -> {args.out}",
        file=sys.stderr,
    )
    return 0
