"""zoo bench (issue 7)."""

from __future__ import annotations

import argparse

from zoo.errors import ZooError


class BenchCommand:
    name = "bench"
    help = "benchmark models per device configuration: throughput, GAP, Hit@1, memory"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        raise ZooError("`zoo bench` is not built yet (issue 7)")


COMMANDS = [BenchCommand]
