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
        CountingReader,
        DequantizingReader,
        ExportConstants,
        Int8Quantizable,
        ModelWithLoss,
        PartCountingReader,
        PartitionedReader,
        PrefetchingReader,
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
        PartitionedReader,
        CountingReader,
        PartCountingReader,
        PrefetchingReader,
        DequantizingReader,
        Int8Quantizable,
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


# -- every Python example in README.md and docs/ runs ----------------------------------------------------
#
# The examples of one page run in order in one namespace (a later block may use an earlier block's names), in
# a temporary working directory. A block that cannot run alone says so in an HTML comment on the line before
# its fence, and the test holds it to that:
#   <!-- docs-test: fragment of PATH -->    every line of the block is a line of PATH (a file of this repository)
#   <!-- docs-test: fragment: REASON -->   the block has to compile; REASON says what else it needs

REPO = DOCS.parent
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
_FENCE = re.compile(r"(?:<!-- docs-test: (?P<mark>[^\n]+?) -->\n)?```python\n(?P<code>.*?)^```", re.M | re.S)


def _examples(page: Path) -> list[tuple[int, str | None, str]]:
    text = page.read_text()
    return [(text.count("\n", 0, m.start("code")) + 1, m["mark"], m["code"]) for m in _FENCE.finditer(text)]


def test_every_python_fence_is_found():
    """A ```python block the pattern missed would go unchecked."""
    for page in PAGES:
        assert len(_examples(page)) == page.read_text().count("```python"), page.name


@pytest.mark.parametrize("page", [p for p in PAGES if _examples(p)], ids=lambda p: p.name)
def test_python_examples_run(page, tmp_path, monkeypatch):
    from zoo.paths import cache_dir

    monkeypatch.chdir(tmp_path)
    # docs/data.md reads the built-in sample data from ./yt8m-sample: the session's copy, made once
    sample = cache_dir("sample-v1")
    (tmp_path / "yt8m-sample").symlink_to(sample, target_is_directory=True)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for line, mark, code in _examples(page):
        where = f"{page.relative_to(REPO)}:{line}"
        if mark is None:
            exec(compile(code, where, "exec"), namespace)
        elif mark.startswith("fragment of "):
            whole = (REPO / mark.removeprefix("fragment of ")).read_text().splitlines()
            missing = [s for s in code.splitlines() if s.strip() and s not in whole]
            assert not missing, (
                f"{where}: these lines are not in {mark.removeprefix('fragment of ')}: {missing[:3]}"
            )
        else:
            assert mark.startswith("fragment: "), f"{where}: unknown mark <!-- docs-test: {mark} -->"
            compile(code, where, "exec")
