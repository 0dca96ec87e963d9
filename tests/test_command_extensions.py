"""Command extensions (hook ``zoo_register_extensions``): a plugin adds flags to another plugin's command and
handles them; ``register`` refuses metadata keywords its kind does not take."""

from __future__ import annotations

import argparse

import pytest

from zoo import hookimpl
from zoo.cli import main
from zoo.errors import PluginError
from zoo.plugins import Plugins, get_plugins


def zoo(*argv: str) -> int:
    """``zoo ARGV``'s exit code (argparse exits with 2 on an unknown flag)."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code)


class Shout:
    """`zoo models --shout`: handled by the extension; without the flag the command runs as usual."""

    name = "shout"
    command = "models"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--shout", action="store_true", help="print the model names in capitals")

    @staticmethod
    def run(args: argparse.Namespace) -> int | None:
        if not args.shout:
            return None
        print(" ".join(entry.name.upper() for entry in get_plugins().registry("model")))
        return 0


class Clashes(Shout):
    name = "clashes"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true")  # zoo models has --json already


class _ShoutPlugin:
    @staticmethod
    @hookimpl
    def zoo_register_extensions(register):
        register(f"{__name__}:Shout", name="shout", command="models")


class _ClashPlugin:
    @staticmethod
    @hookimpl
    def zoo_register_extensions(register):
        register(Clashes, command="models")


def test_an_extension_adds_a_flag_to_another_plugins_command_and_handles_it(capsys):
    plugins = get_plugins()
    plugins.add_plugin(_ShoutPlugin, name="shout-plugin", distribution="tests")
    try:
        assert zoo("models", "--shout") == 0
        out = capsys.readouterr().out
        assert "NEXTVLAD" in out and "nextvlad " not in out  # the extension ran instead of the table
        assert zoo("models") == 0  # without its flag the extension steps aside
        assert "nextvlad" in capsys.readouterr().out
        assert zoo("plugins", "--shout") == 2  # only the command it extends takes the flag
    finally:
        plugins.remove_plugin("shout-plugin")
    assert zoo("models", "--shout") == 2  # gone with its plugin


def test_a_clashing_flag_is_an_error_naming_the_extension(capsys):
    plugins = get_plugins()
    plugins.add_plugin(_ClashPlugin, name="clash-plugin", distribution="tests")
    try:
        assert zoo("models") == 2  # a plugin error (PluginError), before the command runs
        err = capsys.readouterr().err
        assert "extension 'clashes' of plugin 'clash-plugin'" in err and "--json" in err
    finally:
        plugins.remove_plugin("clash-plugin")


def test_the_segment_task_is_a_plugin_of_extensions():
    """The engine's run/eval/predict know no --segments: the zoo_yt8m_segments plugin adds it."""
    extensions = {e.name: e for e in get_plugins().registry("extension")}
    assert {n: e.metadata["command"] for n, e in extensions.items() if e.owner == "yt8m-segments"} == {
        "run-segments": "run",
        "eval-segments": "eval",
        "predict-segments": "predict",
    }


def test_register_refuses_unknown_metadata_keywords():
    class HelpKeyword:
        @staticmethod
        @hookimpl
        def zoo_register_commands(register):
            register("somewhere:Command", name="cmd", help="what it does")  # summary=, not help=

    class NoCommand:
        @staticmethod
        @hookimpl
        def zoo_register_extensions(register):
            register(f"{__name__}:Shout", name="shout")

    class WrongCommand:
        @staticmethod
        @hookimpl
        def zoo_register_extensions(register):
            register(Shout, command="plugins")

    plugins = Plugins()
    plugins.add_plugin(HelpKeyword, name="help-keyword", distribution="tests")
    plugins.add_plugin(NoCommand, name="no-command", distribution="tests")
    plugins.add_plugin(WrongCommand, name="wrong-command", distribution="tests")
    failed = {f.name: f.error for f in plugins.failures()}
    assert "unknown keyword(s) help" in failed["help-keyword"] and "accepts none" in failed["help-keyword"]
    assert "without command=..." in failed["no-command"]
    assert "extends command 'models' but was registered with command='plugins'" in failed["wrong-command"]
    with pytest.raises(PluginError, match="unknown keyword"):
        plugins.registry("model").make_entry("m:M", "p", "d", name="m", config="x.yaml", weights="u")
