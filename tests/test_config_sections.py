"""Config sections registered by plugins (hook ``zoo_register_config_sections``): the engine owns train, eval and
predict this way; a third party adds its own the same way."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from zoo import hookimpl
from zoo.config import SECTIONS, bounded, bundled_config, load_config
from zoo.errors import ConfigError
from zoo.plugins import CORE_SECTIONS, Plugins, get_plugins


@dataclass
class ProfilerConfig:
    level: int = bounded(1, ge=0)
    """How much to record."""
    output: str | None = None
    """Where; None: beside the run (set by finish)."""

    def finish(self, config) -> None:
        if self.output is None:
            self.output = f"{config.train.save_dir}/profile"


class _ProfilerPlugin:
    @staticmethod
    @hookimpl
    def zoo_register_config_sections(register):
        register("profiler", ProfilerConfig)


def test_a_plugin_section_is_checked_read_and_written():
    plugins = get_plugins()
    plugins.add_plugin(_ProfilerPlugin, name="profiler-plugin", distribution="tests")
    try:
        cfg = load_config(bundled_config("mean-pool"), ["profiler.level=3"])
        assert cfg.profiler.level == 3 and cfg.profiler.output == "checkpoints/mean-pool/profile"
        assert load_config(None, raw=cfg.to_dict()).profiler == cfg.profiler
        with pytest.raises(ConfigError, match="profiler.*levle"):
            load_config(bundled_config("mean-pool"), ["profiler.levle=3"])
        with pytest.raises(ConfigError, match="profiler.level"):
            load_config(bundled_config("mean-pool"), ["profiler.level=-1"])
    finally:
        plugins.remove_plugin("profiler-plugin")
    with pytest.raises(ConfigError, match="profiler"):  # gone with its plugin: an unknown section
        load_config(bundled_config("mean-pool"), ["profiler.level=3"])


def test_the_engine_owns_train_eval_and_predict_through_the_mechanism():
    from zoo.engine import settings

    assert set(SECTIONS) == CORE_SECTIONS == {"dataset", "model", "data", "sample"}
    assert get_plugins().config_sections() == {
        "train": settings.TrainConfig,
        "eval": settings.EvalConfig,
        "predict": settings.PredictConfig,
    }
    assert get_plugins().sections["train"][1] == "zoo-engine"


def test_a_section_cannot_be_taken_twice():
    class TakesTrain:
        @staticmethod
        @hookimpl
        def zoo_register_config_sections(register):
            register("train", ProfilerConfig)

    class TakesModel:
        @staticmethod
        @hookimpl
        def zoo_register_config_sections(register):
            register("model", ProfilerConfig)

    class NotADataclass:
        @staticmethod
        @hookimpl
        def zoo_register_config_sections(register):
            register("odd", dict)

    plugins = Plugins().load_all()
    for plugin in (TakesTrain, TakesModel, NotADataclass):
        plugins.add_plugin(plugin, name=plugin.__name__, distribution="tests")
    failed = {f.name: f.error for f in plugins.failures()}
    assert "'train' is already registered by plugin 'zoo-engine'" in failed["TakesTrain"]
    assert "'model' is the core's" in failed["TakesModel"]
    assert "a dataclass or its 'module:Class' path" in failed["NotADataclass"]
