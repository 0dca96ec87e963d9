"""Typed registries of plugin classes: one per kind (model, reader, metric, callback, format, command,
extension).

An entry holds a class or a ``"module:Class"`` path that is imported the first time the class is needed, and
checked then against the kind's protocol (:mod:`zoo.contracts`). A name belongs to one owner: registering a
taken name is an error naming both owners; asking for an unknown name lists close matches and any plugin that
failed to load (it may have been the one that would have provided the name).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zoo.contracts import PROTOCOLS
from zoo.errors import PluginError

KINDS = ("model", "reader", "metric", "callback", "format", "command", "extension")

METADATA: dict[str, frozenset[str]] = {
    "model": frozenset({"config", "released_weights"}),
    "extension": frozenset({"command"}),
}
"""The metadata keywords ``register`` accepts per kind (none for the others); docs/plugin_hooks.md."""
REQUIRED_METADATA: dict[str, frozenset[str]] = {"extension": frozenset({"command"})}


@dataclass
class Entry:
    name: str
    kind: str
    target: type | str
    owner: str
    """The plugin (entry-point name) that registered it."""
    distribution: str
    """The distribution that ships that plugin."""
    summary: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        target = self.target
        return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"

    @property
    def cls(self) -> type:
        """The class, imported on first use and checked against the kind's protocol."""
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            try:
                obj: Any = importlib.import_module(module)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:  # noqa: BLE001 - any failure to import names the plugin
                raise PluginError(
                    f"{self.kind} {self.name!r} of plugin {self.owner!r} ({self.distribution}) cannot be "
                    f"loaded from {self.target}: {type(exc).__name__}: {exc}"
                ) from None
            check_class(obj, self.kind, self.owner, self.distribution, self.name)
            check_metadata(obj, self.kind, self.metadata, f"plugin {self.owner!r} ({self.distribution})")
            self.target = obj
        return self.target  # type: ignore[return-value]


def check_class(cls: Any, kind: str, owner: str, distribution: str, name: str | None = None) -> None:
    """``cls`` fulfils the protocol of ``kind`` (and carries the registered name)."""
    where = f"plugin {owner!r} ({distribution})"
    if not isinstance(cls, type):
        raise PluginError(f"{where} registered {kind} {name or cls!r}: expected a class, got {cls!r}")
    protocol = PROTOCOLS[kind]
    members = [m for m in _protocol_members(protocol) if m != "__init__"]
    missing = sorted(m for m in members if not hasattr(cls, m))
    if missing:
        raise PluginError(
            f"{where} registered {kind} class {cls.__qualname__}, which lacks {', '.join(missing)} "
            f"(the {protocol.__name__} contract: docs/plugin_hooks.md)"
        )
    if not isinstance(cls.name, str) or not cls.name or (name is not None and cls.name != name):
        raise PluginError(
            f"{where} registered {kind} {name!r} as {cls.__qualname__}, whose 'name' is {cls.name!r}"
        )
    if kind not in ("command", "extension") and not dataclasses.is_dataclass(cls.Config):
        raise PluginError(f"{where} registered {kind} {cls.name!r}: its 'Config' must be a dataclass")


def check_metadata(cls: Any, kind: str, metadata: dict[str, Any], where: str) -> None:
    """An extension's class extends the command its registration names."""
    if kind == "extension" and cls.command != metadata.get("command"):
        raise PluginError(
            f"{where}: extension {cls.name!r} ({cls.__qualname__}) extends command {cls.command!r} but was "
            f"registered with command={metadata.get('command')!r}"
        )


def _protocol_members(protocol: type) -> set[str]:
    attrs = getattr(protocol, "__protocol_attrs__", None)  # Python 3.12+
    if attrs is None:
        from typing import _get_protocol_attrs  # type: ignore[attr-defined]

        attrs = _get_protocol_attrs(protocol)
    return set(attrs)


def kind_is_command(kind: str) -> bool:
    return kind == "command"


class Registry:
    def __init__(self, kind: str, failures: Callable[[], list[Any]] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._failures = failures or (lambda: [])

    def make_entry(
        self,
        target: type | str,
        owner: str,
        distribution: str,
        name: str | None = None,
        summary: str = "",
        **metadata: Any,
    ) -> Entry:
        """An entry for ``target`` (validated, not yet added)."""
        where = f"plugin {owner!r} ({distribution}) registered {self.kind} {name or target!r}"
        allowed = METADATA.get(self.kind, frozenset())
        unknown = sorted(set(metadata) - allowed)
        if unknown:
            accepted = f"it accepts {', '.join(sorted(allowed))}" if allowed else "it accepts none"
            raise PluginError(
                f"{where} with unknown keyword(s) {', '.join(unknown)}: register(target, name=..., "
                f"summary=...) takes metadata per kind, and for a {self.kind} {accepted} (docs/plugin_hooks.md)"
            )
        missing = sorted(REQUIRED_METADATA.get(self.kind, frozenset()) - set(metadata))
        if missing:
            raise PluginError(f"{where} without {', '.join(f'{m}=...' for m in missing)}")
        if isinstance(target, str):
            if ":" not in target or not name:
                raise PluginError(
                    f"plugin {owner!r} ({distribution}) registered {self.kind} {target!r}: a lazy target is "
                    f"'module:Class' and needs name=..."
                )
        else:
            check_class(target, self.kind, owner, distribution, name)
            check_metadata(target, self.kind, metadata, where)
            name = target.name
            doc = target.help if kind_is_command(self.kind) else (target.__doc__ or "").strip().split("\n")[0]
            summary = summary or doc
        return Entry(name, self.kind, target, owner, distribution, summary, metadata)  # type: ignore[arg-type]

    def add(self, entry: Entry) -> None:
        if entry.name in self._entries:
            old = self._entries[entry.name]
            raise PluginError(
                f"{self.kind} name {entry.name!r} is registered twice: by plugin {old.owner!r} "
                f"({old.distribution}, {old.path}) and by plugin {entry.owner!r} ({entry.distribution}, "
                f"{entry.path}); rename one of them or uninstall one distribution"
            )
        self._entries[entry.name] = entry

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            pass
        message = f"unknown {self.kind} {name!r}"
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        if close:
            message += f"; did you mean {', '.join(repr(c) for c in close)}?"
        message += f"\nknown {self.kind}s: {', '.join(sorted(self._entries)) or 'none'}"
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
        """Forget every entry that ``owner`` registered (used when a plugin is unregistered)."""
        self._entries = {n: e for n, e in self._entries.items() if e.owner != owner}
