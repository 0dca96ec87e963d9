"""zoo export: a trained model as a Paddle Inference program or an ONNX model (``zoo predict --model DIR``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.engine.commands.common import add_config_arguments
from zoo.engine.runtime import prepare_environment
from zoo.errors import UsageError


class ExportCommand:
    name = "export"
    help = "export a model for Paddle Inference or ONNX Runtime (zoo predict --model DIR runs it)"
    description = (
        "Export MODEL (or --config, or the config saved in a --weights run directory) with its weights as a\n"
        "Paddle Inference program (paddle.jit.save: inference.json + inference.pdiparams) plus metadata.json.\n"
        "Batch size and frame count stay dynamic. --format onnx converts that program to model.onnx\n"
        "(paddle2onnx; the onnx extra) for ONNX Runtime. The export is checked against the model before it\n"
        "is written; `zoo predict --model DIR [--precision bf16]` predicts with it. --precision int8 writes an\n"
        "int8 ONNX model, checked against fp32 by GAP on labelled data. See docs/export.md."
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        from zoo.engine.commands.common import add_weights_arguments

        add_config_arguments(parser, model_positional=True)
        add_weights_arguments(parser)
        parser.add_argument(
            "--output",
            metavar="DIR",
            help="export directory (default exports/MODEL); an earlier export there is replaced",
        )
        parser.add_argument(
            "--vocabulary",
            metavar="CSV",
            help="YouTube-8M vocabulary.csv to ship with the export (default: the config's "
            "predict.vocabulary, if that file exists)",
        )
        parser.add_argument(
            "--allow-random",
            "--allow_random",
            dest="allow_random",
            action="store_true",
            help="export untrained random weights when no --weights are given and the model has "
            "no released weights (for testing a deployment)",
        )
        parser.add_argument(
            "--format",
            choices=["paddle", "onnx"],
            default="paddle",
            help="paddle: a Paddle Inference program (default); onnx: model.onnx for ONNX Runtime "
            "(needs the onnx extra: pip install 'yt8m-zoo[onnx]')",
        )
        parser.add_argument(
            "--precision",
            choices=["fp32", "int8"],
            default="fp32",
            help="int8: an ONNX model whose matrix products the model's plugin chooses run in int8 (ONNX "
            "Runtime's quantization tools), checked against the fp32 export by probabilities and GAP on the "
            "validation split (data.valid, else the sample data); implies --format onnx",
        )
        parser.add_argument(
            "--quantization",
            choices=["dynamic", "static"],
            default="dynamic",
            help="with --precision int8: dynamic (activation ranges per batch at run time; default) or "
            "static (ranges calibrated on training batches, data.train)",
        )
        parser.add_argument(
            "--calibration-batches",
            type=int,
            default=16,
            metavar="N",
            help="with --quantization static: training batches to calibrate on (default 16)",
        )
        parser.add_argument(
            "--max-gap-drop",
            type=float,
            default=0.005,
            metavar="X",
            help="with --precision int8: largest GAP loss against fp32 accepted (default 0.005)",
        )
        parser.add_argument(
            "--gap-videos",
            type=int,
            default=4096,
            metavar="N",
            help="with --precision int8: validation videos the GAP check reads (default 4096)",
        )
        parser.add_argument(
            "--frames",
            choices=["auto", "dynamic", "static"],
            default="auto",
            help="frame axis of the program: dynamic, static (T = dataset.max_frames; batches "
            "are padded), or auto: dynamic unless the model only exports with static T",
        )
        parser.add_argument(
            "--custom-ops",
            "--custom_ops",
            dest="custom_ops",
            action="store_true",
            help="let the program call the model's own Paddle custom operators (NeXtVLAD: its one-pass "
            "assignment kernel; built on first use, needs a C++ compiler): faster on CPU, but it loads only "
            "where yt8m-zoo registers them (zoo predict does). Paddle format, CPU only",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        prepare_environment()  # the engine starts: before any plugin imports paddle
        from zoo.atomic import check_output_dir
        from zoo.engine.commands.common import command_config, print_table
        from zoo.engine.export.tracing import export_model
        from zoo.engine.runs.weights import released_weights_url
        from zoo.engine.runtime import init_paddle

        if args.output:
            check_output_dir(args.output)
        cfg = command_config(args)
        init_paddle(args.device or "cpu")
        weights = args.weights
        if not weights and not args.allow_random:
            weights = released_weights_url(cfg.model_name)
            if not weights:
                raise UsageError(
                    f"model {cfg.model_name!r} has no released weights: give --weights (for example "
                    f"the run directory written by `zoo train`), or --allow-random to export "
                    f"untrained weights"
                )
            print(
                f"no --weights given: exporting the released {cfg.model_name} weights from {weights}",
                file=sys.stderr,
            )
        default = cfg.model_name if args.format == "paddle" else f"{cfg.model_name}-onnx"
        if args.precision == "int8":
            default = f"{cfg.model_name}-onnx-int8"
        target = str(args.output or Path("exports") / default)
        from zoo.storage import check_output

        check_output(target)
        options: dict = {"custom_ops": True} if args.custom_ops else {}
        if args.precision == "int8":
            if args.custom_ops:
                raise UsageError("--custom-ops: int8 exports are ONNX models of standard operators; drop it")
            from zoo.engine.export.quantize import Int8Options, export_int8

            export_model = export_int8  # an fp32 ONNX export, quantized and checked again
            options["options"] = Int8Options(
                mode=args.quantization,
                calibration_batches=args.calibration_batches,
                eval_videos=args.gap_videos,
                max_gap_drop=args.max_gap_drop,
            )
        elif args.format == "onnx":
            if args.custom_ops:
                raise UsageError("--custom-ops: ONNX exports use standard operators only; drop --custom-ops")
            from zoo.engine.export.onnx import export_onnx

            export_model = export_onnx  # the same arguments; writes model.onnx and the same metadata.json
        from zoo.engine.export.metadata import read_metadata
        from zoo.storage import redact, staged_output

        # a bucket URL: exported locally, then uploaded file by file, metadata.json (which lists them) last
        with staged_output(target, last="metadata.json") as staging:
            export_model(
                cfg,
                weights,
                staging,
                vocabulary=args.vocabulary,
                allow_random=args.allow_random,
                weights_sha256=args.weights_sha256,
                frames=args.frames,
                quiet=False,
                **options,
            )
            meta = read_metadata(staging)
        output = redact(target)
        size = sum(rec["bytes"] for rec in meta["files"].values())
        rows = [
            ["model", meta["model"]],
            ["parameters", f"{meta['parameters']:,}"],
            ["weights", meta["weights"]["source"] or "random initialisation (--allow-random)"],
            ["classes", meta["num_classes"]],
            ["features", ", ".join(f"{n}[{d}]" for n, d in meta["features"].items())],
            [
                "frames",
                "dynamic" if meta["frames"] == "dynamic" else f"static: {meta['max_frames']} (padded)",
            ],
            ["runtime", meta.get("runtime", "paddle-inference")],
            [
                "custom operators",
                f"yes: {meta['model']}'s (loaded by zoo predict; CPU)" if meta.get("custom_ops") else "none",
            ],
            # an int8 export's fp32 export was checked against the model; int8 against fp32 (_int8_rows)
            [
                "check (max |diff| vs model)",
                f"{meta['check'].get('fp32_max_abs_diff', meta['check']['max_abs_diff']):.2g}",
            ],
            *_int8_rows(meta),
            ["vocabulary", f"{len(meta['vocabulary'])} names" if meta["vocabulary"] else "none"],
            ["size", f"{size / 1e6:.1f} MB"],
            ["output", str(output)],
        ]
        print_table(rows, ["", ""])
        precision = "" if args.format == "onnx" or "quantization" in meta else " [--precision bf16]"
        print(f"predict with: zoo predict --model {output} --filelist FILES{precision}")
        return 0


def _int8_rows(meta: dict) -> list[list[str]]:
    """The int8 export's own table rows: what was quantized, and GAP against fp32."""
    quantization = meta.get("quantization")
    if not quantization:
        return []
    gap = meta["check"]["gap"]
    products = quantization["products"]
    return [
        [
            "int8",
            f"{quantization['mode']}: {sum(p['int8'] for p in products)} of {len(products)} products, "
            f"{quantization['int8_parameters']:,} parameters (fp32 export {quantization['fp32_bytes'] / 1e6:.1f} MB)",
        ],
        [
            "int8 vs fp32 probabilities",
            f"mean |diff| {meta['check']['mean_abs_diff']:.2g}, largest {meta['check']['max_abs_diff']:.2g}",
        ],
        [
            "GAP int8 / fp32",
            f"{gap['int8']:.5f} / {gap['fp32']:.5f} ({gap['difference']:+.5f}) on {gap['videos']} videos of "
            f"{gap['data']}",
        ],
    ]


COMMANDS = [ExportCommand]
