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
from zoo.engine.commands.arguments import add_config_arguments, config_from_args
from zoo.engine.runtime import prepare_environment
from zoo.errors import UsageError
from zoo.plugins import truthy

prepare_environment()  # the engine starts: before any plugin imports paddle


def true_or_false(text: str) -> bool:
    try:
        return truthy(text, strict=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="a folder with train/, valid/ (or validate/) and test/ data (default: the config's "
        "data section; if that is empty, the built-in sample dataset)",
    )


def _add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        metavar="PATH|URL",
        help="a run directory or checkpoint of `zoo train`, a .safetensors or .pdparams file "
        "(also PaddleVideo 1.x), a .tar.gz of one, or an http(s) URL (add #sha256=HEX to "
        "verify it); default: the model's released weights, if it has any",
    )
    parser.add_argument("--weights-sha256", metavar="HEX", help="expected SHA-256 of a --weights URL")


def _add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """What `zoo eval` and `zoo predict` both take: the config with MODEL, --data and --weights."""
    add_config_arguments(parser, model_positional=True)
    _add_data_argument(parser)
    _add_weights_arguments(parser)


def _prepare(args: argparse.Namespace, *, quiet: bool = False) -> ZooConfig:
    from zoo.engine.runtime import init_paddle
    from zoo.engine.setup import check_data_sources, ensure_data

    check_data_sources(getattr(args, "data", None), args.override)
    cfg = _config(args)
    init_paddle(args.device or "cpu")
    cfg = _with_filelist(cfg, args)
    return ensure_data(
        cfg, getattr(args, "data", None), quiet=quiet, keep_infer=bool(getattr(args, "filelist", None))
    )


def _with_filelist(cfg: ZooConfig, args: argparse.Namespace) -> ZooConfig:
    """``zoo predict --filelist``: what to predict, whatever the data section or --data say."""
    filelist = getattr(args, "filelist", None)
    return cfg.with_overrides({"data": {"infer": list(filelist)}}, "--filelist") if filelist else cfg


def _prepare_from_raw(args: argparse.Namespace, raw: dict[str, Any], source: str) -> ZooConfig:
    """The config saved in an export, with overrides; its dataset facts are kept as exported."""
    from zoo.config import load_config
    from zoo.engine.runtime import init_paddle
    from zoo.engine.setup import check_data_sources, uses_sample_data, with_data_dir

    check_data_sources(getattr(args, "data", None), args.override)
    cfg = load_config(None, args.override, raw=raw, source=source)
    init_paddle(args.device or "cpu")
    if getattr(args, "data", None):
        cfg = with_data_dir(cfg, args.data)
    cfg = _with_filelist(cfg, args)
    if uses_sample_data(cfg):
        raise UsageError(
            f"{source} names no data to predict: give --filelist (files, folders, globs or a .list)"
        )
    return cfg


def _config(args: argparse.Namespace) -> ZooConfig:
    """--config / model name, else (eval, predict) the config saved beside --weights."""
    weights = getattr(args, "weights", None)
    if weights and not args.config and not args.model and Path(weights).exists():
        saved = _saved_config(Path(weights))
        if saved is not None:
            from zoo.config import load_config

            return load_config(None, args.override, raw=saved, source=f"{weights} (saved config)")
    if not args.config and not args.model:
        raise UsageError("name a model (for example `nextvlad`; see `zoo models`) or give --config YAML")
    return config_from_args(args)


def _saved_config(path: Path) -> dict[str, Any] | None:
    for candidate in (path, path.parent, path.parent.parent, path.parent.parent.parent):
        meta = candidate / "config.json"
        if meta.is_file():
            return json.loads(meta.read_text())
    return None


def _load_for_inference(cfg: ZooConfig, args: argparse.Namespace) -> Any:
    from zoo.engine.setup import build_model
    from zoo.engine.weights import apply_weights, read_weights, released_weights_url

    model = build_model(cfg)
    source = args.weights
    if not source:
        source = released_weights_url(cfg.model_name)
        if not source:
            raise UsageError(
                f"model {cfg.model_name!r} has no released weights: give --weights "
                f"(for example the run directory written by `zoo train`)"
            )
        print(
            f"no --weights given: using the released {cfg.model_name} weights from {source}", file=sys.stderr
        )
    loaded = read_weights(source, sha256=args.weights_sha256)
    report = apply_weights(model, loaded, strict=True)
    print(f"weights: {loaded.origin} ({loaded.format}): {report.summary()}", file=sys.stderr)
    return model


def _print_table(rows: list[list[Any]], headers: list[str]) -> None:
    from tabulate import tabulate

    rows = [[f"{v:.4f}" if isinstance(v, float) else v for v in row] for row in rows]
    print(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def _metric_rows(metrics: dict[str, float], metric: Any, prefix: str = "") -> list[list[Any]]:
    """The metric's headline first, then its display keys, then the rest of what it computed."""
    order = [metric.headline, *metric.display]
    keys = [k for k in dict.fromkeys(order) if k in metrics] + [k for k in metrics if k not in order]
    return [[f"{prefix}{k}", metrics[k]] for k in keys]


def _add_segment_arguments(parser: argparse.ArgumentParser, *, classes: bool = False) -> None:
    parser.add_argument(
        "--segments",
        action="store_true",
        help="the 2019 segment task: score every 5-frame segment (docs/segments.md)",
    )
    parser.add_argument(
        "--top-segments",
        type=int,
        default=100_000,
        metavar="N",
        help="with --segments: entries per class in the submission (and MAP@N); default 100000",
    )
    if classes:
        parser.add_argument(
            "--segment-classes",
            metavar="CSV",
            help="with --segments: the rated classes to list (segment_label_ids.csv; default: the one "
            "beside the data, else every class)",
        )


class TrainCommand:
    name = "train"
    help = "train a model (checkpoints, metrics history and plots go to train.save_dir)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, model_positional=True)
        _add_data_argument(parser)
        parser.add_argument(
            "--save_dir", "--save-dir", dest="save_dir", help="run directory (train.save_dir)"
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
        from zoo.engine.launch import add_launch_arguments

        add_launch_arguments(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from zoo.engine import distributed, launch
        from zoo.engine.trainer import Trainer

        for key in ("save_dir", "log_interval", "valid_interval", "fix_random_seed"):
            value = getattr(args, key)
            if value is not None:
                args.override.append(f"train.{key}={json.dumps(value)}")
        launch.check_train_args(args)  # e.g. --gpus 4 with a CPU-only paddle fails here, before any data work
        cfg = _prepare(args)
        if args.resume and args.pretrain:
            raise UsageError(
                "--resume continues a run with its own weights; --pretrain starts a new one: pick one"
            )
        plan = launch.train_plan(args, cfg)
        if plan.needs_launch and not distributed.in_launched_job():
            return launch.launch_training(args, cfg, plan)
        ctx = (
            launch.worker_context(plan.device) if distributed.in_launched_job() else distributed.DistContext()
        )
        with launch.failure_report(ctx):
            result = Trainer(cfg, overwrite=args.overwrite, ctx=ctx).fit(
                resume=args.resume, pretrain=args.pretrain, allow_changes=tuple(args.allow_change)
            )
        if not ctx.is_main:
            return 0
        rows = [
            ["model", cfg.model_name],
            ["parameters", f"{result.parameters:,}"],
            ["steps", result.steps],
            ["epochs", result.epochs],
            ["train videos/s", f"{result.train_videos_per_s:.1f}"],
            ["time", f"{result.seconds:.1f} s"],
            ["run directory", str(result.run_dir)],
        ]
        rows += [[f"valid {k}", v] for k, v in result.last_valid.items()]
        _print_table(rows, ["", ""])
        return 0


def _class_names(cfg: ZooConfig) -> dict[int, str] | None:
    """``predict.vocabulary`` (a class-names CSV), read once per command, or None."""
    from zoo.engine.predictions import load_class_names

    return load_class_names(cfg.predict.vocabulary) if cfg.predict.vocabulary else None


def write_eval_outputs(out_dir: Path, metrics: dict[str, float], metric: Any, cfg: ZooConfig) -> list[Path]:
    written = [_write_results(out_dir / "eval_results.json", metrics, cfg)]
    written += metric.write_reports(out_dir, _class_names(cfg))
    return written


def _write_results(path: Path, metrics: dict[str, float], cfg: ZooConfig) -> Path:
    """``{"model": ..., "metrics": ...}`` as JSON at ``path`` (its folder made first), written atomically."""
    from zoo.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"model": cfg.model_name, "metrics": metrics}, indent=1))
    return path


class EvalCommand:
    name = "eval"
    help = "evaluate weights with the config's metric (table, JSON and reports)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _add_inference_arguments(parser)
        parser.add_argument(
            "--output", metavar="DIR", default="eval", help="where results go (default ./eval)"
        )
        _add_segment_arguments(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from zoo.engine.loop import evaluate
        from zoo.engine.setup import build_reader, describe_split

        check_output_dir(args.output)
        cfg = _prepare(args)
        model = _load_for_inference(cfg, args)
        if args.segments:  # segment MAP on the rated data (the valid split: 3/frame/validate)
            return _eval_segments(args, cfg, model)
        print(f"evaluating {describe_split(cfg, 'test')}", file=sys.stderr)
        metrics, metric = evaluate(model, build_reader(cfg, "test"), cfg, refuse_duplicates=True)
        written = write_eval_outputs(Path(args.output), metrics, metric, cfg)
        _print_table(_metric_rows(metrics, metric), ["metric", "value"])
        print("wrote " + ", ".join(str(p) for p in written))
        return 0


def _eval_segments(args: argparse.Namespace, cfg: ZooConfig, model: Any) -> int:
    import zoo
    from zoo.engine.loop import dygraph_scorer
    from zoo.engine.segments import evaluate_segments
    from zoo.engine.setup import split_paths

    paths = split_paths(cfg, "valid") or split_paths(cfg, "test")
    if not paths:
        raise UsageError("--segments: no rated data: give --data DIR (with validate/) or -o data.valid=PATH")
    metrics = evaluate_segments(
        dygraph_scorer(model, cfg.dataset.features), cfg, list(paths), top_n=args.top_segments
    )
    results = _write_results(Path(args.output) / "segment_eval_results.json", metrics, cfg)
    metric = zoo.build_metric("yt8m-segment", spec=cfg.dataset)  # its headline and display order
    _print_table(_metric_rows(metrics, metric), ["metric", "value"])
    print(f"wrote {results}")
    return 0


def write_predictions(out_dir: Path, predictions: list[Any], cfg: ZooConfig) -> list[Path]:
    """Write ``predictions`` once per format of ``predict.formats`` (``predictions`` + the format's suffix)."""
    from zoo.plugins import get_plugins

    registry = get_plugins().registry("format")
    formats = [registry.get(name).cls for name in cfg.predict.formats]  # unknown name: PluginError
    class_names = _class_names(cfg)
    output_dir(out_dir)
    written = []
    with atomic_group():  # every format's file appears, or none does
        for fmt in formats:
            path = out_dir / f"predictions{fmt.suffix}"
            fmt(fmt.Config()).write(path, predictions, class_names)
            written.append(path)
    return written


def _exported_scorer(args: argparse.Namespace) -> tuple[ZooConfig, Any]:
    """``--model DIR``: the export's own config and its predictor (the same batches as the dygraph model)."""
    from zoo.engine.export import GpuOptions, load_exported

    gpu = GpuOptions(memory_pool_mb=args.gpu_memory_mb, tensorrt=args.tensorrt)
    exported = load_exported(args.model_dir, device=args.device or "cpu", precision=args.precision, gpu=gpu)
    args.config, args.model = None, None
    return _prepare_from_raw(args, exported.config, f"{args.model_dir} (exported config)"), exported.predict


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
            help="where predictions.csv and predictions.jsonl go (default ./predictions)",
        )
        _add_segment_arguments(parser, classes=True)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from zoo.engine.loop import dygraph_scorer, predict
        from zoo.engine.setup import build_reader

        check_output_dir(args.output)
        if args.segments:
            return _predict_segments(args)

        if args.top_k is not None:
            args.override.append(f"predict.top_k={args.top_k}")
        if args.vocabulary:
            args.override.append(f"predict.vocabulary={json.dumps(args.vocabulary)}")
        if args.model_dir:
            cfg, scorer = _exported_scorer(args)
        else:
            cfg = _prepare(args)
            scorer = dygraph_scorer(_load_for_inference(cfg, args), cfg.dataset.features)
        predictions = predict(
            scorer,
            build_reader(cfg, "infer"),
            cfg,
            top_k=cfg.predict.top_k,
            batch_size=cfg.predict.batch_size,
        )
        written = write_predictions(Path(args.output), predictions, cfg)
        for p in predictions[:3]:
            print(f"{p.id}: " + ", ".join(f"{c}:{s:.3f}" for c, s in zip(p.classes[:5], p.scores[:5])))
        print(f"{len(predictions)} videos; wrote " + ", ".join(str(p) for p in written))
        return 0


def _predict_segments(args: argparse.Namespace) -> int:
    """``zoo predict --segments``: the Kaggle 2019 submission (Class,Segments) in OUTPUT/segment_submission.csv."""
    from zoo.engine.loop import dygraph_scorer
    from zoo.engine.segments import predict_segments, rated_class_ids
    from zoo.engine.setup import split_paths

    if args.model_dir:  # an exported model: its predictor takes the same (segment) batches
        cfg, scorer = _exported_scorer(args)
    else:
        if args.filelist:
            args.override.append(f"data.infer={json.dumps(args.filelist)}")
        cfg = _prepare(args)
        scorer = dygraph_scorer(_load_for_inference(cfg, args), cfg.dataset.features)
    paths = list(split_paths(cfg, "infer") or [])
    classes, origin = rated_class_ids(cfg, args.segment_classes, paths)
    out = Path(args.output) / "segment_submission.csv"
    stats = predict_segments(scorer, cfg, paths, out, classes=classes, top_n=args.top_segments)
    print(
        f"{stats['videos']} videos, {stats['segments']} segments, {stats['classes']} classes ({origin}); "
        f"wrote {out} ({stats['entries']} entries)"
    )
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
        _add_data_argument(parser)
        parser.add_argument("--output", metavar="DIR", help="run directory (default runs/MODEL)")
        parser.add_argument(
            "--segments",
            action="store_true",
            help="the 2019 segment task on the sample data: video-level training, segment fine-tuning, "
            "segment MAP before and after, a submission (docs/segments.md)",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from zoo.engine.loop import dygraph_scorer, evaluate, predict
        from zoo.engine.setup import build_reader
        from zoo.engine.trainer import Trainer

        start = time.perf_counter()
        if args.segments:
            return _run_segments(args)
        cfg = _prepare(args)
        run_dir = Path(args.output or Path("runs") / cfg.model_name)
        cfg = cfg.with_overrides({"train": {"save_dir": str(run_dir)}}, "zoo run")
        result = Trainer(cfg, overwrite=True).fit()
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
            ["epochs / steps", f"{result.epochs} / {result.steps}"],
            ["train videos/s", f"{result.train_videos_per_s:.1f}"],
            ["eval videos/s", f"{eval_speed:.1f}"],
        ]
        rows += _metric_rows(metrics, metric, prefix="test ")
        rows += [["time", f"{time.perf_counter() - start:.1f} s"], ["outputs", str(run_dir)]]
        _print_table(rows, ["", ""])
        return 0


def _run_segments(args: argparse.Namespace) -> int:
    from zoo.engine.segments import run_segments

    if args.data:
        raise UsageError(
            "zoo run --segments runs on the built-in sample data; on your data follow docs/segments.md "
            "(zoo train, zoo train --pretrain ... -o data.segments=true, zoo eval/predict --segments)"
        )
    cfg = _prepare(args)
    run_dir = Path(args.output or Path("runs") / f"{cfg.model_name}-segments")
    _print_table(run_segments(cfg, run_dir), ["", ""])
    return 0


def result_model(result: Any, cfg: ZooConfig) -> Any:
    """The trained model, rebuilt from the weights the run saved (what users get from the run directory)."""
    from zoo.engine.setup import build_model
    from zoo.engine.weights import apply_weights, read_weights

    model = build_model(cfg)
    apply_weights(model, read_weights(str(result.run_dir)), strict=True)
    return model


COMMANDS = [RunCommand, TrainCommand, EvalCommand, PredictCommand]
