"""``iterconv train``: train one run from its resolved configuration.

Exit status: 0 trained, 2 bad input (one line on stderr), 75 stopped by SIGTERM after saving
(``EXIT_INTERRUPTED``: run the same command again to resume; Snakemake's ``retries`` do).
``--precision``, ``--channels-last`` and ``--compile`` change how the run is computed, not its
configuration or id (:class:`iterconv.train.loop.SpeedOptions`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iterconv.errors import UserError

DESCRIPTION = """\
Train one run of a residual network on a prepared dataset and write its run directory:
last.pt after every epoch (the resume point), then best.pt, history.csv and metrics.json.
A run directory holding last.pt of the same configuration resumes after its last epoch.
Each epoch logs one line to stderr. Exit status: 0 trained, 2 bad input, 75 stopped by
SIGTERM after saving (run the same command again to resume)."""
# Run settings the params schema does not describe: params.yaml does not set them.
NOT_PARAMS = {
    "dataset": "name of the prepared dataset (in params.yaml: each of a sweep's datasets)",
    "eval_batch_size": "images per validation batch (speed only, not part of the run's address)",
}


class ConfigKeysHelp(argparse.Action):
    """``-h``: the help, followed by the run configuration's keys (read only when asked)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.epilog = config_keys_help()
        parser.print_help()
        parser.exit()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one run (resumes from last.pt when present)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("-h", "--help", action=ConfigKeysHelp, help="show this help and exit")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--config",
        type=Path,
        help="run configuration: a JSON file holding an object of the keys below",
    )
    src.add_argument(
        "--config-json", metavar="JSON", help="run configuration as an inline JSON object"
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="prepared dataset directory (results/data/<address>, holding manifest.json)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="run directory to write (created if missing)"
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (default: the freest GPU, else cpu), cpu, cuda, cuda:N, mps",
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    # speed options: not part of the run's configuration or id (docs/performance.md)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32 (default), or bf16 autocast over forward and loss (weights stay fp32)",
    )
    p.add_argument(
        "--channels-last", action="store_true", help="model and batches in channels_last layout"
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the model for training steps"
    )
    p.set_defaults(handler=run)


def config_keys_help(width: int = 100) -> str:
    """The run configuration's keys with their defaults (:class:`RunConfig`) and descriptions
    (the run settings of the params schema, workflow/schemas/params.schema.yaml)."""
    import dataclasses
    import textwrap

    from iterconv.train.config import RunConfig

    described = {**schema_run_settings(), **NOT_PARAMS}
    defaults = RunConfig().to_dict()
    rows = [(f.name, _shown(defaults[f.name])) for f in dataclasses.fields(RunConfig)]
    names, values = (max(len(row[i]) for row in rows) for i in (0, 1))
    indent = 2 + names + 2 + values + 2
    lines = ["run configuration keys (a key left out takes its default):"]
    for name, default in rows:
        text = textwrap.wrap(described.get(name, ""), max(width - indent, 40)) or [""]
        lines.append(f"  {name:<{names}}  {default:<{values}}  {text[0]}".rstrip())
        lines += [" " * indent + more for more in text[1:]]
    return "\n".join(lines)


def _shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def schema_run_settings() -> dict[str, str]:
    """Description of each run setting in the params schema; empty without the schema (an
    installation without the workflow)."""
    import yaml

    from iterconv.pipeline.validate import SCHEMA

    try:
        schema = yaml.safe_load(SCHEMA.read_text())
    except OSError:
        return {}
    settings = schema["$defs"]["run_settings"]["properties"]
    return {key: " ".join(spec.get("description", "").split()) for key, spec in settings.items()}


def parse_config(args: argparse.Namespace):
    from iterconv.train.config import RunConfig

    try:
        raw = args.config.read_text() if args.config else args.config_json
        values = json.loads(raw)
        if not isinstance(values, dict):  # from_dict would take a list as no settings at all
            where = f"configuration file {args.config}" if args.config else "--config-json"
            raise UserError(
                f"{where} must hold a JSON object of run settings, got {type(values).__name__}"
            )
        return RunConfig.from_dict(values)
    except FileNotFoundError as err:
        raise UserError(f"configuration file not found: {args.config}") from err
    except IsADirectoryError as err:
        raise UserError(f"configuration file {args.config} is a directory") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"configuration is not valid JSON: {err}") from err
    except (TypeError, ValueError) as err:
        raise UserError(f"invalid run configuration: {err}") from err


def run(args: argparse.Namespace) -> int:
    import torch

    from iterconv.data.prepared import load_prepared
    from iterconv.train.loop import (
        EXIT_INTERRUPTED,
        Interrupted,
        SpeedOptions,
        stop_on_sigterm,
        train_run,
    )

    with stop_on_sigterm() as stop:  # from here on SIGTERM stops after the current batch
        cfg = parse_config(args)
        if args.threads < 0:
            raise UserError(f"--threads must be >= 0, got {args.threads}")
        if args.threads:
            torch.set_num_threads(args.threads)
        device = device_for(args.device)  # before anything is created
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            probe = args.out / ".write-test"
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise UserError(f"cannot write to output directory {args.out}: {err.strerror}") from err
        data = load_prepared(args.data)
        try:
            speed = SpeedOptions(args.precision, args.channels_last, args.compile)
            train_run(cfg, data, args.out, device, stop=stop, speed=speed)
        except Interrupted as err:
            print(f"iterconv train: {err}", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        except OSError as err:  # disk full, quota, permissions while writing a checkpoint
            raise UserError(f"cannot write to {args.out}: {err.strerror or err}") from err
    return 0


def device_for(spec: str):
    """The device ``--device`` names, or a one-line error (see :func:`resolve_device`)."""
    from iterconv.train.device import resolve_device

    return resolve_device(spec)
