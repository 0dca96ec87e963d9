"""The hooks a yt8m-zoo plugin can implement.

A plugin is a module (or object) listed under the ``yt8m_zoo`` entry-point group. Each hook receives a
``register`` callback. ``register(target, name=..., summary=...)`` takes a class, or ``"module:Class"`` with
its ``name`` so that the module (and paddle) is imported only when the class is first used: ``zoo --help``,
``zoo plugins``, ``zoo models`` and ``zoo score`` never import a model. The contracts the classes fulfil are
the protocols in :mod:`zoo.contracts`. Plugins load the first time a registry is needed, once per process;
nothing registers itself as an import side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "yt8m_zoo"
ENTRY_POINT_GROUP = "yt8m_zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]
"""``register(target: type | str, *, name: str | None = None, summary: str = "", **metadata: Any)``; the
metadata keywords a kind accepts are listed with its hook, any other keyword is an error."""


@hookspec
def zoo_register_models(register: Register) -> None:
    """Register models (:class:`zoo.contracts.Model`). Metadata: ``config`` (path of the model's bundled
    YAML), ``released_weights`` (URL used by ``zoo eval``/``predict`` without ``--weights``)."""


@hookspec
def zoo_register_readers(register: Register) -> None:
    """Register readers (:class:`zoo.contracts.Reader`)."""


@hookspec
def zoo_register_metrics(register: Register) -> None:
    """Register metrics (:class:`zoo.contracts.Metric`)."""


@hookspec
def zoo_register_callbacks(register: Register) -> None:
    """Register training callbacks (:class:`zoo.contracts.Callback`), selected by ``train.callbacks``."""


@hookspec
def zoo_register_formats(register: Register) -> None:
    """Register prediction file formats (:class:`zoo.contracts.PredictionFormat`), selected by
    ``predict.formats``."""


@hookspec
def zoo_register_commands(register: Register) -> None:
    """Register ``zoo`` sub-commands (:class:`zoo.contracts.Command`). Give ``summary=`` with a
    ``"module:Class"`` target so that ``zoo --help`` lists the command without importing it."""


@hookspec
def zoo_register_extensions(register: Register) -> None:
    """Register command extensions (:class:`zoo.contracts.CommandExtension`): flags added to an existing
    command and their handler. Metadata: ``command`` (required: the command extended, so that only that
    command's parser imports the extension)."""


@hookspec
def zoo_register_config_sections(register: Callable[[str, Any], None]) -> None:
    """Register config sections: ``register(name, target)``, ``target`` a dataclass or its
    ``"module:Class"`` path (imported when a config is first validated). Every field has a default; a
    ``finish(config)`` method, if any, completes defaults that depend on other sections. The core's own
    sections (dataset, model, data, sample) and another plugin's cannot be taken."""


@hookspec
def zoo_register_datasets(register: Callable[[Any], None]) -> None:
    """Register dataset presets: ``register(zoo.contracts.DatasetPreset(...))``; configs name them with
    ``dataset: {preset: NAME}``."""
