"""Typed configuration: YAML files and ``-o section.key=value`` overrides checked against dataclasses.

The core's sections: ``dataset`` states the shared facts once (class count, feature names and sizes, frame
limit) and they are handed to every plugin as a :class:`DatasetSpec`; ``model`` and ``data`` name a plugin
(``name``, ``reader``) and may carry that plugin's own ``Config`` fields beside the core's; ``sample`` holds
overrides for the built-in sample data. Other sections are registered by plugins through the hook
``zoo_register_config_sections`` (the engine's ``train``, ``eval``, ``predict``; ``eval.metric`` names the
metric plugin, whose options sit beside the engine's keys): the core keeps the mechanism, not their fields. Every key is checked: an unknown key or a
value of the wrong type is a :class:`ConfigError` naming the file, the key and the plugin (exit code 2).
Overrides are parsed with ``yaml.safe_load``, never ``eval``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from zoo.contracts import DatasetSpec
from zoo.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------
# Core sections


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None) -> Any:
    """A dataclass field with a range check: ``epoch: int = bounded(6, ge=1)``."""
    return field(default=default, metadata={"ge": ge, "gt": gt})


@dataclass
class DataConfig:
    """Where the data is and how it is fed (the reader plugin's own options sit beside these keys)."""

    reader: str | None = None
    """Reader plugin name (``zoo plugins`` lists them). None: the dataset preset's reader."""
    train: list[str] | None = None
    """Training data: files, directories, globs or ``.list`` files. None: the built-in sample data."""
    valid: list[str] | None = None
    """Validation data (YouTube-8M: the validate partition). None: the built-in sample data."""
    test: list[str] | None = None
    """Evaluation data for ``zoo eval``. None: same as ``valid``."""
    infer: list[str] | None = None
    """Data for ``zoo predict``. None: same as ``test``."""
    num_workers: int = bounded(0, ge=0)
    """DataLoader worker processes per device (0: read in the training process)."""
    shuffle_buffer: int = bounded(1024, ge=1)
    """Videos held in the shuffle buffer while training."""
    bucket_by_length: bool = True
    """Training batches videos of similar length together (sorted within windows of the shuffle buffer's
    output, batch order still shuffled), so less padding is computed. Seeded, resumable, every video once per
    epoch as without it; only which videos share a batch changes. Evaluation and prediction never bucket."""
    collate_threads: int | None = bounded(None, ge=0)
    """Threads that fill batches while the reading thread decodes the next ones (0: fill in the reading
    thread). None: 1 without DataLoader workers, 0 inside workers (they already run in parallel)."""
    dequantize_on_device: bool | None = None
    """Keep quantized (uint8) features as uint8 until they are on the device and dequantize them there (the
    same float32 values, 4x less host memory traffic and host-to-device copying). None: on for GPU
    training, off on CPU (where numpy dequantizes faster than paddle's CPU kernels)."""


SECTIONS: dict[str, type] = {
    "dataset": DatasetSpec,
    "model": type(None),  # plugin section: "name" + the model's Config
    "data": DataConfig,
    "sample": dict,  # overrides that `zoo run` applies when it trains on the built-in sample data
}
"""The core's own sections. Plugins add theirs through ``zoo_register_config_sections`` (the engine: ``train``,
``eval``, ``predict``); :func:`sections` lists both."""
PLUGIN_KEY = {"model": ("name", "model"), "data": ("reader", "reader"), "eval": ("metric", "metric")}
"""Sections that name a plugin: (the key naming it, the plugin kind)."""


def sections() -> dict[str, type]:
    """Every config section: the core's (:data:`SECTIONS`) and those plugins registered (their dataclasses)."""
    from zoo.plugins import get_plugins

    return {**SECTIONS, **get_plugins().config_sections()}


# ---------------------------------------------------------------------------------------------------------
# Type checking


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only where it is lossless and unambiguous."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str) and origin is list and args and args[0] is str:
            value = [value]  # a single path where a list is expected
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {coerce(k, kt, f"{where} key"): coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)  # 2e6 written for 2000000
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):  # a nested section (train.distill)
        return build_dataclass(tp, value, where, f"the {where.rsplit(': ', 1)[-1]} section")
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls) if f.init}


def unknown_key_error(key: str, known: list[str], where: str, owner: str) -> ConfigError:
    message = f"{where}: unknown key {key!r} for {owner}"
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if close:
        message += f"; did you mean {', '.join(repr(c) for c in close)}?"
    message += f" (known keys: {', '.join(sorted(known)) or 'none'})"
    return ConfigError(message)


def build_dataclass(cls: type, values: dict[str, Any], where: str, owner: str) -> Any:
    """Instantiate ``cls`` from ``values``, checking every key and type."""
    kwargs = check_options(cls, values, where, owner)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: {owner} needs {', '.join(missing)}")
    return cls(**kwargs)


def check_options(cls: type, values: dict[str, Any], where: str, owner: str) -> dict:
    """Check plugin options against the plugin's Config without instantiating it; returns coerced values."""
    fields = _fields(cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            raise unknown_key_error(key, list(fields), where, owner)
        out[key] = value = coerce(value, fields[key][0], f"{where}.{key}")
        ge, gt = fields[key][1].metadata.get("ge"), fields[key][1].metadata.get("gt")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (ge is not None and value < ge) or (gt is not None and value <= gt):
                bound = f">= {ge}" if ge is not None else f"> {gt}"
                raise ConfigError(f"{where}.{key}: must be {bound}, got {value!r}")
    return out


def defaults(cls: type) -> dict[str, Any]:
    return (
        {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
        if dataclasses.is_dataclass(cls)
        else {}
    )


def describe_fields(cls: type) -> list[dict[str, Any]]:
    """Name, type, default and docstring of each field (docs and ``zoo models --verbose``)."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # inherited fields keep their base's docstring unless redeclared
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(inspect.getsource(klass))
            body = tree.body[0].body  # type: ignore[attr-defined]
            for node, nxt in zip(body, body[1:]):
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
                        docs[node.target.id] = str(nxt.value.value).strip()
        except (OSError, TypeError, IndexError, SyntaxError):
            pass
    out = []
    for f in dataclasses.fields(cls):
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        out.append(
            {
                "name": f.name,
                "type": _type_name(typing.get_type_hints(cls)[f.name]),
                "default": default,
                "doc": docs.get(f.name, ""),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# The whole configuration


@dataclass
class ZooConfig:
    """A validated config: the core's sections as fields, the registered ones (``train``, ``eval``,
    ``predict``...) in ``sections`` and read as attributes (``cfg.train.batch_size``)."""

    dataset: DatasetSpec
    model_name: str
    model: dict[str, Any]  # options for the model plugin's Config
    data: DataConfig
    reader: dict[str, Any]  # options for the reader plugin's Config (without paths)
    metric: dict[str, Any] = field(default_factory=dict)  # options for the metric plugin's Config
    sections: dict[str, Any] = field(default_factory=dict)
    """The registered sections' dataclass instances, by section name."""
    sample: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    overrides: list[str] = field(default_factory=list)
    """The user's ``-o`` texts this config was loaded with (already in ``raw``)."""

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(
            f"the config has no section {name!r} (registered: {', '.join(sections) or 'none'}; is the plugin "
            f"that registers it installed?)"
        )

    def with_overrides(self, patch: dict[str, Any], why: str, *, under_user: bool = False) -> ZooConfig:
        """This config with ``patch`` (a mapping of sections) merged in and checked again.

        ``under_user``: the patch ranks below the user's ``-o`` overrides, which are merged in again on
        top of it (the precedence is defaults < config file < sample section < ``-o``)."""
        raw = _merge(self.raw, patch)
        if under_user:
            for text in self.overrides:
                raw = _merge(raw, override_patch(text))
        config = validate(raw, f"{self.source} ({why})")
        config.overrides = list(self.overrides)
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :func:`load_config` reads back to the same config."""
        out: dict[str, Any] = {
            "dataset": dataclasses.asdict(self.dataset),
            "model": {"name": self.model_name, **self.model},
            "data": {**dataclasses.asdict(self.data), **self.reader},
        }
        for name, value in self.sections.items():
            out[name] = {**dataclasses.asdict(value), **(self.metric if name == "eval" else {})}
        if "eval" not in self.sections and self.metric:
            out["eval"] = dict(self.metric)
        out["sample"] = copy.deepcopy(self.sample)
        return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], yaml.safe_load(value))."""
    if "=" not in text:
        raise ConfigError(
            f"override {text!r}: expected SECTION.KEY=VALUE, for example -o train.batch_size=32"
        )
    key, _, raw = text.partition("=")
    parts = [p for p in key.strip().split(".")]
    if len(parts) < 2 or not all(parts):
        raise ConfigError(
            f"override {text!r}: expected SECTION.KEY=VALUE, for example -o train.batch_size=32"
        )
    value = parse_yaml(raw, f"override {text!r}") if raw.strip() else ""
    return parts, value


def override_patch(text: str) -> dict[str, Any]:
    """``a.b=value`` -> ``{"a": {"b": value}}``."""
    keys, value = parse_override(text)
    patch: Any = value
    for key in reversed(keys):
        patch = {key: patch}
    return patch


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "features":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML without aliases: a config is a small document, and nested aliases can expand a 1 KB file
    into billions of nodes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML aliases (*name) are not allowed in configs; "
                f"write the value out, or share settings with _base_"
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str, where: str) -> Any:
    """``text`` as plain YAML data (no tags that run code, no aliases); errors name ``where``."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {str(exc)[:500]}") from None
    except (ValueError, RecursionError, UnicodeError) as exc:
        raise ConfigError(f"{where}: not a readable YAML document ({type(exc).__name__})") from None


BASE_KEY = "_base_"
BUNDLED_PREFIX = "zoo:"
"""``_base_: zoo:base.yaml`` names a config shipped with yt8m-zoo (its ``configs/``), wherever it is installed:
a plugin's YAML inherits the installed recipe instead of copying it."""
MAX_CONFIG_BYTES = 1 << 20


def _base_path(path: Path, base: str) -> Path:
    """Where a ``_base_`` entry of ``path`` points: beside ``path``, or a bundled config (``zoo:NAME.yaml``)."""
    if not base.startswith(BUNDLED_PREFIX):
        return path.parent / base
    import re
    from importlib import resources

    name = base[len(BUNDLED_PREFIX) :]
    bundled = resources.files("zoo.configs")
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*\.yaml", name) or not (bundled / name).is_file():
        known = sorted(f"{BUNDLED_PREFIX}{e.name}" for e in bundled.iterdir() if e.name.endswith(".yaml"))
        raise ConfigError(
            f"{path}: {BASE_KEY} {base!r} is not a config shipped with yt8m-zoo; the bundled ones are "
            f"{', '.join(known)}"
        )
    return Path(str(bundled / name))


MAX_CONFIG_FILES = 64
"""Distinct files one config may pull in through ``_base_`` (itself included)."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file with its ``_base_`` files merged under it (paths relative to the file, or ``zoo:NAME``
    for a config shipped with yt8m-zoo).

    Each distinct file is read and merged once however often the ``_base_`` lists name it (a file listing
    the next one ten times, nine levels deep, is nine reads, not 10**9), and a config may pull in at most
    :data:`MAX_CONFIG_FILES` files; the errors name the chain of ``_base_`` files that led there."""
    return _read_yaml(Path(path), (), {})


def _read_yaml(path: Path, chain: tuple[Path, ...], done: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    key = path.resolve()
    if key in chain:
        shown = " -> ".join(str(p) for p in (*chain, key))
        raise ConfigError(f"{path}: _base_ files include each other: {shown}")
    if key in done:
        return done[key]
    if len(done) >= MAX_CONFIG_FILES:
        shown = " -> ".join(str(p) for p in (*chain, key))
        raise ConfigError(
            f"{chain[0] if chain else path}: pulls in more than {MAX_CONFIG_FILES} files through _base_ "
            f"(at {shown}); a config needs a few"
        )
    done[key] = {}  # counts towards the bound while its own bases load
    data = _read_one(path)
    bases = data.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of them, got {str(bases)[:200]}")
    merged: dict[str, Any] = {}
    for base in dict.fromkeys(bases):  # a file listed twice merges the same values twice: once is enough
        merged = _merge(merged, _read_yaml(_base_path(path, base), (*chain, key), done))
    done[key] = _merge(merged, data)
    return done[key]


def _read_one(path: Path) -> dict[str, Any]:
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is over {MAX_CONFIG_BYTES} bytes; a config is a small file"
            )
        if path.exists() and not path.is_file():
            raise ConfigError(f"config file {path} is not a regular file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; `zoo models` lists the bundled configs"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections ({', '.join(sections())})")
    return data


def bundled_config(model: str) -> Path | None:
    """The YAML shipped for ``model``: what its plugin registered (``config=``), else ``configs/<model>.yaml``."""
    from importlib import resources

    from zoo.plugins import get_plugins

    registry = get_plugins().registry("model")
    if model in registry:
        path = registry.get(model).metadata.get("config")
        if path and Path(path).is_file():
            return Path(path)
    candidate = resources.files("zoo.configs") / f"{model}.yaml"
    if candidate.is_file():
        return Path(str(candidate))
    return None


MAX_DATASET_SIZE = 1_000_000
"""The largest class count, frame count or feature size a dataset may declare (arrays are sized by them)."""


def build_spec(values: dict[str, Any], where: str) -> DatasetSpec:
    """The dataset section: a named preset (``preset: yt8m``) with any of its facts overridden."""
    values = dict(values)
    preset = values.pop("preset", None)
    base: dict[str, Any] = {}
    if preset is not None:
        from zoo.plugins import get_plugins

        if not isinstance(preset, str):
            raise ConfigError(f"{where}.preset: expected a preset name, got {preset!r}")
        base = dataclasses.asdict(get_plugins().dataset(preset).spec)
    if not base and not {"num_classes", "features"} <= set(values):
        raise ConfigError(
            f"{where}: name a dataset preset (for example preset: yt8m; `zoo plugins` lists them) or give "
            f"num_classes and features"
        )
    spec = build_dataclass(DatasetSpec, {**base, **values}, where, "the dataset section (or its preset)")
    if spec.num_classes < 1 or spec.max_frames < 1 or not spec.features or min(spec.features.values()) < 1:
        raise ConfigError(f"{where}: num_classes, max_frames and every feature size must be positive")
    if max(spec.num_classes, spec.max_frames, *spec.features.values()) > MAX_DATASET_SIZE:
        raise ConfigError(
            f"{where}: num_classes, max_frames and every feature size must be at most {MAX_DATASET_SIZE:,} "
            f"(YouTube-8M: 3,862 classes, 300 frames, 1,024 + 128 values a frame)"
        )
    return spec


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    model: str | None = None,
    raw: dict[str, Any] | None = None,
    source: str = "<defaults>",
) -> ZooConfig:
    """YAML file (with its ``_base_`` files) or ``raw`` <- ``model`` name <- overrides, each checked against
    the plugins' Configs; an error names the file or the override it comes from."""
    raw = copy.deepcopy(raw) if raw is not None else {}
    if path is not None:
        raw = read_yaml(path)
        source = str(path)
    if model is not None:
        raw = _merge(raw, {"model": {"name": model}})
    patches = [(text, override_patch(text)) for text in overrides or []]
    try:
        config = validate(raw, source)
    except ConfigError:
        if not patches:
            raise
        # the file is completed by the overrides: check them together
        for _, patch in patches:
            raw = _merge(raw, patch)
        config = validate(raw, f"{source} with its -o overrides")
        config.overrides = [text for text, _ in patches]
        return config
    for text, patch in patches:  # each override checked on its own, so an error names it
        raw = _merge(raw, patch)
        config = validate(raw, f"override -o {text}")
    config.source = source
    config.overrides = [text for text, _ in patches]
    return config


def _plugin_section(
    section: str, values: dict[str, Any], default_name: str | None, where: str
) -> tuple[Any, dict[str, Any]]:
    """A section that names a plugin: (the core dataclass or the name, the plugin's own options)."""
    from zoo.plugins import get_plugins

    key, kind = PLUGIN_KEY[section]
    known = sections().get(section)
    core_cls = known if known is not None and known is not type(None) else None
    core_keys = (set(defaults(core_cls)) if core_cls else set()) | {key}
    name = values.get(key) or default_name
    if name is None:
        raise ConfigError(f"{where}.{key}: name the {kind} plugin to use (`zoo plugins` lists them)")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.{key}: expected a plugin name, got {name!r}")
    entry = get_plugins().registry(kind).get(name)  # unknown name -> PluginError (exit 2)
    owner = f"{kind} plugin {name!r} ({entry.owner}, distribution {entry.distribution})"
    own = {k: v for k, v in values.items() if k not in core_keys}
    plugin_keys = {f.name for f in dataclasses.fields(entry.cls.Config)} - {"paths"}
    for k in own:
        if k not in plugin_keys:
            described = f"the {section} section or {owner}" if core_cls is not None else owner
            raise unknown_key_error(k, sorted(plugin_keys | (core_keys - {key})), where, described)
    options = check_options(entry.cls.Config, own, where, owner)
    if core_cls is None:
        return name, options
    core_values = {k: v for k, v in values.items() if k in core_keys}
    core_values[key] = name
    return build_dataclass(core_cls, core_values, where, f"the {section} section"), options


def validate(raw: dict[str, Any], source: str = "<config>") -> ZooConfig:
    """Check every section of ``raw`` against the core's and the plugins' Configs."""
    known = sections()
    for section in raw:
        if section not in known:
            raise unknown_key_error(section, list(known), source, "the config (sections)")
    values: dict[str, dict[str, Any]] = {}
    for section in (*known, *(s for s in PLUGIN_KEY if s not in known)):
        section_values = raw.get(section) or {}
        if not isinstance(section_values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping, got {section_values!r}")
        values[section] = dict(section_values)
    model_name, model_options = _plugin_section("model", values["model"], None, f"{source}: model")
    spec = build_spec(values["dataset"], f"{source}: dataset")
    preset = None
    if values["dataset"].get("preset"):
        from zoo.plugins import get_plugins

        preset = get_plugins().dataset(values["dataset"]["preset"])
    for key in values["sample"]:
        if key not in known or key == "sample":
            raise unknown_key_error(
                key, [s for s in known if s != "sample"], f"{source}: sample", "the sample section"
            )
    data, reader_options = _plugin_section(
        "data", values["data"], preset.reader if preset else None, f"{source}: data"
    )
    evaluation, metric_options = _plugin_section(
        "eval", values["eval"], preset.metric if preset else None, f"{source}: eval"
    )
    registered = {}
    for section, cls in known.items():
        if section in SECTIONS:
            continue
        if section == "eval":
            registered[section] = evaluation
            continue
        registered[section] = build_dataclass(
            cls, values[section], f"{source}: {section}", f"the {section} section"
        )
    config = ZooConfig(
        dataset=spec,
        model_name=model_name,
        model=model_options,
        data=data,
        reader=reader_options,
        metric=metric_options,
        sections=registered,
        sample=values["sample"],
        source=source,
        raw=copy.deepcopy(raw),
    )
    for value in registered.values():
        finish = getattr(value, "finish", None)  # defaults that depend on other sections
        if callable(finish):
            finish(config)
    return config
