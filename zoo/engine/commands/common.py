"""Arguments shared by the commands that take a configuration."""

from __future__ import annotations

import argparse

from zoo.config import ZooConfig, bundled_config, load_config


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
