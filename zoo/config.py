"""Typed configuration: YAML files and ``-o section.key=value`` overrides checked against dataclasses.

A config has six sections. ``dataset`` states the shared facts once (class count, feature names and sizes,
frame limit) and they are handed to every plugin as a :class:`DatasetSpec`. ``model``, ``data`` and
``eval`` name a plugin (``name``, ``reader``, ``metric``) and may carry that plugin's own ``Config`` fields
beside the core's; ``train`` and ``predict`` belong to the engine. Every key is checked: an unknown key or a
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

from zoo.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------
# Core sections


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about the data that models, readers and metrics share."""

    num_classes: int = 3862
    """Number of classes (YouTube-8M 2018: 3862)."""
    features: dict[str, int] = field(default_factory=lambda: {"rgb": 1024, "audio": 128})
    """Frame feature names and their sizes, in model input order."""
    max_frames: int = 300
    """Frames kept per video; longer videos are truncated."""


@dataclass
class DataConfig:
    """Where the data is and how it is fed (the reader plugin's own options sit beside these keys)."""

    reader: str = "yt8m-frame"
    """Reader plugin name (``zoo plugins`` lists them)."""
    train: list[str] | None = None
    """Training data: files, directories, globs or ``.list`` files. None: the built-in sample data."""
    valid: list[str] | None = None
    """Validation data (YouTube-8M: the validate partition). None: the built-in sample data."""
    test: list[str] | None = None
    """Evaluation data for ``zoo eval``. None: same as ``valid``."""
    infer: list[str] | None = None
    """Data for ``zoo predict``. None: same as ``test``."""
    num_workers: int = 0
    """DataLoader worker processes per device (0: read in the training process)."""
    shuffle_buffer: int = 1024
    """Videos held in the shuffle buffer while training."""
    bucket_by_length: bool = True
    """Training batches videos of similar length together (sorted within windows of the shuffle buffer's
    output, batch order still shuffled), so less padding is computed. Seeded, resumable, every video once per
    epoch as without it; only which videos share a batch changes. Evaluation and prediction never bucket."""
    collate_threads: int | None = None
    """Threads that fill batches while the reading thread decodes the next ones (0: fill in the reading
    thread). None: 1 without DataLoader workers, 0 inside workers (they already run in parallel)."""
    dequantize_on_device: bool | None = None
    """Keep quantized (uint8) features as uint8 until they are on the device and dequantize them there (the
    same float32 values, 4x less host memory traffic and host-to-device copying). None: on for GPU
    training, off on CPU (where numpy dequantizes faster than paddle's CPU kernels)."""


@dataclass
class TrainConfig:
    """Training recipe; names follow PaddleVideo's configs where they mean the same thing."""

    epoch: int = 6
    """Passes over the training data."""
    max_iter: int = 700000
    """Stop after this many optimizer steps even if epochs remain."""
    batch_size: int = 160
    """Global batch size (split evenly over the devices)."""
    num_gpus: int = 1
    """Devices to train on (``zoo train --gpus`` overrides)."""
    learning_rate: float = 0.0002
    """Initial Adam learning rate."""
    lr_boundary_examples: int = 2000000
    """Multiply the learning rate by ``learning_rate_decay`` every this many training examples."""
    learning_rate_decay: float = 0.8
    """Factor applied at each boundary."""
    l2_penalty: float = 1.0e-5
    """L2 weight decay coefficient."""
    gradient_clip_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    seed: int = 0
    """Seed for weights, dropout and shuffling."""
    fix_random_seed: bool = True
    """Make runs reproducible with ``seed`` (False: a fresh seed per run)."""
    log_interval: int = 10
    """Log every this many steps."""
    valid_interval: int = 1
    """Validate every this many epochs (0: never during training)."""
    save_dir: str = "checkpoints"
    """Where checkpoints, metrics history and plots are written."""
    checkpoint_steps: int = 0
    """Also write a checkpoint every this many steps (0: only at the end of each epoch)."""


@dataclass
class EvalConfig:
    """Evaluation (the metric plugin's own options sit beside these keys)."""

    metric: str = "yt8m"
    """Metric plugin name."""
    batch_size: int = 160
    """Validation batch size."""


@dataclass
class PredictConfig:
    """Prediction output."""

    batch_size: int = 1
    """Prediction batch size (the seed's infer batch is 1; larger is faster)."""
    top_k: int = 20
    """Classes reported per video."""
    vocabulary: str | None = None
    """Optional YouTube-8M ``vocabulary.csv`` to name the classes."""


SECTIONS: dict[str, type] = {
    "dataset": DatasetSpec,
    "model": type(None),  # plugin section: "name" + the model's Config
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "predict": PredictConfig,
    "sample": dict,  # overrides that `zoo run` applies when it trains on the built-in sample data
}
PLUGIN_KEY = {"model": ("name", "model"), "data": ("reader", "reader"), "eval": ("metric", "metric")}


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
        out[key] = coerce(value, fields[key][0], f"{where}.{key}")
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
    try:
        tree = ast.parse(inspect.getsource(cls))
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
    dataset: DatasetSpec
    model_name: str
    model: dict[str, Any]  # options for the model plugin's Config
    data: DataConfig
    reader: dict[str, Any]  # options for the reader plugin's Config (without paths)
    train: TrainConfig
    eval: EvalConfig
    metric: dict[str, Any]  # options for the metric plugin's Config
    predict: PredictConfig
    sample: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def with_overrides(self, patch: dict[str, Any], why: str) -> ZooConfig:
        """This config with ``patch`` (a mapping of sections) merged in and checked again."""
        return validate(_merge(self.raw, patch), f"{self.source} ({why})")

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :func:`load_config` reads back to the same config."""
        return {
            "dataset": dataclasses.asdict(self.dataset),
            "model": {"name": self.model_name, **self.model},
            "data": {**dataclasses.asdict(self.data), **self.reader},
            "train": dataclasses.asdict(self.train),
            "eval": {**dataclasses.asdict(self.eval), **self.metric},
            "predict": dataclasses.asdict(self.predict),
            "sample": copy.deepcopy(self.sample),
        }


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
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {exc}") from None
    return parts, value


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "features":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; `zoo models` lists the bundled configs"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections ({', '.join(SECTIONS)})")
    return data


def bundled_config(model: str) -> Path | None:
    """The YAML shipped for ``model``: ``configs/<model>.yaml``, else the model class's ``config_file``."""
    from importlib import resources

    candidate = resources.files("zoo.configs") / f"{model}.yaml"
    if candidate.is_file():
        return Path(str(candidate))
    from zoo.plugins import get_plugins

    registry = get_plugins().registry("model")
    if model in registry:
        path = getattr(registry.get(model).cls, "config_file", None)
        if path and Path(path).is_file():
            return Path(path)
    return None


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    model: str | None = None,
    raw: dict[str, Any] | None = None,
    source: str = "<defaults>",
) -> ZooConfig:
    """Defaults <- YAML file (or ``raw``) <- ``model`` name <- overrides, checked against the plugins' Configs."""
    raw = copy.deepcopy(raw) if raw is not None else {}
    if path is not None:
        raw = read_yaml(path)
        source = str(path)
    if model is not None:
        raw = _merge(raw, {"model": {"name": model}})
    for text in overrides or []:
        keys, value = parse_override(text)
        patch: dict[str, Any] = value
        for key in reversed(keys):
            patch = {key: patch}
        raw = _merge(raw, patch)
        if keys[0] not in SECTIONS:
            raise unknown_key_error(keys[0], list(SECTIONS), f"override {text!r}", "the config (sections)")
    return validate(raw, source)


def validate(raw: dict[str, Any], source: str = "<config>") -> ZooConfig:
    from zoo.plugins import get_plugins

    for section in raw:
        if section not in SECTIONS:
            raise unknown_key_error(section, list(SECTIONS), source, "the config (sections)")
    sections: dict[str, Any] = {}
    plugin_options: dict[str, dict[str, Any]] = {}
    for section, cls in SECTIONS.items():
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping, got {values!r}")
        values = dict(values)
        where = f"{source}: {section}"
        if section in PLUGIN_KEY:
            key, kind = PLUGIN_KEY[section]
            core_cls = cls if cls is not type(None) else None
            core_defaults = defaults(core_cls) if core_cls else {}
            name = values.get(key, core_defaults.get(key))
            if name is None:
                raise ConfigError(f"{where}.{key}: name the {kind} plugin to use (`zoo plugins` lists them)")
            if not isinstance(name, str):
                raise ConfigError(f"{where}.{key}: expected a plugin name, got {name!r}")
            entry = get_plugins().registry(kind).get(name)  # unknown name -> PluginError (exit 2)
            core_keys = set(core_defaults) | {key}
            core_values = {k: v for k, v in values.items() if k in core_keys}
            own = {k: v for k, v in values.items() if k not in core_keys}
            owner = f"{kind} plugin {name!r} ({entry.owner}, distribution {entry.distribution})"
            plugin_keys = {f.name for f in dataclasses.fields(entry.cls.Config)} - {"paths"}
            for k in own:
                if k not in plugin_keys:
                    described = f"the {section} section or {owner}" if core_cls is not None else owner
                    raise unknown_key_error(k, sorted(plugin_keys | (core_keys - {key})), where, described)
            plugin_options[section] = check_options(entry.cls.Config, own, where, owner)
            if core_cls is not None:
                sections[section] = build_dataclass(core_cls, core_values, where, f"the {section} section")
            else:
                sections[section] = name
        elif section == "sample":
            for key in values:
                if key not in SECTIONS or key == "sample":
                    raise unknown_key_error(
                        key, [s for s in SECTIONS if s != "sample"], where, "the sample section"
                    )
            sections[section] = values
        else:
            sections[section] = build_dataclass(cls, values, where, f"the {section} section")
    spec: DatasetSpec = sections["dataset"]
    if spec.num_classes < 1 or spec.max_frames < 1 or not spec.features or min(spec.features.values()) < 1:
        raise ConfigError(
            f"{source}: dataset: num_classes, max_frames and every feature size must be positive"
        )
    return ZooConfig(
        dataset=spec,
        model_name=sections["model"],
        model=plugin_options["model"],
        data=sections["data"],
        reader=plugin_options["data"],
        train=sections["train"],
        eval=sections["eval"],
        metric=plugin_options["eval"],
        predict=sections["predict"],
        sample=sections["sample"],
        source=source,
        raw=copy.deepcopy(raw),
    )
