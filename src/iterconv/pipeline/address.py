"""Content addresses: where each unit of work lives is decided by what its result depends on.

A unit's directory is a readable name plus a short hash of its complete resolved content
(docs/pipeline.md, "Addresses"):

    results/data/<dataset>-<hash>/          dataset spec (defaults filled in) + preparation version
    results/runs/<run id>-<hash>/           run configuration + the dataset's address + version
    results/indices/<analysis>/<run>.json   analysis settings + version; one file per run address
    results/jobs/<family>/<job id>-<hash>/  job configuration + its datasets' addresses + version

Editing a setting gives the affected units new addresses (and so new jobs); reverting it finds
the old results again. Options that change only speed (``speed``, evaluation batch sizes) are
not part of any address. Aggregates of a preset (tables, claims, figures) have fixed paths
under ``results/<preset>/`` and ``figures/<preset>/``; their stamp file names the hash of their
inputs' addresses and of the project's code, so they are rebuilt whenever either changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from iterconv.analysis import ANALYSIS_VERSION
from iterconv.data import PREPARATION_VERSION
from iterconv.families import FAMILY_VERSION
from iterconv.train import TRAINING_VERSION

HASH_LENGTH = 8  # hex digits: 4e9 values, collisions among a grid's ~10^3 units are negligible
# Run settings that change speed only, never a result.
NOT_IDENTITY = frozenset({"eval_batch_size"})
# Defaults of the Digitclutter generator (`iterconv digitclutter`), filled in before hashing so
# that a spec spelling out a default has the address of one that omits it.
# Names of addressed directories and files (the workflow's wildcards; what `iterconv gc` may
# remove), and the directories of results/ shared by every preset (no preset may take a name).
UNIT_PATTERN = rf"[A-Za-z0-9_.-]+-[0-9a-f]{{{HASH_LENGTH}}}"
ANALYSIS_PATTERN = rf"x[0-9]+-[0-9a-f]{{{HASH_LENGTH}}}"
STORES = frozenset({"data", "runs", "indices", "jobs", "toy", "logs"})
DIGITCLUTTER_DEFAULTS = {"n_digits": "3", "n_train": 100_000, "n_val": 10_000, "seed": 0}


def digest(content: Any) -> str:
    """Short SHA-256 of canonical JSON (sorted keys; NaN and infinity are refused)."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def resolved_dataset_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset spec with the generator's defaults filled in."""
    if spec["source"] != "digitclutter":
        return dict(spec)
    resolved = {**DIGITCLUTTER_DEFAULTS, **spec}
    resolved["n_digits"] = str(resolved["n_digits"])
    return resolved


def dataset_address(name: str, spec: Mapping[str, Any]) -> str:
    content = {
        "spec": resolved_dataset_spec(spec),
        "version": PREPARATION_VERSION[spec["source"]],
    }
    return f"{name}-{digest(content)}"


def run_address(run_id: str, config: Mapping[str, Any], data_address: str) -> str:
    identity = {k: v for k, v in config.items() if k not in NOT_IDENTITY}
    content = {"config": identity, "data": data_address, "version": TRAINING_VERSION}
    return f"{run_id}-{digest(content)}"


def job_address(
    family: str, job_id: str, config: Mapping[str, Any], data: Mapping[str, str]
) -> str:
    """A family job's address; ``data`` maps the dataset names it reads to their addresses."""
    content = {"config": config, "data": dict(data), "version": FAMILY_VERSION[family]}
    return f"{job_id}-{digest(content)}"


def analysis_address(extra_evaluations: int) -> str:
    """The per-run analysis settings' address (the evaluation batch size is speed only)."""
    content = {"extra_evaluations": extra_evaluations, "version": ANALYSIS_VERSION}
    return f"x{extra_evaluations}-{digest(content)}"


@cache
def code_digest() -> str:
    """Hash of the package's Python sources: aggregates and figures follow code changes."""
    root = Path(__file__).resolve().parents[1]
    files = sorted(root.rglob("*.py"))
    return digest(
        {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    )


def stamp_name(inputs: Iterable[str]) -> str:
    """File name of an aggregate's stamp: changes with the set of inputs and with the code."""
    return f"inputs-{digest({'inputs': sorted(inputs), 'code': code_digest()})}.json"
