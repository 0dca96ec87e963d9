"""yt8m-zoo: a PaddlePaddle model zoo for YouTube-8M video classification.

Public API (documented in docs/api.md): :func:`build_model`, :func:`build_reader`, :func:`build_metric`,
:func:`list_plugins`, :func:`plugin_class`, :func:`dataset_preset`, :class:`DatasetSpec`, :data:`hookimpl`. Importing ``zoo`` has no
side effects and does not import paddle; the engine sets up paddle when it starts.
"""

from __future__ import annotations

from typing import Any

from zoo.contracts import DatasetPreset, DatasetSpec
from zoo.errors import ConfigError, DataError, PluginError, UsageError, ZooError
from zoo.hookspecs import hookimpl

__version__ = "0.2.0"
__all__ = [
    "ConfigError",
    "DataError",
    "DatasetPreset",
    "DatasetSpec",
    "PluginError",
    "UsageError",
    "ZooError",
    "build_metric",
    "build_model",
    "build_reader",
    "dataset_preset",
    "hookimpl",
    "list_plugins",
    "plugin_class",
]


def plugin_class(kind: str, name: str) -> type:
    """The class registered as ``name`` for ``kind`` ("model", "reader", "metric", "callback", "command")."""
    from zoo.plugins import get_plugins

    return get_plugins().registry(kind).get(name).cls


def dataset_preset(name: str) -> DatasetPreset:
    """The dataset preset registered as ``name`` (hook ``zoo_register_datasets``), such as ``"yt8m"``."""
    from zoo.plugins import get_plugins

    return get_plugins().dataset(name)


def _build(kind: str, name: str, cfg: dict[str, Any]) -> Any:
    from zoo.config import build_dataclass, build_spec
    from zoo.plugins import get_plugins

    entry = get_plugins().registry(kind).get(name)
    spec = cfg.pop("spec", None)
    spec_values = {
        k: cfg.pop(k) for k in list(cfg) if k in ("num_classes", "features", "max_frames", "preset")
    }
    if spec is None and "preset" not in spec_values:
        # a reader or metric: the facts not given come from the dataset preset that names it, if one does
        named = [
            p.name
            for p, _ in get_plugins().datasets.values()
            if name in (p.reader, p.metric, *p.other_readers)
        ]
        if len(named) == 1:
            spec_values = {"preset": named[0], **spec_values}
    if spec is None:
        spec = build_spec(spec_values, f"{kind} {name!r}")
    elif spec_values:
        raise ConfigError(f"{kind} {name!r}: pass either spec= or {', '.join(spec_values)}, not both")
    owner = f"{kind} plugin {name!r} ({entry.owner}, distribution {entry.distribution})"
    config = build_dataclass(entry.cls.Config, cfg, f"{kind} {name!r}", owner)
    return entry.cls(config, spec)


def build_model(name: str, **cfg: Any) -> Any:
    """Build the model registered as ``name``.

    Keyword arguments are the model's ``Config`` fields plus the dataset facts (``num_classes``, ``features``,
    ``max_frames``, or ``preset="yt8m"``) or a ready ``spec=DatasetSpec(...)``.
    """
    return _build("model", name, cfg)


def build_reader(name: str, **cfg: Any) -> Any:
    """Build the reader registered as ``name`` (``paths=[...]`` plus its Config fields and dataset facts;
    facts not given come from the one dataset preset that names this reader, if there is one)."""
    return _build("reader", name, cfg)


def build_metric(name: str, **cfg: Any) -> Any:
    """Build the metric registered as ``name`` (its Config fields plus dataset facts, as for readers)."""
    return _build("metric", name, cfg)


def list_plugins() -> list[dict[str, Any]]:
    """Every plugin found: name, distribution, version, status (loaded/failed/disabled), error, provides."""
    from zoo.plugins import get_plugins

    return [info.as_dict() for info in get_plugins().infos]
