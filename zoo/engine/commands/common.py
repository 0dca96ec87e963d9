"""What the engine's commands share: their common arguments, the config they run with, the result table.

One module for every command (and for plugins that add flags to them), instead of commands importing each
other's private helpers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from zoo.config import ZooConfig, bundled_config, load_config
from zoo.errors import UsageError
from zoo.plugins import truthy


def add_config_arguments(parser: argparse.ArgumentParser, *, model_positional: bool = False) -> None:
    if model_positional:
        parser.add_argument(
            "model", nargs="?", help="model name (its bundled config is used; see `zoo models`)"
        )
    parser.add_argument("--config", "-c", metavar="YAML", help="configuration file (configs/*.yaml)")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting, for example -o train.batch_size=32 (repeatable; values are YAML)",
    )
    parser.add_argument("--device", default=None, help="cpu, gpu or gpu:N (default: cpu)")


def config_from_args(args: argparse.Namespace) -> ZooConfig:
    """--config, else the bundled config of the positional model, plus -o overrides."""
    model = getattr(args, "model", None)
    path = args.config
    if path is None and model is not None:
        path = bundled_config(model)
    return load_config(path, args.override, model=model)


def true_or_false(text: str) -> bool:
    try:
        return truthy(text, strict=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="a folder with train/, valid/ (or validate/) and test/ data (default: the config's "
        "data section; if that is empty, the built-in sample dataset)",
    )


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        metavar="PATH|URL",
        help="a run directory or checkpoint of `zoo train`, a .safetensors or .pdparams file "
        "(also PaddleVideo 1.x), a .tar.gz of one, or an http(s), s3:// or gs:// URL of any of these "
        "(add #sha256=HEX to verify a file); default: the model's released weights, if it has any",
    )
    parser.add_argument("--weights-sha256", metavar="HEX", help="expected SHA-256 of a --weights URL")


def command_config(args: argparse.Namespace) -> ZooConfig:
    """--config / model name, else (eval, predict) the config saved beside --weights."""
    weights = getattr(args, "weights", None)
    if weights and not args.config and not args.model:
        from zoo.engine.runs.weights import local_copy

        weights = args.weights = local_copy(weights, sha256=getattr(args, "weights_sha256", None))
    if weights and not args.config and not args.model and Path(weights).exists():
        saved = saved_config(Path(weights))
        if saved is not None:
            return load_config(None, args.override, raw=saved, source=f"{weights} (saved config)")
    if not args.config and not args.model:
        raise UsageError("name a model (for example `nextvlad`; see `zoo models`) or give --config YAML")
    return config_from_args(args)


def saved_config(path: Path) -> dict[str, Any] | None:
    for candidate in (path, path.parent, path.parent.parent, path.parent.parent.parent):
        meta = candidate / "config.json"
        if meta.is_file():
            return json.loads(meta.read_text())
    return None


def print_table(rows: list[list[Any]], headers: list[str]) -> None:
    from tabulate import tabulate

    rows = [[f"{v:.4f}" if isinstance(v, float) else v for v in row] for row in rows]
    print(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def prepare_config(args: argparse.Namespace, *, quiet: bool = False) -> ZooConfig:
    from zoo.engine.build import check_data_sources, ensure_data
    from zoo.engine.runtime import init_paddle

    check_data_sources(getattr(args, "data", None), args.override)
    cfg = command_config(args)
    init_paddle(args.device or "cpu")
    cfg = with_filelist(cfg, args)
    return ensure_data(
        cfg, getattr(args, "data", None), quiet=quiet, keep_infer=bool(getattr(args, "filelist", None))
    )


def with_filelist(cfg: ZooConfig, args: argparse.Namespace) -> ZooConfig:
    """``zoo predict --filelist``: what to predict, whatever the data section or --data say."""
    filelist = getattr(args, "filelist", None)
    return cfg.with_overrides({"data": {"infer": list(filelist)}}, "--filelist") if filelist else cfg


def prepare_config_from_raw(args: argparse.Namespace, raw: dict[str, Any], source: str) -> ZooConfig:
    """The config saved in an export, with overrides; its dataset facts are kept as exported."""
    from zoo.config import load_config
    from zoo.engine.build import check_data_sources, uses_sample_data, with_data_dir
    from zoo.engine.runtime import init_paddle

    check_data_sources(getattr(args, "data", None), args.override)
    cfg = load_config(None, args.override, raw=raw, source=source)
    init_paddle(args.device or "cpu")
    if getattr(args, "data", None):
        cfg = with_data_dir(cfg, args.data)
    cfg = with_filelist(cfg, args)
    if uses_sample_data(cfg):
        raise UsageError(
            f"{source} names no data to predict: give --filelist (files, folders, globs or a .list)"
        )
    return cfg


def load_for_inference(cfg: ZooConfig, args: argparse.Namespace) -> Any:
    from zoo.engine.build import build_model
    from zoo.engine.runs.weights import apply_weights, read_weights, released_weights_url

    model = build_model(cfg)
    source = args.weights
    if not source:
        source = released_weights_url(cfg.model_name)
        if not source:
            raise UsageError(
                f"model {cfg.model_name!r} has no released weights: give --weights "
                f"(for example the run directory written by `zoo train`)"
            )
        print(
            f"no --weights given: using the released {cfg.model_name} weights from {source}", file=sys.stderr
        )
    loaded = read_weights(source, sha256=args.weights_sha256)
    report = apply_weights(model, loaded, strict=True)
    print(f"weights: {loaded.origin} ({loaded.format}): {report.summary()}", file=sys.stderr)
    return model


def metric_rows(metrics: dict[str, float], metric: Any, prefix: str = "") -> list[list[Any]]:
    """The metric's headline first, then its display keys, then the rest of what it computed."""
    order = [metric.headline, *metric.display]
    keys = [k for k in dict.fromkeys(order) if k in metrics] + [k for k in metrics if k not in order]
    return [[f"{prefix}{k}", metrics[k]] for k in keys]


def write_results(path: Path, metrics: dict[str, float], cfg: ZooConfig) -> Path:
    """``{"model": ..., "metrics": ...}`` as JSON at ``path`` (its folder made first), written atomically."""
    from zoo.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"model": cfg.model_name, "metrics": metrics}, indent=1))
    return path


def exported_scorer(args: argparse.Namespace) -> tuple[ZooConfig, Any]:
    """``--model DIR``: the export's own config and its predictor (the same batches as the dygraph model)."""
    from zoo.engine.export.predictor import GpuOptions, load_exported
    from zoo.engine.runs.weights import local_copy

    gpu = GpuOptions(memory_pool_mb=args.gpu_memory_mb, tensorrt=args.tensorrt)
    args.model_dir = local_copy(args.model_dir)  # an export in a bucket: fetched once into the cache
    exported = load_exported(args.model_dir, device=args.device or "cpu", precision=args.precision, gpu=gpu)
    args.config, args.model = None, None
    return prepare_config_from_raw(
        args, exported.config, f"{args.model_dir} (exported config)"
    ), exported.predict


def class_names_of(cfg: ZooConfig) -> dict[int, str] | None:
    """``predict.vocabulary`` (a class-names CSV), read once per command, or None."""
    from zoo.engine.infer.predictions import load_class_names

    return load_class_names(cfg.predict.vocabulary) if cfg.predict.vocabulary else None
