"""``--segments`` for ``zoo run``, ``zoo eval`` and ``zoo predict``: command extensions (hook
``zoo_register_extensions``), built on the engine's public module :mod:`zoo.engine.api` only.

Each adds its flags to the command's parser and, when ``--segments`` is given, runs the segment task instead
of the command's video-level body; without it, it returns None and the command runs as usual.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zoo.errors import UsageError

SEGMENT_METRIC = "yt8m-segment"


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


class EvalSegments:
    """``zoo eval --segments``: segment MAP (and MAP@N of the submission it would make) on the rated data."""

    name = "eval-segments"
    command = "eval"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _add_segment_arguments(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int | None:
        if not args.segments:
            return None
        import zoo
        from zoo.engine import api
        from zoo_yt8m_segments.task import evaluate_segments

        cfg = api.prepare_config(args)
        model = api.load_for_inference(cfg, args)
        paths = api.split_paths(cfg, "valid") or api.split_paths(cfg, "test")  # 3/frame/validate
        if not paths:
            raise UsageError(
                "--segments: no rated data: give --data DIR (with validate/) or -o data.valid=PATH"
            )
        metrics = evaluate_segments(
            api.dygraph_scorer(model, cfg.dataset.features), cfg, list(paths), top_n=args.top_segments
        )
        results = api.write_results(Path(args.output) / "segment_eval_results.json", metrics, cfg)
        metric = zoo.build_metric(SEGMENT_METRIC, spec=cfg.dataset)  # its headline and display order
        api.print_table(api.metric_rows(metrics, metric), ["metric", "value"])
        print(f"wrote {results}")
        return 0


class PredictSegments:
    """``zoo predict --segments``: the Kaggle 2019 submission (Class,Segments) in OUTPUT/segment_submission.csv."""

    name = "predict-segments"
    command = "predict"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _add_segment_arguments(parser, classes=True)

    @staticmethod
    def run(args: argparse.Namespace) -> int | None:
        if not args.segments:
            return None
        from zoo.engine import api
        from zoo_yt8m_segments.task import predict_segments, rated_class_ids

        if args.model_dir:  # an exported model: its predictor takes the same (segment) batches
            cfg, scorer = api.exported_scorer(args)
        else:
            if args.filelist:
                args.override.append(f"data.infer={json.dumps(args.filelist)}")
            cfg = api.prepare_config(args)
            scorer = api.dygraph_scorer(api.load_for_inference(cfg, args), cfg.dataset.features)
        paths = list(api.split_paths(cfg, "infer") or [])
        classes, origin = rated_class_ids(cfg, args.segment_classes, paths)
        out = Path(args.output) / "segment_submission.csv"
        stats = predict_segments(scorer, cfg, paths, out, classes=classes, top_n=args.top_segments)
        print(
            f"{stats['videos']} videos, {stats['segments']} segments, {stats['classes']} classes ({origin}); "
            f"wrote {out} ({stats['entries']} entries)"
        )
        return 0


class RunSegments:
    """``zoo run MODEL --segments``: the segment task on the built-in sample data."""

    name = "run-segments"
    command = "run"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--segments",
            action="store_true",
            help="the 2019 segment task on the sample data: video-level training, segment fine-tuning, "
            "segment MAP before and after, a submission (docs/segments.md)",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int | None:
        if not args.segments:
            return None
        from zoo.engine import api
        from zoo_yt8m_segments.task import run_segments

        if args.data:
            raise UsageError(
                "zoo run --segments runs on the built-in sample data; on your data follow docs/segments.md "
                "(zoo train, zoo train --pretrain ... -o data.segments=true, zoo eval/predict --segments)"
            )
        cfg = api.prepare_config(args)
        run_dir = Path(args.output or Path("runs") / f"{cfg.model_name}-segments")
        api.print_table(run_segments(cfg, run_dir), ["", ""])
        return 0


EXTENSIONS = [EvalSegments, PredictSegments, RunSegments]
