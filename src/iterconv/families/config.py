"""Typed configurations: frozen dataclasses whose fields carry a description and the values they
allow, the JSON schema that follows from them, and parsing a mapping (a section of params.yaml,
a job's JSON) into one, refused in one line that names the key and what is allowed.

A field is declared with :func:`setting` (it has a default) or :func:`required`::

    width: int = setting(50, "hidden units", minimum=1)
    archs: tuple[str, ...] = setting(ARCHS, "architectures", choices=ARCHS)

Types: ``int``, ``float``, ``bool``, ``str``, ``tuple[T, ...]`` of those (a list in YAML and
JSON; non-empty and without repeated entries unless told otherwise), ``T | None`` (null
allowed) and a nested configuration class (``C | None``: the key may be left out, never null).
Bounds, choices and patterns apply to a value or to every item of a list. A rule between several
keys raises :class:`Invalid` from the class's ``__post_init__``.

This module imports nothing of the project but the errors; :func:`allowed` also words the
messages of params.yaml's schema (iterconv.pipeline.validate).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any, TypeVar

from iterconv.errors import ParamsError

C = TypeVar("C")
SEED_MAX = 2**63 - 1  # seeds: what torch's and numpy's generators accept
NAME_PATTERN = "^[A-Za-z0-9_]+$"  # names that become parts of result paths
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


class Invalid(ValueError):
    """A value that breaks a rule between keys: ``key`` (relative to the configuration, "" for
    the whole of it) and what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def setting(
    default: Any,
    doc: str,
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: float | None = None,
    exclusive_maximum: float | None = None,
    pattern: str | None = None,
    min_items: int = 1,
    unique: bool = True,
) -> Any:
    """A field with ``default``, described by ``doc`` (one line), allowing what the keywords say
    (of a list: of each item; ``min_items`` and ``unique`` are the list's own)."""
    rules = {
        "enum": list(choices) if choices is not None else None,
        "minimum": minimum,
        "maximum": maximum,
        "exclusiveMinimum": exclusive_minimum,
        "exclusiveMaximum": exclusive_maximum,
        "pattern": pattern,
    }
    metadata = {
        "doc": doc,
        "rules": {k: v for k, v in rules.items() if v is not None},
        "min_items": min_items,
        "unique": unique,
    }
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def required(doc: str, **rules: Any) -> Any:
    """A field without a default (the class must be ``kw_only``); rules as for :func:`setting`."""
    return setting(dataclasses.MISSING, doc, **rules)


# --- the JSON schema -------------------------------------------------------------------------


def schema(cls: type) -> dict[str, Any]:
    """The JSON schema of configuration class ``cls`` (params.schema.yaml holds those of the
    families' sections; a test keeps them equal)."""
    hints = typing.get_type_hints(cls)
    properties = {}
    for f in _own_fields_first(cls):
        hint = hints[f.name]
        prop = {**_type_schema(hint, f.metadata), "description": f.metadata["doc"]}
        nested = dataclasses.is_dataclass(_optional(hint) or hint)  # left out: None
        if f.default is not dataclasses.MISSING and not nested:
            prop["default"] = _plain(f.default)
        properties[f.name] = prop
    out: dict[str, Any] = {"type": "object", "additionalProperties": False}
    if needed := [f.name for f in dataclasses.fields(cls) if _is_required(f)]:
        out["required"] = needed
    out["properties"] = properties
    return out


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _own_fields_first(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls``, those its most derived class declares first (a spec's own keys,
    then those it shares with its jobs)."""

    def depth(f: dataclasses.Field) -> int:
        return next(
            i for i, c in enumerate(cls.__mro__) if f.name in vars(c).get("__annotations__", {})
        )

    return sorted(dataclasses.fields(cls), key=depth)


def _type_schema(tp: Any, metadata: Mapping[str, Any]) -> dict[str, Any]:
    optional = _optional(tp)
    if optional is not None:
        if dataclasses.is_dataclass(optional):
            return schema(optional)  # a nested configuration: the key may be left out
        return {"anyOf": [_type_schema(optional, metadata), {"type": "null"}]}
    if dataclasses.is_dataclass(tp):
        return schema(tp)
    if typing.get_origin(tp) is tuple:
        item, _ellipsis = typing.get_args(tp)
        out: dict[str, Any] = {"type": "array"}
        if metadata["min_items"]:
            out["minItems"] = metadata["min_items"]
        if metadata["unique"]:
            out["uniqueItems"] = True
        return {**out, "items": _scalar(item, metadata["rules"])}
    return _scalar(tp, metadata["rules"])


def _scalar(tp: type, rules: Mapping[str, Any]) -> dict[str, Any]:
    if "enum" in rules:
        return dict(rules)
    return {"type": _JSON_TYPES[tp], **rules}


def _optional(tp: Any) -> Any:
    """``T`` of ``T | None``, else None."""
    if typing.get_origin(tp) not in (types.UnionType, typing.Union):
        return None
    rest = [a for a in typing.get_args(tp) if a is not type(None)]
    return rest[0] if len(rest) == 1 else None


# --- parsing ---------------------------------------------------------------------------------


def parse(cls: type[C], data: Any, where: str) -> C:
    """``data`` (a mapping as params.yaml or a job's JSON writes it) as an instance of ``cls``.
    Raises :class:`ParamsError` naming the key (``where.key[i]``) and what is allowed."""
    for path, value in _leaves(data, where):  # JSON reads NaN; no schema keyword refuses it
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamsError(f"{path}: {value} is not allowed; must be finite")
    errors = sorted(_validator(cls).iter_errors(data), key=_first_to_fix)
    if errors:
        raise ParamsError(_message(errors[0], where))
    try:
        return _build(cls, data)
    except Invalid as err:
        raise ParamsError(f"{_join(where, err.key)}: {err.problem}") from err


def parse_tagged(classes: Mapping[str, type[C]], tag: str, data: Any, where: str) -> C:
    """``data`` as the class that its key ``tag`` names (e.g. a job's ``kind``)."""
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: {data!r} is not allowed; must be a mapping")
    if data.get(tag) not in classes:
        choices = ", ".join(classes)
        raise ParamsError(
            f"{where}.{tag}: unknown {tag} {data.get(tag)!r}; must be one of {choices}"
        )
    return parse(classes[data[tag]], data, where)


def to_dict(config: Any) -> dict[str, Any]:
    """A configuration as params.yaml or JSON writes it (lists for tuples)."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def shared(config: Any, cls: type) -> dict[str, Any]:
    """The values of ``config`` for the fields of ``cls`` (a base class of its class)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _build(cls: type[C], data: Mapping[str, Any]) -> C:
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            try:
                values[f.name] = _convert(hints[f.name], data[f.name])
            except Invalid as err:  # of a nested configuration
                raise Invalid(_join(f.name, err.key), err.problem) from err
    return cls(**values)


def _convert(tp: Any, value: Any) -> Any:
    """A checked value as the field's type: lists as tuples, numbers as floats."""
    if value is None:
        return None
    tp = _optional(tp) or tp
    if dataclasses.is_dataclass(tp):
        return _build(tp, value)
    if typing.get_origin(tp) is tuple:
        return tuple(_convert(typing.get_args(tp)[0], v) for v in value)
    return float(value) if tp is float else value


@cache
def _validator(cls: type) -> Any:
    return validator(schema(cls))


def validator(json_schema: Mapping[str, Any]) -> Any:
    """A JSON-schema validator in which an integer is an int (JSON schema also takes 1.0, which
    a command would receive as "1.0", and Python's True)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, x: isinstance(x, int) and not isinstance(x, bool)
    )
    return jsonschema.validators.extend(base, type_checker=checker)(json_schema)


def _leaves(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, _join(path, str(key)))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _leaves(value, f"{path}[{i}]")
    else:
        yield path, node


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where and key else where or key


def _first_to_fix(err: Any) -> tuple[bool, list[tuple[int, Any]]]:
    """Errors in key order, a value that is written before keys that are missing."""
    path = [(0, p) if isinstance(p, int) else (1, str(p)) for p in err.absolute_path]
    return err.validator == "required", path


def _message(err: Any, where: str) -> str:
    key = where
    for part in err.absolute_path:
        key = f"{key}[{part}]" if isinstance(part, int) else _join(key, part)
    if err.validator == "additionalProperties":
        valid = sorted(err.schema["properties"])
        unknown = sorted(str(k) for k in err.instance if k not in valid)[0]
        close = difflib.get_close_matches(unknown, valid, n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{_join(key, unknown)}: unknown key{guess}; valid keys: {', '.join(valid)}"
    return error_message(err, key)


def error_message(err: Any, key: str) -> str:
    """One line for a JSON-schema error at ``key``: the value and what is allowed."""
    value, kind, sub = err.instance, err.validator, err.schema
    if kind == "required":
        missing = [k for k in err.validator_value if k not in value]
        return f"{key}: missing keys {missing}"
    if kind in ("oneOf", "anyOf"):
        forms = " or ".join(s.get("description") or allowed(s) for s in err.validator_value)
        return f"{key}: {value!r} is not allowed; must be {forms}"
    if kind in ("minItems", "minProperties") and not value:
        return f"{key}: must not be empty; must be {allowed(sub)}"
    hint = ""
    if kind == "type" and sub.get("type") in ("number", "integer") and _is_number(value):
        hint = " (YAML reads 1e-4 as text: write 1.0e-4)"
    return f"{key}: {value!r} is not allowed; must be {allowed(sub)}{hint}"


def _is_number(value: Any) -> bool:
    """Text that reads as a number."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- what a schema allows, in words ----------------------------------------------------------

_WORDS = {
    "integer": ("an integer", "integers"),
    "number": ("a number", "numbers"),
    "string": ("text", "texts"),
    "boolean": ("true or false", "true or false"),
    "array": ("a list", "lists"),
    "object": ("a mapping", "mappings"),
    "null": ("null", "null"),
}


def allowed(schema: Any, plural: bool = False) -> str:
    """What a JSON (sub)schema allows, in words: ``an integer >= 1``, ``one of a, b``, ``a
    non-empty list of numbers >= 0 and <= 1 without repeated entries``."""
    if not isinstance(schema, dict):
        return "nothing"
    if "description" in schema and ("pattern" in schema or "not" in schema or "oneOf" in schema):
        return schema["description"]
    if "$ref" in schema and len(schema) <= 2:
        return schema.get("description", "as described in the schema")
    if "enum" in schema:
        return ("values from " if plural else "one of ") + ", ".join(map(str, schema["enum"]))
    if "const" in schema:
        return repr(schema["const"])
    singular, many = _WORDS.get(schema.get("type"), ("a value", "values"))
    words = many if plural else singular
    low = [f">= {_bound(schema['minimum'])}"] if "minimum" in schema else []
    low += [f"> {_bound(schema['exclusiveMinimum'])}"] if "exclusiveMinimum" in schema else []
    high = [f"<= {_bound(schema['maximum'])}"] if "maximum" in schema else []
    high += [f"< {_bound(schema['exclusiveMaximum'])}"] if "exclusiveMaximum" in schema else []
    words += " " + " and ".join(low + high) if low or high else ""
    if schema.get("minItems") or schema.get("minProperties"):
        words = f"a non-empty {words.removeprefix('a ')}"
    if isinstance(schema.get("items"), dict):
        words += " of " + allowed(schema["items"], plural=True)
    if schema.get("uniqueItems"):
        words += " without repeated entries"
    if "pattern" in schema:
        words += f" matching {schema['pattern']}"
    return words


def _bound(x: Any) -> str:
    return "2**63 - 1" if x == 2**63 - 1 else f"{x:g}" if isinstance(x, float) else str(x)
