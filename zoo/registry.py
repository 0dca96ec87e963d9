"""Typed registries of plugin classes: one per kind (model, reader, metric, command).

A name belongs to one owner. Registering a taken name is an error naming both owners; asking for an
unknown name is an error listing close matches and any plugin that failed to load (it may have been the one
that would have provided the name).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from zoo.errors import PluginError

KINDS = ("model", "reader", "metric", "command")


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    owner: str  # the plugin (entry-point name) that registered it
    distribution: str  # the distribution that ships that plugin


class Registry:
    def __init__(self, kind: str, failures: Callable[[], list[Any]] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._failures = failures or (lambda: [])

    def add(self, cls: type, owner: str, distribution: str) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {owner!r} ({distribution}) registered {self.kind} class {cls.__qualname__} "
                f"without a 'name' class attribute (a non-empty str)"
            )
        if self.kind != "command":
            config = getattr(cls, "Config", None)
            if config is None or not dataclasses.is_dataclass(config):
                raise PluginError(
                    f"plugin {owner!r} ({distribution}) registered {self.kind} {name!r} without a 'Config' "
                    f"dataclass; declare one (it may have no fields)"
                )
        if name in self._entries:
            old = self._entries[name]
            raise PluginError(
                f"{self.kind} name {name!r} is registered twice: by plugin {old.owner!r} ({old.distribution}, "
                f"{old.cls.__module__}.{old.cls.__qualname__}) and by plugin {owner!r} ({distribution}, "
                f"{cls.__module__}.{cls.__qualname__}); rename one of them or uninstall one distribution"
            )
        self._entries[name] = Entry(name, cls, owner, distribution)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            pass
        message = f"unknown {self.kind} {name!r}"
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        if close:
            message += f"; did you mean {', '.join(repr(c) for c in close)}?"
        known = ", ".join(sorted(self._entries)) or "none"
        message += f"\nknown {self.kind}s: {known}"
        failed = self._failures()
        if failed:
            message += (
                "\nplugins that failed to load (one of them may provide it; see `zoo plugins`): "
                + ", ".join(f"{f.name} ({f.distribution}): {f.error}" for f in failed)
            )
        raise PluginError(message)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def remove_owner(self, owner: str) -> None:
        """Forget every class that ``owner`` registered (used when a plugin is unregistered)."""
        self._entries = {n: e for n, e in self._entries.items() if e.owner != owner}
