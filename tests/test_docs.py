"""The docs keep up with the code: every hook documented with its signature, every command in docs/cli.md."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOKS = [name for name, obj in vars(hookspecs).items() if name.startswith("zoo_register_") and callable(obj)]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    text = (DOCS / "plugin_hooks.md").read_text()
    signature = f"{hook}{inspect.signature(getattr(hookspecs, hook))}".replace("'", "")
    assert signature in text.replace("'", ""), f"docs/plugin_hooks.md lacks `{signature}`"


def _contract_methods() -> list[str]:
    from zoo.contracts import (
        PROTOCOLS,
        ColumnarPredictionFormat,
        ConvertsForeignWeights,
        ExportConstants,
        ModelWithLoss,
        RankedMetric,
        SampleDataReader,
    )
    from zoo.registry import _protocol_members

    out = []
    extra = [
        ModelWithLoss,
        SampleDataReader,
        RankedMetric,
        ColumnarPredictionFormat,
        ConvertsForeignWeights,
        ExportConstants,
    ]
    for protocol in [*PROTOCOLS.values(), *extra]:
        for member in sorted(_protocol_members(protocol)):
            obj = vars(protocol).get(member)  # declared here, not inherited from another contract
            if obj is not None and (callable(obj) or isinstance(obj, (staticmethod, classmethod))):
                out.append(f"{protocol.__name__}.{member}")
    return out


@pytest.mark.parametrize("method", _contract_methods())
def test_every_contract_method_is_documented_with_its_signature(method):
    from zoo import contracts

    protocol, name = method.split(".")
    signature = f"{name}{inspect.signature(getattr(getattr(contracts, protocol), name))}".replace("'", "")
    text = (DOCS / "plugin_hooks.md").read_text()
    section = text.split(f"### {protocol}\n", 1)[1].split("\n### ", 1)[0]
    assert signature in section, f"docs/plugin_hooks.md, section {protocol}, lacks `{signature}`"


def _commands() -> list[str]:
    zoo = Path(sys.executable).with_name("zoo")
    out = subprocess.run([str(zoo), "--help"], capture_output=True, text=True, check=True).stdout
    block = out.split("commands:", 1)[1]
    return re.findall(r"^    (\w+)\s", block, flags=re.M)


@pytest.mark.integration
def test_every_command_is_documented():
    text = (DOCS / "cli.md").read_text()
    commands = _commands()
    assert {"run", "train", "eval", "predict", "plugins", "models", "data", "score"} <= set(commands)
    for command in commands:
        assert f"## zoo {command}" in text, f"docs/cli.md has no section for `zoo {command}`"


def test_public_api_is_documented():
    import zoo

    text = (DOCS / "api.md").read_text()
    for name in (
        "build_model",
        "build_reader",
        "build_metric",
        "list_plugins",
        "plugin_class",
        "DatasetSpec",
    ):
        assert name in zoo.__all__ and f"zoo.{name}" in text


def test_registered_command_summaries_are_the_commands_help():
    """`zoo --help` shows the registration's summary without importing the command: it must not drift."""
    from zoo.plugins import get_plugins

    for entry in get_plugins().registry("command"):
        assert entry.summary == entry.cls.help, f"zoo {entry.name}: summary {entry.summary!r} != help"
