"""zoo models: the registered models, their options and bundled configs."""

from __future__ import annotations

import argparse
import json

from zoo.engine.runtime import prepare_environment


class ModelsCommand:
    name = "models"
    help = "list the registered models, their options and bundled configs"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", nargs="?", help="show one model's options in full")
        parser.add_argument(
            "--params",
            action="store_true",
            help="build each model with its bundled config and count trainable parameters",
        )
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        # quiet paddle if --params builds models, but leave the allocator alone: nothing here is heavy
        prepare_environment(tune_malloc=False)
        from tabulate import tabulate

        from zoo.config import bundled_config, describe_fields
        from zoo.plugins import get_plugins

        registry = get_plugins().registry("model")
        if args.name:
            entry = registry.get(args.name)
            fields = describe_fields(entry.cls.Config)
            if args.json:
                print(json.dumps({"name": entry.name, "plugin": entry.owner, "options": fields}, default=str))
                return 0
            doc = (entry.cls.__doc__ or "").strip()
            print(f"{entry.name} (plugin {entry.owner}, {entry.distribution})\n{doc}\n")
            print(
                tabulate(
                    [[f["name"], f["type"], f["default"], f["doc"]] for f in fields],
                    headers=["option", "type", "default", ""],
                    tablefmt="simple",
                )
            )
            config = bundled_config(entry.name)
            if config is not None:
                print(f"\nbundled config: {config}")
            return 0
        rows = []
        for entry in registry:
            row = {
                "model": entry.name,
                "plugin": entry.owner,
                "distribution": entry.distribution,
                "config": str(bundled_config(entry.name) or "(defaults)"),
                "summary": entry.summary,
            }
            if args.params:
                row["parameters"] = count_parameters(entry.name)
            rows.append(row)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(tabulate(rows, headers="keys", tablefmt="simple", intfmt=","))
        return 0


def count_parameters(model: str) -> int:
    """Trainable parameters of ``model`` built from its bundled config (or its defaults)."""
    from zoo.config import bundled_config, load_config
    from zoo.engine import build
    from zoo.engine.runtime import init_paddle

    init_paddle("cpu", tune_malloc=False)
    cfg = load_config(bundled_config(model), model=model)
    return build.count_parameters(build.build_model(cfg))
