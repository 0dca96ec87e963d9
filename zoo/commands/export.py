"""zoo export (issue 8)."""

from __future__ import annotations

import argparse

from zoo.errors import ZooError


class ExportCommand:
    name = "export"
    help = "export a model for Paddle Inference"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        raise ZooError("`zoo export` is not built yet (issue 8)")


COMMANDS = [ExportCommand]
