"""Efficient vs naive index computation on the paper's 3 x 16 ResNet (width 16, 10 classes).

Random weights (non-trivial BN statistics from a few train-mode passes), eval mode, random
32 x 32 images. Both implementations compute every curve (read-out, dropout, 16 extra
evaluations; error, own-prediction error, loss, distance) of all three stages; the naive one
(tests/test_analysis_indices.py) runs the whole network from the images per perturbation.
Prints block applications per image and wall time of each, their ratios, and the machine.

    .venv/bin/python bench/bench_indices.py            # 32 images (~1.5 min on 2 CPU cores)
    .venv/bin/python bench/bench_indices.py --images 256 --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import time
from pathlib import Path

import torch

from iterconv.analysis.indices import compute_indices
from iterconv.models.resnet import ModelConfig, ResNet

ROOT = Path(__file__).resolve().parents[1]


def load_naive():
    spec = importlib.util.spec_from_file_location(
        "naive_ref", ROOT / "tests" / "test_analysis_indices.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.naive_curves


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--extra", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-naive", action="store_true", help="time the efficient one only")
    args = ap.parse_args(argv)
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = ResNet(ModelConfig(width=16, stages=3, blocks=16)).to(device)
    with torch.no_grad():  # BN running statistics away from their initial values
        for _ in range(2):
            model(torch.randn(64, 3, 32, 32, device=device))
    model.eval()
    images = torch.randn(args.images, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (args.images,), device=device)

    compute_indices(model, images[:4], labels[:4], extra=2)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    res = compute_indices(model, images, labels, extra=args.extra, batch_size=args.images)
    sync(device)
    t_eff = time.perf_counter() - t0
    eff = res["block_evaluations"]["total"]

    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"machine   {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"device {device}"
    )
    print(f"network   3 x 16 blocks, width 16, {args.images} images, J = {args.extra}")
    print(f"efficient {eff:8.0f} block applications/image  {t_eff:8.2f} s")
    if args.skip_naive:
        print(
            f"naive     {res['block_evaluations']['naive_total']:8.0f} block applications/image"
            " (counted analytically, not run)"
        )
        return
    naive_curves = load_naive()
    sync(device)
    t0 = time.perf_counter()
    ref, naive = naive_curves(model, images, labels, False, args.extra)
    sync(device)
    t_naive = time.perf_counter() - t0
    worst = max(
        abs(a - b)
        for st, rs in zip(res["stages"], ref)
        for k, v in rs.items()
        for a, b in zip(st[k], v)
        if k.endswith("error")
    )
    print(f"naive     {naive:8.0f} block applications/image  {t_naive:8.2f} s")
    print(f"ratio     {naive / eff:8.2f}x fewer block applications  {t_naive / t_eff:8.2f}x faster")
    print(f"check     largest error-curve difference efficient vs naive: {worst:.3g}")


if __name__ == "__main__":
    main()
