"""What the engine's commands share: their common arguments, the config they run with, the result table.

One module for every command (and for plugins that add flags to them), instead of commands importing each
other's private helpers."""

from __future__ import annotations

import argparse
import json
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
        "(also PaddleVideo 1.x), a .tar.gz of one, or an http(s) URL (add #sha256=HEX to "
        "verify it); default: the model's released weights, if it has any",
    )
    parser.add_argument("--weights-sha256", metavar="HEX", help="expected SHA-256 of a --weights URL")


def command_config(args: argparse.Namespace) -> ZooConfig:
    """--config / model name, else (eval, predict) the config saved beside --weights."""
    weights = getattr(args, "weights", None)
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
