"""``iterconv train``: train one run from its resolved configuration."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from iterconv.cli import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run (resumes from last.pt when present)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config-json", help="run configuration as a JSON object")
    src.add_argument("--config", type=Path, help="run configuration as a JSON file")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.set_defaults(handler=run)


def parse_config(args: argparse.Namespace):
    from iterconv.train.config import RunConfig

    try:
        raw = args.config.read_text() if args.config else args.config_json
        return RunConfig.from_dict(json.loads(raw))
    except FileNotFoundError as err:
        raise UserError(f"configuration file not found: {args.config}") from err
    except json.JSONDecodeError as err:
        raise UserError(f"configuration is not valid JSON: {err}") from err
    except (TypeError, ValueError) as err:
        raise UserError(f"invalid run configuration: {err}") from err


def run(args: argparse.Namespace) -> int:
    import torch

    from iterconv.data.prepared import load_prepared
    from iterconv.train.device import pick_device
    from iterconv.train.loop import train_run

    cfg = parse_config(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output directory {args.out}: {err.strerror}") from err
    data = load_prepared(args.data)
    train_run(cfg, data, args.out, pick_device(args.device))
    return 0
