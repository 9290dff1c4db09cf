"""The project's params.yaml, for tests that expand or validate its presets."""

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_preset(name: str) -> dict:
    """A copy of params.yaml with ``preset`` set to ``name``."""
    params = copy.deepcopy(PARAMS)
    params["preset"] = name
    return params
