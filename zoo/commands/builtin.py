"""Registers the core's sub-commands: the core is a plugin like any other."""

from __future__ import annotations

import argparse
import json

from zoo.hookspecs import hookimpl


class PluginsCommand:
    name = "plugins"
    help = "list the plugins found (built-in and third-party) and any that failed to load"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument("--verbose", "-v", action="store_true", help="show the traceback of each failure")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from tabulate import tabulate

        from zoo.plugins import get_plugins

        plugins = get_plugins()
        if args.json:
            print(json.dumps([i.as_dict() for i in plugins.infos], indent=2))
            return 0
        rows = []
        for info in plugins.infos:
            provides = "; ".join(f"{kind}s: {', '.join(names)}" for kind, names in info.provides.items())
            rows.append(
                [
                    info.name,
                    f"{info.distribution} {info.version}".strip(),
                    info.status,
                    provides if info.status == "loaded" else info.error,
                ]
            )
        print(
            tabulate(
                rows, headers=["plugin", "distribution", "status", "provides / error"], tablefmt="simple"
            )
        )
        if args.verbose:
            for info in plugins.failures():
                print(f"\n--- {info.name} ({info.distribution})\n{info.detail}")
        failed = plugins.failures()
        if failed:
            print(
                f"\n{len(failed)} plugin(s) failed to load; everything else works. "
                "Fix or uninstall them; `zoo plugins -v` shows tracebacks."
            )
        return 0


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
                "summary": (entry.cls.__doc__ or "").strip().splitlines()[0] if entry.cls.__doc__ else "",
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
    from zoo.engine import setup
    from zoo.runtime import init_paddle

    init_paddle("cpu")
    cfg = load_config(bundled_config(model), model=model)
    return setup.count_parameters(setup.build_model(cfg))


@hookimpl
def zoo_register_commands(register) -> None:
    from zoo.commands import bench, engine, export

    register(PluginsCommand)
    register(ModelsCommand)
    for command in engine.COMMANDS + bench.COMMANDS + export.COMMANDS:
        register(command)
