"""Finding and loading plugins.

Finding (entry points of the ``yt8m_zoo`` group) and loading (import, pluggy registration, calling the
``zoo_register_*`` hooks) are separate steps, and each plugin is loaded on its own: one that fails to import,
implements a misspelled hook, raises while registering or takes a name that is already taken is recorded
with its distribution and error, and every other plugin keeps working. ``zoo plugins`` shows the failures.

Environment:
  ZOO_DISABLE_EXTERNAL_PLUGINS=1  load only the plugins shipped with yt8m-zoo itself
  ZOO_STRICT_PLUGINS=1            a plugin that fails to load is an error (for CI)
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from zoo import hookspecs
from zoo.contracts import DatasetPreset
from zoo.errors import PluginError
from zoo.registry import KINDS, Entry, Registry

CORE_DISTRIBUTION = "yt8m-zoo"
HOOKS = {kind: f"zoo_register_{kind}s" for kind in KINDS}
ENV_DISABLE_EXTERNAL = "ZOO_DISABLE_EXTERNAL_PLUGINS"
ENV_STRICT = "ZOO_STRICT_PLUGINS"
CORE_SECTIONS = frozenset({"dataset", "model", "data", "sample"})
"""The config sections the core owns (``zoo.config.SECTIONS``); plugins register others."""


def truthy(value: str | None, *, strict: bool = False) -> bool:
    """A flag (environment variable or CLI value): 1, true, yes or on (any case) is set. Anything else is
    not, unless ``strict``: then only 0, false, no and off are, and other text is a ValueError."""
    word = (value or "").strip().lower()
    if strict and word not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise ValueError(f"expected True or False, got {value!r}")
    return word in {"1", "true", "yes", "on"}


def _normalize(dist: str) -> str:
    return dist.lower().replace("_", "-").replace(".", "-")


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    status: str = "loaded"  # loaded | failed | disabled
    error: str | None = None
    detail: str | None = None  # traceback of a failure
    provides: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "provides": self.provides,
        }


class Plugins:
    """The plugin manager and the registries it fills."""

    def __init__(self, *, external: bool = True, strict: bool = False) -> None:
        self.external = external
        self.strict = strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.registries = {kind: Registry(kind, self.failures) for kind in KINDS}
        self.datasets: dict[str, tuple[DatasetPreset, str]] = {}  # preset name -> (preset, owner)
        self.sections: dict[str, tuple[Any, str]] = {}  # config section -> (dataclass or path, owner)

    # -- queries -----------------------------------------------------------------------------------------
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.status == "failed"]

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def dataset(self, name: str) -> DatasetPreset:
        if name not in self.datasets:
            close = difflib.get_close_matches(name, list(self.datasets), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise PluginError(
                f"unknown dataset preset {name!r}{hint} (known: {', '.join(sorted(self.datasets)) or 'none'}; "
                f"`zoo plugins` shows which plugin provides each)"
            )
        return self.datasets[name][0]

    def config_sections(self) -> dict[str, type]:
        """The config sections plugins registered, as dataclasses (paths imported now, once)."""
        out = {}
        for name, (target, owner) in list(self.sections.items()):
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                try:
                    cls = getattr(importlib.import_module(module), attr)
                except Exception as exc:  # noqa: BLE001 - any failure names the plugin
                    raise PluginError(
                        f"config section {name!r} of plugin {owner!r} cannot be loaded from {target}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
                if not dataclasses.is_dataclass(cls):
                    raise PluginError(
                        f"config section {name!r} of plugin {owner!r}: {target} is not a dataclass"
                    )
                self.sections[name] = (cls, owner)
            out[name] = self.sections[name][0]
        return out

    # -- loading -----------------------------------------------------------------------------------------
    def load_all(self) -> Plugins:
        for ep in self._find():
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else "?"
            if not self.external and _normalize(dist) != CORE_DISTRIBUTION:
                self.infos.append(
                    PluginInfo(
                        ep.name,
                        dist,
                        version,
                        ep.value,
                        status="disabled",
                        error=f"external plugins disabled by {ENV_DISABLE_EXTERNAL}",
                    )
                )
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import error is recorded, not fatal
                self._fail(PluginInfo(ep.name, dist, version, ep.value), f"import failed: {exc!r}")
                continue
            self.add_plugin(obj, name=ep.name, distribution=dist, version=version, module=ep.value)
        return self

    @staticmethod
    def _find() -> list[metadata.EntryPoint]:
        eps = metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
        unique = {(ep.name, ep.value, ep.dist.name if ep.dist else ""): ep for ep in eps}
        # Built-ins first, then by distribution and name: deterministic, and a third party cannot take
        # a built-in name away from the built-in.
        return sorted(
            unique.values(),
            key=lambda ep: (
                _normalize(ep.dist.name if ep.dist else "") != CORE_DISTRIBUTION,
                ep.dist.name if ep.dist else "",
                ep.name,
            ),
        )

    def add_plugin(
        self,
        obj: Any,
        *,
        name: str,
        distribution: str = "local",
        version: str = "",
        module: str | None = None,
    ) -> PluginInfo | None:
        """Register one plugin object and what it provides; all or nothing."""
        info = PluginInfo(name, distribution, version, module or getattr(obj, "__name__", repr(obj)))
        try:
            self.pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001
            return self._fail(info, f"registration failed: {exc}")
        try:
            self.pm.check_pending()
            staged, presets, sections = self._collect(name, distribution)
            self._check_names(staged, presets, info)
            self._check_sections(sections, info)
        except Exception as exc:  # noqa: BLE001
            self.pm.unregister(name=name)
            message = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            return self._fail(info, message)
        for kind, entries in staged.items():
            for entry in entries:
                self.registries[kind].add(entry)
            if entries:
                info.provides[kind] = sorted(e.name for e in entries)
        for preset in presets:
            self.datasets[preset.name] = (preset, name)
        if presets:
            info.provides["dataset"] = sorted(p.name for p in presets)
        for section, target in sections:
            self.sections[section] = (target, name)
        if sections:
            info.provides["config section"] = sorted(s for s, _ in sections)
        self.infos.append(info)
        return info

    def _collect(
        self, plugin: str, distribution: str
    ) -> tuple[dict[str, list[Entry]], list[DatasetPreset], list[tuple[str, Any]]]:
        staged: dict[str, list[Entry]] = {}
        entries: list[Entry]
        for kind in KINDS:
            staged[kind] = entries = []
            registry = self.registries[kind]

            def register(target: Any, *, name: str | None = None, summary: str = "", **meta: Any) -> None:
                entries.append(registry.make_entry(target, plugin, distribution, name, summary, **meta))  # noqa: B023

            for impl in getattr(self.pm.hook, HOOKS[kind]).get_hookimpls():
                if impl.plugin_name == plugin:
                    impl.function(register=register)
        presets: list[DatasetPreset] = []
        for impl in self.pm.hook.zoo_register_datasets.get_hookimpls():
            if impl.plugin_name == plugin:
                impl.function(register=presets.append)
        for preset in presets:
            if not isinstance(preset, DatasetPreset):
                raise PluginError(
                    f"zoo_register_datasets: expected a zoo.contracts.DatasetPreset, got {preset!r}"
                )
        sections: list[tuple[str, Any]] = []

        def add_section(name: str, target: Any) -> None:
            lazy = isinstance(target, str) and ":" in target
            if not isinstance(name, str) or not (lazy or dataclasses.is_dataclass(target)):
                raise PluginError(
                    f"zoo_register_config_sections: register(name, target) takes a section name and a "
                    f"dataclass or its 'module:Class' path, got ({name!r}, {target!r})"
                )
            sections.append((name, target))

        for impl in self.pm.hook.zoo_register_config_sections.get_hookimpls():
            if impl.plugin_name == plugin:
                impl.function(register=add_section)
        return staged, presets, sections

    def _check_sections(self, sections: list[tuple[str, Any]], info: PluginInfo) -> None:
        seen: set[str] = set()
        for name, _ in sections:
            if name in CORE_SECTIONS:
                raise PluginError(
                    f"config section {name!r} is the core's; plugin {info.name!r} cannot register it"
                )
            owner = self.sections[name][1] if name in self.sections else (info.name if name in seen else None)
            if owner is not None:
                raise PluginError(
                    f"config section {name!r} is already registered by plugin {owner!r}; plugin "
                    f"{info.name!r} cannot register it too"
                )
            seen.add(name)

    def _check_names(
        self, staged: dict[str, list[Entry]], presets: list[DatasetPreset], info: PluginInfo
    ) -> None:
        for kind, entries in staged.items():
            probe = Registry(kind)
            for entry in entries:  # catches duplicates inside one plugin
                probe.add(entry)
            for entry in entries:
                if entry.name in self.registries[kind]:
                    old = self.registries[kind].get(entry.name)
                    raise PluginError(
                        f"{kind} name {entry.name!r} is already taken by plugin {old.owner!r} "
                        f"({old.distribution}, {old.path}); plugin {info.name!r} ({info.distribution}, "
                        f"{entry.path}) cannot register it too: rename one of them"
                    )
        for preset in presets:
            if preset.name in self.datasets:
                raise PluginError(
                    f"dataset preset {preset.name!r} is already provided by plugin "
                    f"{self.datasets[preset.name][1]!r}; plugin {info.name!r} cannot register it too"
                )

    def _fail(self, info: PluginInfo, error: str) -> None:
        info.status = "failed"
        info.error = error
        info.detail = traceback.format_exc()
        self.infos.append(info)
        if self.strict:
            raise PluginError(
                f"plugin {info.name!r} from distribution {info.distribution} failed to load "
                f"({ENV_STRICT} is set): {error}"
            )
        return None

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and everything it registered (tests use this in ``finally``)."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        for registry in self.registries.values():
            registry.remove_owner(name)
        self.datasets = {k: v for k, v in self.datasets.items() if v[1] != name}
        self.sections = {k: v for k, v in self.sections.items() if v[1] != name}
        self.infos = [i for i in self.infos if i.name != name]


_PLUGINS: Plugins | None = None
_WARNED = False


def get_plugins() -> Plugins:
    """The process-wide plugins, loaded on first use."""
    global _PLUGINS
    if _PLUGINS is None:
        plugins = Plugins(
            external=not truthy(os.environ.get(ENV_DISABLE_EXTERNAL)),
            strict=truthy(os.environ.get(ENV_STRICT)),
        )
        plugins.load_all()
        _PLUGINS = plugins
    return _PLUGINS


def reset_plugins() -> None:
    """Forget the loaded plugins; the next query loads them again (after an install, or in tests)."""
    global _PLUGINS, _WARNED
    _PLUGINS = None
    _WARNED = False


def warn_failures() -> None:
    """Print one line per failed plugin to stderr, once per process."""
    global _WARNED
    if _WARNED:
        return
    _WARNED = True
    for info in get_plugins().failures():
        print(
            f"warning: plugin {info.name!r} ({info.distribution}) failed to load: {info.error} "
            f"(other plugins work; see `zoo plugins`)",
            file=sys.stderr,
        )
