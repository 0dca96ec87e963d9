"""run / train / eval / predict / bench / export: argument handling over zoo.engine."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from zoo.atomic import atomic_group, check_output_dir, output_dir
from zoo.config import ZooConfig
from zoo.engine.commands.common import (
    add_config_arguments,
    add_data_argument,
    add_weights_arguments,
    class_names_of,
    exported_scorer,
    load_for_inference,
    metric_rows,
    prepare_config,
    print_table,
    true_or_false,
    write_results,
)
from zoo.engine.runtime import prepare_environment
from zoo.errors import UsageError
from zoo.storage import check_output, staged_output


def _add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """What `zoo eval` and `zoo predict` both take: the config with MODEL, --data and --weights."""
    add_config_arguments(parser, model_positional=True)
    add_data_argument(parser)
    add_weights_arguments(parser)


class TrainCommand:
    name = "train"
    help = "train a model (checkpoints, metrics history and plots go to train.save_dir)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, model_positional=True)
        add_data_argument(parser)
        parser.add_argument(
            "--save_dir",
            "--save-dir",
            dest="save_dir",
            help="run directory (train.save_dir): a directory or an s3:// or gs:// prefix",
        )
        parser.add_argument(
            "--log_interval",
            "--log-interval",
            dest="log_interval",
            type=int,
            help="log every N steps (train.log_interval)",
        )
        parser.add_argument(
            "--valid_interval",
            "--valid-interval",
            dest="valid_interval",
            type=int,
            help="validate every N epochs (train.valid_interval)",
        )
        parser.add_argument(
            "--fix_random_seed",
            "--fix-random-seed",
            dest="fix_random_seed",
            type=true_or_false,
            metavar="True|False",
            help="reproducible run with train.seed (default True)",
        )
        parser.add_argument(
            "--pretrain",
            metavar="PATH|URL",
            help="start from these weights (only the tensors that fit; the rest is reported)",
        )
        parser.add_argument(
            "--resume", action="store_true", help="continue the run in save_dir exactly where it stopped"
        )
        parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in save_dir")
        parser.add_argument(
            "--allow-change",
            "--allow_change",
            dest="allow_change",
            action="append",
            default=[],
            metavar="KEY",
            help="with --resume: accept a changed config key that keeps the run exact so far "
            "(train.epoch, train.max_iter); recorded in the run's resumes.jsonl",
        )
        from zoo.engine.train.multiprocess import add_launch_arguments

        add_launch_arguments(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        prepare_environment()  # the engine starts: before any plugin imports paddle
        from zoo.engine.distributed import context as distributed
        from zoo.engine.distributed import worker
        from zoo.engine.train import multiprocess
        from zoo.engine.train.trainer import Trainer

        for key in ("save_dir", "log_interval", "valid_interval", "fix_random_seed"):
            value = getattr(args, key)
            if value is not None:
                args.override.append(f"train.{key}={json.dumps(value)}")
        multiprocess.check_train_args(
            args
        )  # e.g. --gpus 4 with a CPU-only paddle fails here, before any data work
        cfg = prepare_config(args)
        if args.resume and args.pretrain:
            raise UsageError(
                "--resume continues a run with its own weights; --pretrain starts a new one: pick one"
            )
        plan = multiprocess.train_plan(args, cfg)
        if plan.needs_launch and not distributed.in_launched_job():
            return multiprocess.launch_training(args, cfg, plan)
        ctx = (
            worker.worker_context(plan.device) if distributed.in_launched_job() else distributed.DistContext()
        )
        with worker.failure_report(ctx):
            trainer = Trainer(cfg, overwrite=args.overwrite, ctx=ctx)
            result = trainer.fit(
                resume=args.resume, pretrain=args.pretrain, allow_changes=tuple(args.allow_change)
            )
        if not ctx.is_main:
            return 0
        if trainer.mirror is not None and not distributed.in_launched_job():
            trainer.mirror.discard_staging()  # all of the run is in the bucket
        rows = [
            ["model", cfg.model_name],
            ["parameters", f"{result.parameters:,}"],
            ["steps", result.steps],
            ["epochs", result.describe_epochs()],
            ["train videos/s", f"{result.train_videos_per_s:.1f}"],
            ["time", f"{result.seconds:.1f} s"],
            ["run directory", trainer.shown_dir],
        ]
        rows += [[f"valid {k}", v] for k, v in result.last_valid.items()]
        print_table(rows, ["", ""])
        return 0


def write_eval_outputs(out_dir: Path, metrics: dict[str, float], metric: Any, cfg: ZooConfig) -> list[Path]:
    written = [write_results(out_dir / "eval_results.json", metrics, cfg)]
    written += metric.write_reports(out_dir, class_names_of(cfg))
    return written


class EvalCommand:
    name = "eval"
    help = "evaluate weights with the config's metric (table, JSON and reports)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _add_inference_arguments(parser)
        parser.add_argument(
            "--output",
            metavar="DIR",
            default="eval",
            help="where results go: a directory or an s3:// or gs:// prefix (default ./eval)",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        prepare_environment()  # the engine starts: before any plugin imports paddle
        from zoo.engine.build import build_reader, describe_split
        from zoo.engine.infer.loops import evaluate

        check_output(args.output)  # a missing bucket is refused before the work, not after
        check_output_dir(args.output)  # a local folder: no file in its way
        cfg = prepare_config(args)
        model = load_for_inference(cfg, args)
        print(f"evaluating {describe_split(cfg, 'test')}", file=sys.stderr)
        metrics, metric = evaluate(model, build_reader(cfg, "test"), cfg, refuse_duplicates=True)
        with staged_output(args.output) as out:  # a bucket URL: uploaded when complete
            written = published(write_eval_outputs(out, metrics, metric, cfg), out, args.output)
        print_table(metric_rows(metrics, metric), ["metric", "value"])
        print("wrote " + ", ".join(written))
        return 0


def published(paths: list[Path], staging: Path, output: str) -> list[str]:
    """The names of written files as the user sees them (under the bucket URL when ``output`` is one)."""
    from zoo import storage

    if not storage.is_url(output):
        return [str(p) for p in paths]
    base = storage.redact(output.rstrip("/"))
    return [f"{base}/{p.relative_to(staging).as_posix()}" for p in paths]


def write_predictions(out_dir: Path, predictions: list[Any], cfg: ZooConfig) -> list[Path]:
    """Write ``predictions`` once per format of ``predict.formats`` (``predictions`` + the format's suffix)."""
    from zoo.plugins import get_plugins

    registry = get_plugins().registry("format")
    formats = [registry.get(name).cls for name in cfg.predict.formats]  # unknown name: PluginError
    class_names = class_names_of(cfg)
    output_dir(out_dir)
    written = []
    with atomic_group():  # every format's file appears, or none does
        for fmt in formats:
            path = out_dir / f"predictions{fmt.suffix}"
            fmt(fmt.Config()).write(path, predictions, class_names)
            written.append(path)
    return written


class PredictCommand:
    name = "predict"
    help = "top-k classes with probabilities per video (JSONL and the formats)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _add_inference_arguments(parser)
        parser.add_argument(
            "--filelist",
            metavar="PATH",
            nargs="+",
            help="what to predict: files, folders, globs or a list file such as the seed's "
            "infer.list (default: data.infer, else data.test)",
        )
        parser.add_argument(
            "--top_k",
            "--top-k",
            "--infer_topk",
            dest="top_k",
            type=int,
            help="classes per video (predict.top_k, default 20)",
        )
        parser.add_argument(
            "--vocabulary", metavar="CSV", help="YouTube-8M vocabulary.csv to name the classes"
        )
        parser.add_argument(
            "--model",
            dest="model_dir",
            metavar="DIR",
            help="predict with a model exported by `zoo export` (Paddle Inference or ONNX Runtime, as "
            "exported) instead of "
            "building it from a config and weights",
        )
        parser.add_argument(
            "--precision",
            choices=["fp32", "bf16", "fp16"],
            default="fp32",
            help="with --model: inference precision (CPU: fp32, or bf16 through oneDNN; "
            "GPU: fp32, fp16, bf16)",
        )
        parser.add_argument(
            "--tensorrt",
            action="store_true",
            help="with --model and --device gpu: run supported subgraphs with TensorRT",
        )
        parser.add_argument(
            "--gpu-memory-mb",
            type=int,
            default=512,
            metavar="MB",
            help="with --model and --device gpu: initial GPU memory pool",
        )
        parser.add_argument(
            "--output",
            metavar="DIR",
            default="predictions",
            help="where predictions.csv and predictions.jsonl go: a directory or an s3:// or gs:// prefix "
            "(default ./predictions)",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        prepare_environment()  # the engine starts: before any plugin imports paddle
        from zoo.engine.build import build_reader
        from zoo.engine.infer.loops import dygraph_scorer, predict

        check_output(args.output)  # a missing bucket is refused before the work, not after
        check_output_dir(args.output)  # a local folder: no file in its way
        if args.top_k is not None:
            args.override.append(f"predict.top_k={args.top_k}")
        if args.vocabulary:
            args.override.append(f"predict.vocabulary={json.dumps(args.vocabulary)}")
        if args.model_dir:
            cfg, scorer = exported_scorer(args)
        else:
            cfg = prepare_config(args)
            scorer = dygraph_scorer(load_for_inference(cfg, args), cfg.dataset.features)
        predictions = predict(
            scorer,
            build_reader(cfg, "infer"),
            cfg,
            top_k=cfg.predict.top_k,
            batch_size=cfg.predict.batch_size,
        )
        with staged_output(args.output) as out:  # a bucket URL: uploaded when complete
            written = published(write_predictions(out, predictions, cfg), out, args.output)
        for p in predictions[:3]:
            print(f"{p.id}: " + ", ".join(f"{c}:{s:.3f}" for c, s in zip(p.classes[:5], p.scores[:5])))
        print(f"{len(predictions)} videos; wrote " + ", ".join(written))
        return 0


class RunCommand:
    name = "run"
    help = "train, evaluate and predict in one go (built-in sample data unless data is given)"
    description = (
        "Train MODEL with its bundled config, evaluate it on the test split and write predictions.\n"
        "Without --data (and with no data paths in the config) it trains on the built-in YouTube-8M-format\n"
        "sample dataset, made on first use, with the config's `sample` section applied (a smaller model\n"
        "and batch so that it finishes in minutes on a laptop CPU)."
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, model_positional=True)
        add_data_argument(parser)
        parser.add_argument(
            "--output",
            metavar="DIR",
            help="run directory: a directory or an s3:// or gs:// prefix (default runs/MODEL)",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        prepare_environment()  # the engine starts: before any plugin imports paddle
        from zoo.engine.build import build_reader
        from zoo.engine.infer.loops import dygraph_scorer, evaluate, predict
        from zoo.engine.train.trainer import Trainer

        start = time.perf_counter()
        cfg = prepare_config(args)
        if args.output and any(text.startswith("train.save_dir=") for text in cfg.overrides):
            raise UsageError("--output and -o train.save_dir both name the run directory: give one of them")
        run_dir = args.output or str(Path("runs") / cfg.model_name)
        # an -o train.save_dir wins over the default runs/MODEL, as every -o does
        cfg = cfg.with_overrides({"train": {"save_dir": str(run_dir)}}, "zoo run", under_user=True)
        trainer = Trainer(cfg, overwrite=True)
        result = trainer.fit()
        run_dir = trainer.run_dir  # a bucket run: its staging copy, uploaded once the outputs are written
        test_reader = build_reader(cfg, "test")
        t0 = time.perf_counter()
        model = result_model(result, cfg)
        metrics, metric = evaluate(model, test_reader, cfg, desc="test")
        eval_speed = metrics.get("num_videos", 0) / max(time.perf_counter() - t0, 1e-9)
        written = write_eval_outputs(run_dir, metrics, metric, cfg)
        predictions = predict(
            dygraph_scorer(model, cfg.dataset.features),
            build_reader(cfg, "infer"),
            cfg,
            top_k=cfg.predict.top_k,
            batch_size=cfg.predict.batch_size,
        )
        written += write_predictions(run_dir, predictions, cfg)
        rows = [
            ["model", cfg.model_name],
            ["parameters", f"{result.parameters:,}"],
            [
                "data",
                "built-in sample dataset"
                if "built-in sample data" in cfg.source
                else str(args.data or cfg.data.train),
            ],
            ["epochs / steps", f"{result.describe_epochs()} / {result.steps}"],
            ["train videos/s", f"{result.train_videos_per_s:.1f}"],
            ["eval videos/s", f"{eval_speed:.1f}"],
        ]
        rows += metric_rows(metrics, metric, prefix="test ")
        trainer.publish()
        if trainer.mirror is not None:
            trainer.mirror.discard_staging()
        rows += [["time", f"{time.perf_counter() - start:.1f} s"], ["outputs", trainer.shown_dir]]
        print_table(rows, ["", ""])
        return 0


def result_model(result: Any, cfg: ZooConfig) -> Any:
    """The trained model, rebuilt from the weights the run saved (what users get from the run directory)."""
    from zoo.engine.build import build_model
    from zoo.engine.runs.weights import apply_weights, read_weights

    model = build_model(cfg)
    apply_weights(model, read_weights(str(result.run_dir)), strict=True)
    return model


COMMANDS = [RunCommand, TrainCommand, EvalCommand, PredictCommand]
