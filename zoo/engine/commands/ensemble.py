"""``zoo ensemble``: combine runs or prediction files into one set of predictions (zoo.engine.infer.ensemble)."""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from zoo.engine.commands.common import add_config_arguments
from zoo.errors import UsageError


def _weights_list(text: str) -> list[float]:
    try:
        return [float(w) for w in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


class EnsembleCommand:
    name = "ensemble"
    help = "combine runs or prediction files: weighted arithmetic or geometric mean, fitted or given weights"
    description = (
        "Combine MEMBERs (run directories of `zoo train`, their checkpoints or `zoo export` directories,\n"
        "predicted over the data, or prediction files such as predictions.csv / predictions.jsonl) into\n"
        "one set of predictions. With labelled data every member and the ensemble are scored in one\n"
        "table. docs/ensembles.md explains the rules."
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "members",
            nargs="+",
            metavar="MEMBER",
            help="run directories, checkpoints (RUN/checkpoints/step-N), exports or prediction files",
        )
        add_config_arguments(parser)
        parser.add_argument(
            "--model", help="use this model's bundled config (default: the first run's saved config)"
        )
        parser.add_argument(
            "--data",
            metavar="DIR",
            help="a folder with train/, valid/ and test/ data (as `zoo train --data`)",
        )
        parser.add_argument(
            "--split",
            choices=["valid", "test", "infer"],
            default="test",
            help="the split runs predict and whose labels score the result (default test)",
        )
        parser.add_argument(
            "--mean",
            choices=["arithmetic", "geometric"],
            default="arithmetic",
            help="how member probabilities are combined: weighted arithmetic mean (default) or weighted "
            "geometric mean of the probabilities (docs/ensembles.md)",
        )
        how = parser.add_mutually_exclusive_group()
        how.add_argument(
            "--weights", type=_weights_list, metavar="W,W,...", help="one weight per member (default: equal)"
        )
        how.add_argument("--weights-of", metavar="JSON", help="the weights.json of an earlier --fit")
        how.add_argument(
            "--fit",
            action="store_true",
            help="fit the weights on the valid split to maximize the metric's headline (GAP); run members "
            "predict the valid split for it, prediction files must be valid-split predictions",
        )
        parser.add_argument(
            "--missing",
            choices=["floor", "zero"],
            default="floor",
            help="a class outside a member's top-k counts as just below its lowest listed probability "
            "(floor, default) or as 0",
        )
        parser.add_argument(
            "--member-top-k", type=int, default=50, metavar="K", help="classes kept per video of run members"
        )
        parser.add_argument("--top-k", type=int, help="classes per video written (predict.top_k)")
        parser.add_argument("--output", metavar="DIR", default="ensemble", help="output folder (./ensemble)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from zoo.atomic import check_output_dir
        from zoo.engine.infer import ensemble as ens
        from zoo.engine.runtime import prepare_environment

        # the engine starts: before any plugin imports paddle. glibc keeps freed memory (runtime.keep_freed_memory)
        # only when a member is a run, checkpoint or export to predict with: prediction files are a few large
        # arrays read and freed once, whose memory kept in the heap only raised the peak (2.2 GB against 1.6 GB
        # at 5 members x 1.1M videos, benchmarks/bench_ensemble.py)
        prepare_environment(tune_malloc=any(Path(member).is_dir() for member in args.members))
        check_output_dir(args.output)
        if args.member_top_k < 1 or (args.top_k is not None and args.top_k < 1):
            raise UsageError("--member-top-k and --top-k must be at least 1")
        if len(args.members) < 2:
            print("note: an ensemble of one member only re-ranks and re-writes it", file=sys.stderr)
        cfg = _config(args)
        log = lambda message: print(message, file=sys.stderr)  # noqa: E731
        new_metric = _metric_factory(cfg)
        out = Path(args.output)
        weights: list[float] | None = args.weights
        if args.weights_of:
            weights = ens.load_weights(args.weights_of, len(args.members))
        fitted: dict[str, Any] = {}
        if args.fit:
            if new_metric is None:
                raise UsageError("--fit needs labelled validation data: give --config, --model or --data")
            tables = _members(args, cfg, "valid")
            labels = ens.split_labels(cfg, "valid", tables[0].ids)
            if labels is None:
                raise UsageError("--fit: the valid split has no labels; fit on labelled validation data")
            w, score = ens.fit_weights(
                tables, labels, new_metric, mean=args.mean, missing=args.missing, log=log
            )
            weights = w.tolist()
            fitted = {"fitted_on": "valid", "fitted_score": score}
            if any(ens.is_run_dir(m) for m in args.members) and args.split != "valid":
                tables = _members(args, cfg, args.split)
        else:
            tables = _members(args, cfg, args.split)
        weights = weights if weights is not None else [1.0] * len(tables)
        norm = ens.check_weights(weights, len(tables), "--weights")
        top_k = args.top_k or (cfg.predict.top_k if cfg is not None else 20)
        result = ens.combine(tables, norm, mean=args.mean, missing=args.missing, top_k=top_k)
        split = "valid" if args.fit and not any(ens.is_run_dir(m) for m in args.members) else args.split
        from zoo.atomic import atomic_group

        labels = ens.split_labels(cfg, split, result.ids) if new_metric is not None else None
        sources, count = [t.source for t in tables], len(tables)
        scores: dict[str, dict[str, float]] = {}
        if labels is not None:
            for table in tables:
                scores[table.source] = ens.score_table(table, labels, new_metric)
            scores["ensemble"] = ens.score_table(result, labels, new_metric)
        del tables  # the members are done with: their memory is free for writing the predictions
        with atomic_group():  # the predictions, weights.json and the scores appear together, or none
            written = _write(out, result, cfg)
            info = {"mean": args.mean, "missing": args.missing, **fitted}
            ens.save_weights(out / "weights.json", sources, norm, **info)
            written.append(out / "weights.json")
            if scores:
                from zoo.atomic import atomic_write_text

                atomic_write_text(
                    out / "ensemble_scores.json", json.dumps({"split": split, "scores": scores}, indent=1)
                )
                written.append(out / "ensemble_scores.json")
        rows: list[list[Any]] = []
        if scores:
            display = _display_keys(new_metric(), scores["ensemble"])
            for (name, values), w in zip(scores.items(), [*norm, None]):
                rows.append([name, "" if w is None else f"{w:.3f}", *[values.get(k, "") for k in display]])
            from zoo.engine.commands.common import print_table

            print(f"{args.mean} mean over the {split} split ({len(result)} videos)")
            print_table(rows, ["member", "weight", *display])
        else:
            print(f"{args.mean} mean of {count} members, weights {[round(float(w), 4) for w in norm]}")
            print(f"no labels for the {split} split: nothing scored")
        print(f"{len(result)} videos; wrote " + ", ".join(str(p) for p in written))
        return 0


def _config(args: argparse.Namespace) -> Any:
    """--config / --model, else the first run member's saved config; None for prediction files alone."""
    from zoo.config import bundled_config, load_config
    from zoo.engine.build import with_data_dir
    from zoo.engine.infer import ensemble as ens
    from zoo.engine.runtime import init_paddle

    runs = [m for m in args.members if ens.is_run_dir(m)]
    if args.config or args.model:
        path = args.config or bundled_config(args.model)
        cfg = load_config(path, args.override, model=args.model)
    elif runs:
        saved = ens.run_config(runs[0])
        cfg = load_config(None, args.override, raw=saved.raw, source=saved.source)
    else:
        if args.data:
            raise UsageError("--data needs a config for its reader and dataset: give --config or --model")
        return None
    if args.data:
        cfg = with_data_dir(cfg, args.data)
    if runs:
        init_paddle(args.device or "cpu")
    return cfg


def _metric_factory(cfg: Any) -> Any:
    if cfg is None or not cfg.eval.metric:
        return None
    from zoo.engine.build import build_metric

    return lambda: build_metric(cfg)


def _members(args: argparse.Namespace, cfg: Any, split: str) -> list[Any]:
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.infer import ensemble as ens

    def open_export(path: str) -> Any:  # an export member runs on its own predictor, as `zoo predict --model`
        return load_exported(path, device=args.device or "cpu").predict

    return [ens.load_member(m, cfg, split, args.member_top_k, open_export=open_export) for m in args.members]


def _display_keys(metric: Any, values: dict[str, float]) -> list[str]:
    keys = [k for k in getattr(metric, "display", ()) if k in values and k != "loss"]
    return keys or [k for k in values if k not in ("loss", "num_videos")]


def _write(out: Path, result: Any, cfg: Any) -> list[Path]:
    """The combined predictions in the config's formats (every registered format without a config):
    column-wise where the format can (``ColumnarPredictionFormat``), else as a list of predictions."""
    from zoo.atomic import output_dir
    from zoo.contracts import ColumnarPredictionFormat
    from zoo.engine.infer.predictions import load_class_names
    from zoo.plugins import get_plugins

    registry = get_plugins().registry("format")
    names = cfg.predict.formats if cfg is not None else registry.names()
    class_names = (
        load_class_names(cfg.predict.vocabulary) if cfg is not None and cfg.predict.vocabulary else None
    )
    predictions = None
    output_dir(out)
    written, columnar = [], []
    for name in names:
        fmt = registry.get(name).cls
        path = out / f"predictions{fmt.suffix}"
        writer = fmt(fmt.Config())
        if isinstance(writer, ColumnarPredictionFormat):
            columnar.append((writer, path))
        else:
            predictions = result.predictions() if predictions is None else predictions
            writer.write(path, predictions, class_names)
        written.append(path)
    # the C formatters release the GIL: the formats are written side by side
    with ThreadPoolExecutor(max(1, min(2, len(columnar)))) as pool:
        list(pool.map(lambda wp: wp[0].write_columns(wp[1], result.columns(), class_names), columnar))
    return written
