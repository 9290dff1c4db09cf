"""The command line explains itself: every command has a description and every option a help
text, the top-level help is plain text, and ``train --help`` lists the run configuration."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import pytest
import yaml

from iterconv.cli import build_parser, main
from iterconv.pipeline.validate import SCHEMA
from iterconv.train.config import RunConfig

RST_MARKUP = re.compile(r"``|:(class|func|mod|data|meth):`|\.\. \w+::")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_is_plain_text_and_lists_every_command(capsys) -> None:
    text = help_text(capsys)
    assert not RST_MARKUP.search(text), text
    assert "COMMAND --help" in text
    for name in subcommands():
        assert re.search(rf"^\s+{re.escape(name)}\b", text, re.MULTILINE), name


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_command_describes_itself(capsys, command: str) -> None:
    text = help_text(capsys, command)
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith(f"usage: iterconv {command}")
    description = rest.split("\n\n")[0]
    assert len(description.split()) >= 4 and not description.startswith(
        ("options:", "positional arguments:")
    ), text
    assert not RST_MARKUP.search(text), text


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_has_help(command: str) -> None:
    parser = subcommands()[command]
    missing = [
        action.option_strings[0]
        for action in parser._actions
        if action.option_strings and not (action.help or "").strip()
    ]
    assert not missing, f"iterconv {command}: options without help: {missing}"


def test_train_help_lists_every_run_configuration_key(capsys) -> None:
    text = help_text(capsys, "train")
    _, _, keys = text.partition("run configuration keys")
    assert keys, text
    row = re.compile(r"^  (?P<key>\w+) +(?P<default>.+?)(?:  |$)", re.MULTILINE)
    rows = {m["key"]: m["default"] for m in row.finditer(keys)}
    defaults = RunConfig().to_dict()
    assert set(rows) == set(defaults)
    for key, value in defaults.items():
        assert rows[key] == (value if isinstance(value, str) else json.dumps(value)), key


def test_train_help_takes_the_descriptions_from_the_params_schema(capsys) -> None:
    text = " ".join(help_text(capsys, "train").split())
    settings = yaml.safe_load(SCHEMA.read_text())["$defs"]["run_settings"]["properties"]
    described = [key for key in settings if key in {f.name for f in dataclasses.fields(RunConfig)}]
    assert described
    for key in described:
        assert " ".join(settings[key]["description"].split()) in text, key
