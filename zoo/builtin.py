"""The core's own command, ``zoo plugins``: registered through the entry-point group like any plugin's."""

from __future__ import annotations

import argparse
import json

from zoo.errors import UsageError
from zoo.hookspecs import hookimpl


class PluginsCommand:
    name = "plugins"
    help = "list the plugins found (built-in and third-party) and any that failed to load"

    description = (
        "List the plugins found (built-in and third-party) and any that failed to load.\n\n"
        "  zoo plugins new NAME [--output DIR]   write a ready plugin package (a model, its config, a test\n"
        "                                        file using zoo.testing) to install with pip install -e DIR"
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="new")
        new = actions.add_parser(
            "new",
            help="write a ready plugin package",
            description="Write a ready plugin package NAME: a model, its config and a test file using\n"
            "zoo.testing, installable with pip install -e DIR (docs/writing_plugins.md).",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        new.add_argument("plugin_name", nargs="?", metavar="NAME", help="the plugin's name, e.g. my-model")
        new.add_argument("--output", metavar="DIR", help="where to write it (default ./NAME)")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument("--verbose", "-v", action="store_true", help="show the traceback of each failure")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from tabulate import tabulate

        from zoo.plugins import get_plugins

        if args.action == "new":
            from zoo.scaffold import write_plugin

            if not args.plugin_name:
                raise UsageError("zoo plugins new NAME: give the plugin's name, for example my-model")
            written = write_plugin(args.plugin_name, args.output)
            print(f"wrote {written}; next: pip install -e {written} && pytest {written}")
            return 0
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


@hookimpl
def zoo_register_commands(register) -> None:
    register(PluginsCommand)
