"""The ``zoo`` command line. Sub-commands are plugins too (hook ``zoo_register_commands``), and so are
flags added to them (hook ``zoo_register_extensions``).

Exit codes: 0 success, 2 usage or configuration error, 1 failure.
"""

from __future__ import annotations

import argparse
import sys

from zoo import __version__
from zoo.errors import ZooError

DESCRIPTION = """\
yt8m-zoo: train, evaluate and deploy YouTube-8M video classifiers on PaddlePaddle.

Start with `zoo run nextvlad`: it builds a small YouTube-8M-format dataset on first use, trains NeXtVLAD,
evaluates it (GAP, Hit@1, PERR, mAP) and writes predictions.
"""

EPILOG = """\
environment: ZOO_DISABLE_EXTERNAL_PLUGINS=1 loads only yt8m-zoo's own plugins; ZOO_STRICT_PLUGINS=1 makes a
plugin that fails to load an error; ZOO_MALLOC_TUNING=0 leaves glibc's malloc as it is (by default freed memory
is kept for reuse: faster steps, higher RSS). Exit codes: 0 success, 2 usage or config error, 1 failure."""


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with full arguments for the command named in ``argv`` only (None: for every command).

    Commands are imported only when they are about to run or be described, so ``zoo --help`` imports
    none of them (and so never paddle).
    """
    from zoo.plugins import get_plugins

    parser = argparse.ArgumentParser(
        prog="zoo",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"yt8m-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    registry = get_plugins().registry("command")
    words = [w for w in (argv or []) if not w.startswith("-")]
    chosen = words[0] if argv is not None and words else None
    for entry in registry:
        if argv is not None and entry.name != chosen:
            sub.add_parser(entry.name, help=entry.summary)
            continue
        cls = entry.cls
        p = sub.add_parser(
            entry.name,
            help=entry.summary or cls.help,
            description=cls.__dict__.get("description") or cls.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cls.add_arguments(p)
        p.set_defaults(_command=cls, _extensions=_add_extensions(p, entry.name))
    return parser


def _add_extensions(parser: argparse.ArgumentParser, command: str) -> list[type]:
    """The flags of the extensions registered for ``command`` (hook ``zoo_register_extensions``), in name
    order; returns their classes, whose ``run`` is called before the command's."""
    from zoo.errors import PluginError
    from zoo.plugins import get_plugins

    classes = []
    for ext in get_plugins().registry("extension"):
        if ext.metadata.get("command") != command:
            continue
        cls = ext.cls
        try:
            cls.add_arguments(parser)
        except argparse.ArgumentError as exc:
            raise PluginError(
                f"extension {ext.name!r} of plugin {ext.owner!r} ({ext.distribution}) cannot add its flags "
                f"to `zoo {command}`: {exc}"
            ) from None
        classes.append(cls)
    return classes


def _interrupt_on_sigterm() -> None:
    """SIGTERM ends a command like Ctrl-C does, so DataLoader workers and launched ranks are shut down."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (zoo.cli.main called from a thread)
        pass


def main(argv: list[str] | None = None) -> int:
    _interrupt_on_sigterm()
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(argv)
    except ZooError as exc:  # strict plugin mode, a broken command plugin
        print(f"zoo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    args = parser.parse_args(argv)
    command = vars(args).get("_command")
    if command is None:
        parser.print_help()
        return 2
    if args.command != "plugins":
        from zoo.plugins import warn_failures

        warn_failures()
    try:
        for extension in vars(args).get("_extensions", []):
            handled = extension.run(args)
            if handled is not None:
                return int(handled)
        return int(command().run(args) or 0)
    except ZooError as exc:
        print(f"zoo {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"zoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
