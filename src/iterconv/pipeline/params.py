"""Reading params.yaml and the preset chosen in preset.yaml beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iterconv.pipeline import ParamsError

PRESET_FILE = "preset.yaml"


def read_params(path: str | Path = "params.yaml", preset: str | None = None) -> dict[str, Any]:
    """params.yaml as a mapping, with ``preset`` from the argument or from preset.yaml beside
    it (not validated). Raises ParamsError for a missing or malformed file."""
    import yaml

    path = Path(path)
    params = _load(path, yaml)
    choice = path.with_name(PRESET_FILE)
    if preset is None and choice.exists():
        preset = _load(choice, yaml).get("preset")
    if preset is not None:
        params["preset"] = preset
    return params


def _load(path: Path, yaml) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise ParamsError(f"{path} not found") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must be a mapping of keys to values")
    return data
