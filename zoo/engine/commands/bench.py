"""zoo bench: throughput, quality and memory of models per device count (docs/bench.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zoo.engine.runtime import prepare_environment
from zoo.errors import UsageError, ZooError


class BenchCommand:
    name = "bench"
    help = "benchmark models per device count: videos/s, scaling, quality, memory"
    description = (
        "For each model and device count, train a fixed number of steps and evaluate on the validation split,\n"
        "each configuration in fresh processes started by paddle.distributed.launch. Prints a table and writes\n"
        "OUTPUT/NAME.md, .csv, .json and a .png of throughput against devices.\n\n"
        "  zoo bench nextvlad --gpus 4             1, 2 and 4 GPUs\n"
        "  zoo bench --cpu-procs 1,2 --steps 20    every model, 1 and 2 CPU processes (gloo)\n"
        "  zoo bench --epochs 2 --name models-cpu  every model, one CPU process, two epochs each\n\n"
        "Without --data the built-in sample dataset is used with each model's `sample` config section."
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "models", nargs="*", metavar="MODEL", help="models to run (default: every registered model)"
        )
        devices = parser.add_mutually_exclusive_group()
        devices.add_argument(
            "--gpus",
            metavar="N|LIST",
            help="GPU counts: N runs 1, 2, 4, ... up to N; or a list such as 1,2,4",
        )
        devices.add_argument(
            "--cpu-procs",
            "--cpu_procs",
            dest="cpu_procs",
            metavar="N|LIST",
            help="CPU process counts (gloo), as for --gpus (default: 1)",
        )
        parser.add_argument(
            "--steps", type=int, default=30, help="measured training steps per configuration (30)"
        )
        parser.add_argument(
            "--warmup", type=int, default=5, help="training steps before the throughput clock starts (5)"
        )
        parser.add_argument(
            "--epochs",
            type=int,
            metavar="E",
            help="train E whole epochs instead of --warmup + --steps steps (for quality tables)",
        )
        parser.add_argument(
            "--data",
            metavar="DIR",
            help="a folder with train/ and valid/ (validate/); default: the built-in sample dataset",
        )
        parser.add_argument(
            "-o",
            "--override",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override a setting for every model, e.g. -o train.batch_size=64 (repeatable)",
        )
        parser.add_argument(
            "--output",
            metavar="DIR",
            default="benchmarks/results",
            help="where the results go (default benchmarks/results)",
        )
        parser.add_argument("--name", default="bench", help="file name stem of the results (default bench)")
        parser.add_argument(
            "--timeout",
            type=float,
            default=3600.0,
            help="seconds one configuration may take before it is stopped (3600)",
        )
        parser.add_argument(
            "--worker", metavar="SPEC", help=argparse.SUPPRESS
        )  # one rank of one configuration

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        prepare_environment()  # the engine starts: before any plugin imports paddle
        from zoo.engine import bench

        if args.worker:
            return bench.worker(args.worker)
        if args.gpus is not None:
            device, counts = "gpu", bench.parse_counts(args.gpus, "--gpus")
        else:
            device, counts = "cpu", bench.parse_counts(args.cpu_procs or "1", "--cpu-procs")
        if device == "gpu":
            from zoo.engine.distributed.launch import gpu_count

            gpu_count(max(counts))  # fail at once, before any data work
        models = args.models
        if not models:
            from zoo.plugins import get_plugins

            models = sorted(entry.name for entry in get_plugins().registry("model"))
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        settings = bench.BenchSettings(
            models=list(models),
            device=device,
            counts=counts,
            steps=args.steps,
            warmup=args.warmup,
            epochs=args.epochs,
            data=args.data,
            overrides=list(args.override),
            output=Path(args.output),
            name=args.name,
            timeout=args.timeout,
        )
        rows, written = bench.run_bench(settings)
        print(bench.table(rows))
        if device == "gpu" and any(not r.error for r in rows):
            meta = json.loads(written["json"].read_text())["meta"]
            print(bench.gpu_plan_table(bench.measured_gpu_rows(rows, meta.get("gpu", ""))))
        print("wrote " + ", ".join(str(p) for p in written.values()))
        failed = [r for r in rows if r.error]
        if failed:
            print(
                f"{len(failed)} configuration(s) failed (see the table and {written['md']})", file=sys.stderr
            )
            raise ZooError(f"{len(failed)} of {len(rows)} benchmark configurations failed")
        return 0


COMMANDS = [BenchCommand]
