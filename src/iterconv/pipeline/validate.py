"""Validation of params.yaml: finite numbers, the JSON schema (also applied to every grid value),
then the grid's and the families' own checks.

Snakemake applies the same schema (``validate`` in the Snakefile) before building the DAG, after
:func:`check_params_file` has read the files and checked them here; this module lets the CLI and
the tests apply it without Snakemake. Every message is one line naming the key (a dotted path
such as ``presets.demo.sweeps[0] (demo_coupling).grid.seed[1]``) and what is allowed.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from iterconv.families.config import allowed, error_message, validator
from iterconv.pipeline import ParamsError

SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "params.schema.yaml"


def check_params_file(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml and preset.yaml beside it (YAML errors, repeated keys) and check what
    does not depend on the chosen preset: finite numbers, the schema, the grids' values. Returns
    the params; raises ParamsError."""
    from iterconv.pipeline.params import read_params

    params = read_params(path)
    check_schema(params)
    return params


def validate_params(params: dict[str, Any]) -> None:
    """Raise ParamsError (a ValueError) naming the offending key and what is allowed."""
    from iterconv.pipeline.grid import expand_runs
    from iterconv.pipeline.units import expand_families

    check_schema(params)
    expand_runs(params)
    expand_families(params)


def check_schema(params: Any) -> None:
    """Finite numbers, the JSON schema, and the schema's run settings for every grid value."""
    if not isinstance(params, dict):
        raise ParamsError("params must be a mapping of keys to values")
    for path, value in _leaves(params, []):
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamsError(f"{key_path(params, path)}: {value} is not allowed; must be finite")
    validator, run_settings = _validators()
    _raise_first(validator.iter_errors(params), params)
    for grid, key, j, value in _grid_values(params):
        plain = not isinstance(value, dict)  # a plain value sets the grid's key
        settings = {key: value} if plain else value
        _raise_first(run_settings.iter_errors(settings), params, [*grid, key, j], plain)


@cache
def _validators() -> tuple[Any, Any]:
    """Validators of the whole file and of one mapping of run settings."""
    import yaml

    schema = yaml.safe_load(SCHEMA.read_text())
    run_settings = {"$defs": schema["$defs"], "$ref": "#/$defs/run_settings"}
    return validator(schema), validator(run_settings)


def _leaves(node: Any, path: list) -> Iterator[tuple[list, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, [*path, key])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, [*path, i])
    else:
        yield path, node


def _grid_values(params: dict[str, Any]) -> Iterator[tuple[list, str, int, Any]]:
    """(path of the grid, key, index, value) for every value of every sweep's grid."""
    for name, spec in params["presets"].items():
        for i, sweep in enumerate(spec["sweeps"]):
            for key, values in (sweep.get("grid") or {}).items():
                for j, value in enumerate(values):
                    yield ["presets", name, "sweeps", i, "grid"], key, j, value


def key_path(params: dict[str, Any], path: Sequence[Any]) -> str:
    """``presets.demo.sweeps[0] (demo_coupling).grid.seed[1]`` for a path of keys and indices."""
    text, node = "", params
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(part, int) and isinstance(node, dict) and isinstance(node.get("name"), str):
            text += f" ({node['name']})"  # a sweep
    return text or "the top level"


def _order(err: Any) -> list[tuple[int, Any]]:
    return [(0, p) if isinstance(p, int) else (1, str(p)) for p in err.absolute_path]


def _raise_first(
    errors: Iterator[Any], params: dict[str, Any], where: list | None = None, plain: bool = False
) -> None:
    """Raise the first error (in key order) found at path ``where`` of params; ``plain``: the
    errors are those of a grid value ``{key: value}`` and ``where`` is ``grid.key[j]``."""
    errors = sorted(errors, key=_order)
    if errors:
        raise ParamsError(_message(errors[0], params, where or [], plain))


def _message(err: Any, params: dict[str, Any], where: list, plain: bool) -> str:
    """One line for a jsonschema error found at path ``where`` of params."""
    path = [*where, *list(err.absolute_path)[plain:]]
    key, value, kind, schema = key_path(params, path), err.instance, err.validator, err.schema
    if "propertyNames" in err.absolute_schema_path:
        return _name_message(key, value, err)
    if kind == "additionalProperties":
        valid = list(schema.get("properties", {}))
        place = key_path(params, where[:-2]) if plain else key
        unknown = [k for k in value if k not in valid]
        return "; ".join(_unknown(place, k, valid, bool(where)) for k in unknown)
    if kind == "not":
        forbidden = err.validator_value
        if isinstance(forbidden, dict) and forbidden:
            return f"{key}: {value!r} is not allowed; must not be {allowed(forbidden)}"
        return f"{key}: not allowed: {schema.get('description', 'remove it')}"
    return error_message(err, key)


def _unknown(where: str, key: Any, valid: list[str], in_grid: bool) -> str:
    if key == "dataset":
        return (
            f"{where}: key 'dataset' is not allowed here; a sweep's datasets are listed in "
            "its datasets"
        )
    close = difflib.get_close_matches(str(key), valid, n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    what = "run setting" if in_grid else "key"
    place = where if where != "the top level" else "params.yaml (top level)"
    return f"unknown {what} {key!r} in {place}{guess}; valid keys: {', '.join(sorted(valid))}"


def _name_message(where: str, name: Any, err: Any) -> str:
    if name == "dataset":
        return (
            f"{where}.dataset: not allowed; a sweep's datasets are listed in its datasets, "
            "not in its grid"
        )
    if err.validator == "not":
        return f"{where}: name {name!r} is not allowed; must not be {allowed(err.validator_value)}"
    return f"{where}: name {name!r} is not allowed; must be {allowed(err.schema)}"
