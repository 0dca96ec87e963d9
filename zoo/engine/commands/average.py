"""``zoo average``: the mean of the weights of several runs or checkpoints (zoo.engine.runs.average)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class AverageCommand:
    name = "average"
    help = "average the weights of runs or checkpoints of one architecture into a new run directory"
    description = (
        "Write the element-wise mean of the weights of SOURCEs (run directories, checkpoint directories\n"
        "checkpoints/step-N, or .safetensors files of a run) to --output as a run directory that `zoo eval`,\n"
        "`zoo predict` and `zoo export` take with --weights DIR. Tensor names and shapes must agree. Averaging\n"
        "suits checkpoints of one run; independent runs are better ensembled (docs/ensembles.md)."
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sources", nargs="+", metavar="RUN_DIR", help="run or checkpoint directories")
        parser.add_argument("--output", required=True, metavar="DIR", help="the run directory to write")
        parser.add_argument("--overwrite", action="store_true", help="replace weights already in --output")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from zoo.atomic import check_output_dir
        from zoo.engine.runs import average
        from zoo.engine.runs.checkpoint import WEIGHTS_FILE, latest_checkpoint
        from zoo.errors import UsageError

        check_output_dir(args.output)
        output = Path(args.output)
        if (output / WEIGHTS_FILE).exists() or latest_checkpoint(output) is not None:
            if not args.overwrite:
                raise UsageError(
                    f"--output {output} already holds weights; choose another folder or --overwrite"
                )
        sources = [average.resolve_source(s) for s in args.sources]
        if any(s.run_dir.resolve() == output.resolve() for s in sources):
            raise UsageError(f"--output {output} is one of the sources; write the average elsewhere")
        if len(sources) < 2:
            print("note: the average of one source is a copy of it", file=sys.stderr)
        log = lambda message: print(message, file=sys.stderr)  # noqa: E731
        arrays = average.average_weights(sources, log=log)
        written = average.write_average(output, sources, arrays)
        print(
            f"averaged {len(sources)} weights ({len(arrays)} tensors); wrote " + ", ".join(map(str, written))
        )
        print(f"evaluate it with: zoo eval --weights {output}")
        return 0
