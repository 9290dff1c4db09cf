"""Reading params.yaml and the preset chosen in preset.yaml beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from iterconv.pipeline import ParamsError

PRESET_FILE = "preset.yaml"
_MERGE = "tag:yaml.org,2002:merge"  # the `<<` key of a YAML merge


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key (plain YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Node] = {}
        for key_node, _value in node.value:
            if key_node.tag == _MERGE:
                continue  # merged keys may be overridden explicitly
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first.setdefault(key, key_node)
            except TypeError:
                continue  # unhashable key: the base constructor reports it
            if earlier is not key_node:
                mark = key_node.start_mark
                raise ParamsError(
                    f"{mark.name}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r} "
                    f"(first at line {earlier.start_mark.line + 1}); each key may appear once"
                )
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path = "params.yaml", preset: str | None = None) -> dict[str, Any]:
    """params.yaml as a mapping, with ``preset`` from the argument or from preset.yaml beside
    it (not validated). Raises ParamsError, in one line naming the file, line and column, for a
    missing file, a YAML error (a tab, a syntax error), a repeated key or a file that is not a
    mapping."""
    path = Path(path)
    params = load_yaml(path)
    choice = path.with_name(PRESET_FILE)
    if preset is None and choice.exists():
        preset = load_yaml(choice).get("preset")
    if preset is not None:
        params["preset"] = preset
    return params


def load_yaml(path: Path) -> dict[str, Any]:
    """The mapping in YAML file ``path`` (duplicate keys refused; see :func:`read_params`)."""
    try:
        with path.open() as stream:  # marks name the file
            data = yaml.load(stream, Loader=_UniqueKeyLoader)  # a safe loader
    except FileNotFoundError as err:
        raise ParamsError(f"{path} not found") from err
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = err.problem or "syntax error"
        if err.context and err.context_mark and err.context_mark is not mark:
            problem += f" ({err.context}, line {err.context_mark.line + 1})"
        if "\\t" in problem or "\t" in problem:
            problem += " (indent with spaces; YAML forbids tabs)"
        raise ParamsError(f"{where}: not valid YAML: {problem}") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    if data is None:
        raise ParamsError(f"{path} is empty; it must be a mapping of keys to values")
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ParamsError(f"{path} must be a mapping of keys to values, not a {kind}")
    return data
