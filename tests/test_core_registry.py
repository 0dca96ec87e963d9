"""Registries and in-process plugin registration: names, duplicates, unknown names, failures."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import zoo
from zoo import hookimpl
from zoo.errors import PluginError
from zoo.plugins import Plugins, get_plugins
from zoo.registry import Registry


@dataclass
class _Cfg:
    width: int = 3
    """A width."""


class _Model:
    name = "throwaway-model"
    Config = _Cfg

    def __init__(self, config, spec):
        self.config, self.spec = config, spec

    def forward(self, batch):
        return batch


def test_duplicate_name_names_both_owners():
    reg = Registry("model")
    reg.add(reg.make_entry(_Model, "first-plugin", "dist-a"))
    with pytest.raises(PluginError) as exc:
        reg.add(reg.make_entry(_Model, "second-plugin", "dist-b"))
    assert "first-plugin" in str(exc.value) and "second-plugin" in str(exc.value)
    assert "dist-a" in str(exc.value) and "dist-b" in str(exc.value)


def test_lazy_target_is_imported_on_first_use_and_checked_against_the_protocol():
    reg = Registry("model")
    entry = reg.make_entry(f"{__name__}:_Model", "p", "d", name="throwaway-model", summary="s")
    reg.add(entry)
    assert isinstance(entry.target, str) and reg.get("throwaway-model").cls is _Model
    wrong = reg.make_entry(f"{__name__}:_Cfg", "p", "d", name="cfg")
    with pytest.raises(PluginError, match="lacks.*forward.*Model contract"):
        _ = wrong.cls
    missing = reg.make_entry("no_such_module_xyz:Thing", "p", "d", name="thing")
    with pytest.raises(
        PluginError, match="cannot be loaded from no_such_module_xyz:Thing.*ModuleNotFoundError"
    ):
        _ = missing.cls
    with pytest.raises(PluginError, match="needs name="):
        reg.make_entry(f"{__name__}:_Model", "p", "d")
    renamed = reg.make_entry(f"{__name__}:_Model", "p", "d", name="other-name")
    with pytest.raises(PluginError, match="whose 'name' is 'throwaway-model'"):
        _ = renamed.cls


def test_unknown_name_suggests_close_matches():
    with pytest.raises(PluginError) as exc:
        zoo.build_model("nextvald")
    assert "did you mean 'nextvlad'" in str(exc.value)


def test_class_without_name_or_config_is_refused():
    class NoName:
        Config = _Cfg
        forward = _Model.forward

    class NoConfig:
        name = "x"
        forward = _Model.forward

    class ConfigNotADataclass(_Model):
        Config = dict

    reg = Registry("model")
    with pytest.raises(PluginError, match="lacks name"):
        reg.make_entry(NoName, "p", "d")
    with pytest.raises(PluginError, match="lacks Config"):
        reg.make_entry(NoConfig, "p", "d")
    with pytest.raises(PluginError, match="Config' must be a dataclass"):
        reg.make_entry(ConfigNotADataclass, "p", "d")


class _ThrowawayPlugin:
    @staticmethod
    @hookimpl
    def zoo_register_models(register):
        register(_Model)


def test_throwaway_plugin_builds_by_name_and_unregisters():
    plugins = get_plugins()
    plugins.add_plugin(_ThrowawayPlugin, name="throwaway", distribution="tests")
    try:
        model = zoo.build_model("throwaway-model", width=5, num_classes=7, features={"x": 2})
        assert model.config.width == 5 and model.spec.num_classes == 7
        with pytest.raises(zoo.ConfigError, match="width"):
            zoo.build_model("throwaway-model", widht=5, preset="yt8m")
        with pytest.raises(zoo.ConfigError, match="expected an integer"):
            zoo.build_model("throwaway-model", width="wide", preset="yt8m")
    finally:
        plugins.remove_plugin("throwaway")
    with pytest.raises(PluginError):
        zoo.build_model("throwaway-model")


def test_failures_are_isolated_and_reported():
    class Raises:
        @staticmethod
        @hookimpl
        def zoo_register_models(register):
            raise RuntimeError("boom")

    class Misspelled:
        @staticmethod
        @hookimpl
        def zoo_register_model(register):
            pass

    class Takes:
        @staticmethod
        @hookimpl
        def zoo_register_models(register):
            register(type("N", (), {"name": "nextvlad", "Config": _Cfg, "forward": _Model.forward}))

    plugins = Plugins().load_all()
    plugins.add_plugin(Raises, name="raises", distribution="bad-dist")
    plugins.add_plugin(Misspelled, name="misspelled", distribution="bad-dist")
    plugins.add_plugin(Takes, name="takes", distribution="bad-dist")
    failed = {f.name: f.error for f in plugins.failures()}
    assert "boom" in failed["raises"]
    assert "zoo_register_model" in failed["misspelled"]
    assert "already taken by plugin 'nextvlad'" in failed["takes"] and "'takes'" in failed["takes"]
    # the built-in nextvlad is untouched and the failures are named in unknown-name errors
    assert plugins.registry("model").get("nextvlad").owner == "nextvlad"
    with pytest.raises(PluginError) as exc:
        plugins.registry("model").get("no-such-model")
    assert "raises (bad-dist)" in str(exc.value)


def test_strict_mode_turns_failures_into_errors():
    class Raises:
        @staticmethod
        @hookimpl
        def zoo_register_models(register):
            raise RuntimeError("boom")

    plugins = Plugins(strict=True).load_all()
    with pytest.raises(PluginError, match="boom"):
        plugins.add_plugin(Raises, name="raises", distribution="bad-dist")


def test_builtins_come_through_entry_points():
    infos = {i["name"]: i for i in zoo.list_plugins()}
    for name in ("yt8m-data", "yt8m-metrics", "nextvlad", "baselines"):
        assert infos[name]["distribution"] == "yt8m-zoo"
        assert infos[name]["status"] == "loaded", infos[name]
    assert "nextvlad" in infos["nextvlad"]["provides"]["model"]


@pytest.mark.integration
def test_base_commands_run_where_paddle_cannot_be_imported():
    """A base install (no paddle): --help, plugins and models list everything without importing a model."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "sys.modules['paddle'] = None  # `import paddle` now raises ImportError, as in a base install\n"
        "from zoo.cli import main\n"
        "for argv in (['plugins'], ['models', '--json']):\n"
        "    assert main(argv) == 0, argv\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    models = {"nextvlad", "mix-nextvlad", "mean-pool", "dbof", "lstm"}
    assert all(f'"model": "{m}"' in done.stdout for m in models), done.stdout[-2000:]
    assert "yt8m-metrics" in done.stdout and "zoo-engine" in done.stdout
