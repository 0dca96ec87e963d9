"""``zoo score``: score a Kaggle-format prediction file against labelled records.

The prediction rows are the only scores: a class a row does not list is "not predicted" (it never enters
the top-k list and never counts as a hit). A labelled video without a row counts as an empty prediction
(it still adds its labels to the GAP and mAP denominators and scores 0 for Hit@1 and PERR) and is reported;
a row whose video is not in the labelled data, a duplicate row, or a malformed row is an error (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.config import DatasetSpec
from zoo.errors import DataError, UsageError
from zoo_yt8m_metrics.kaggle import read_kaggle_columns
from zoo_yt8m_metrics.video import Yt8mMetric, Yt8mMetricConfig

BATCH = 512
SHOW_IDS = 5


class PredictionTable:
    """A Kaggle CSV held as arrays (read column-wise, at C speed where it is built): each row's pairs in file
    order, float64 scores as the file spells them; 1.1M rows x 20 pairs take ~350 MB."""

    def __init__(self, path: str, num_classes: int) -> None:
        self.path = path
        columns = read_kaggle_columns(path, rank=False, dtype=np.float64, num_classes=num_classes)
        columns.check_unique(path)
        columns.check_classes(path, num_classes)
        # (a row's classes are distinct and in range: the reader and check_classes made sure)
        self.rows: dict[str, int] = {vid.decode("utf-8"): i for i, vid in enumerate(columns.ids.tolist())}
        self.lines = columns.lines
        self._classes = np.maximum(columns.classes, 0).astype(np.int64)
        self._scores = np.where(columns.classes >= 0, columns.scores, -np.inf)
        self.used = np.zeros(len(self.lines), dtype=bool)

    def row_of(self, vid: str) -> int:
        """The row index of ``vid`` (marked as used), or -1 if the file has no row for it."""
        row = self.rows.get(vid)
        if row is None:
            return -1
        self.used[row] = True
        return row

    def ranked(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The rows as ``classes, scores`` arrays ``[len(rows), L]``, padded with score -inf (row -1: empty)."""
        rows_arr = np.asarray(rows, dtype=np.int64)
        present = (rows_arr >= 0)[:, None]
        if not len(self.lines):
            return np.zeros((len(rows), 1), np.int64), np.full((len(rows), 1), -np.inf)
        take = np.maximum(rows_arr, 0)
        return np.where(present, self._classes[take], 0), np.where(present, self._scores[take], -np.inf)

    def unused(self) -> list[tuple[str, int]]:
        """(id, line) of the rows no labelled video asked for, in file order."""
        index = {row: vid for vid, row in self.rows.items()}
        return [(index[row], int(self.lines[row])) for row in np.flatnonzero(~self.used)]


@dataclass
class ScoreReport:
    metrics: dict[str, float]
    missing: list[str] = field(default_factory=list)  # labelled videos the file has no row for
    metric: Yt8mMetric | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.metrics,
            "videos_without_prediction": len(self.missing),
            "videos_without_prediction_examples": self.missing[:SHOW_IDS],
        }


def _label_indices(vid: str, labels: Any, num_classes: int) -> np.ndarray:
    """Class indices from a reader's ``labels`` (a list of indices, or a multi-hot float/bool vector)."""
    arr = np.asarray(labels)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind in "fb":
        if arr.shape != (num_classes,):
            raise DataError(
                f"video {vid!r}: key labels: a multi-hot vector of shape {arr.shape}, expected "
                f"({num_classes},); or pass class indices (integers)"
            )
        return np.flatnonzero(arr)
    if arr.dtype.kind not in "iu":
        raise DataError(
            f"video {vid!r}: key labels: expected class indices or a multi-hot vector, got {arr!r}"
        )
    arr = arr.astype(np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise DataError(
            f"video {vid!r}: key labels: class {int(arr.max())} is outside 0 .. {num_classes - 1}; "
            f"pass the right --num-classes"
        )
    return arr


def score_predictions(
    predictions: str, videos: Iterable[tuple[str, Any]], *, num_classes: int, top_k: int = 20
) -> ScoreReport:
    """Score the Kaggle CSV ``predictions`` against ``videos``: (id, labels) pairs, labels as class indices.

    Raises :class:`DataError` for malformed rows, duplicate rows, rows for videos that are not in
    ``videos``, and videos that occur twice in ``videos``.
    """
    table = PredictionTable(predictions, num_classes)
    metric = Yt8mMetric(Yt8mMetricConfig(top_k=top_k), DatasetSpec(num_classes=num_classes, features={}))
    labels = np.zeros((BATCH, num_classes), dtype=bool)
    rows: list[int] = []
    seen: set[str] = set()
    missing: list[str] = []
    for vid, video_labels in videos:
        vid = vid.decode("utf-8") if isinstance(vid, bytes) else str(vid)
        if vid in seen:
            raise DataError(f"video {vid!r} occurs twice in the labelled data; is a file listed twice?")
        seen.add(vid)
        labels[len(rows), _label_indices(vid, video_labels, num_classes)] = True
        rows.append(table.row_of(vid))
        if rows[-1] < 0:
            missing.append(vid)
        if len(rows) == BATCH:
            metric.update_ranked(*table.ranked(rows), labels)
            labels.fill(False)
            rows = []
    if rows:
        metric.update_ranked(*table.ranked(rows), labels[: len(rows)])
    unused = table.unused()
    if unused:
        shown = ", ".join(f"{vid!r} (line {line})" for vid, line in unused[:SHOW_IDS])
        raise DataError(
            f"{predictions}: {len(unused)} of {len(table.rows)} rows are for videos that are not in "
            f"the labelled data ({len(seen)} videos), e.g. {shown}; score against the split the "
            f"predictions were made for"
        )
    if not seen:
        raise DataError("the labelled data holds no videos; check --data")
    return ScoreReport(metric.compute(), missing, metric)


def reader_videos(reader: Any) -> Iterator[tuple[str, Any]]:
    """(id, labels) of every video; a video id in two files is an error naming both."""
    from zoo.data.duplicates import records_with_source

    first_file: dict[str, str] = {}
    for source, video in records_with_source(reader):
        vid = str(video.get("id"))
        if vid in first_file:
            raise DataError(
                f"video {vid!r} occurs twice in the labelled data: in {first_file[vid]} and in {source}; "
                f"remove the duplicate file (is a file listed twice?)"
            )
        first_file[vid] = source
        if "labels" not in video:
            raise DataError(
                f"video {video.get('id')!r}: the reader gave no 'labels'; score needs labelled data "
                f"(the test partition has none)"
            )
        yield video["id"], video["labels"]


class ScoreCommand:
    name = "score"
    help = "score a Kaggle-format prediction file against labelled records (GAP, Hit@1, PERR, mAP)"
    description = (
        "Score a Kaggle-format prediction file (header VideoId,LabelConfidencePairs) against labelled records\n"
        "with the YouTube-8M definitions (docs/metrics.md). A labelled video without a row counts as an empty\n"
        "prediction; a row for an unknown video, a duplicate or malformed row is an error (exit 1)."
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--predictions", metavar="CSV", help="the Kaggle-format prediction file")
        parser.add_argument(
            "--segments",
            metavar="SUBMISSION",
            help="score a 2019 segment submission (Class,Segments) against segment-rated --data "
            "(3/frame/validate) instead: segment MAP (docs/segments.md)",
        )
        parser.add_argument(
            "--top-segments",
            type=int,
            default=100_000,
            metavar="N",
            help="with --segments: entries allowed per class (default 100000)",
        )
        parser.add_argument(
            "--segment-classes",
            metavar="CSV",
            help="with --segments: the rated classes (segment_label_ids.csv; default: the one beside --data); "
            "rows for other classes are warned about",
        )
        parser.add_argument(
            "--data",
            required=True,
            nargs="+",
            metavar="PATH",
            help="labelled records: files, directories, globs or .list files",
        )
        parser.add_argument(
            "--reader",
            default="yt8m-frame",
            help="reader plugin for --data (default yt8m-frame; yt8m-video for video-level files)",
        )
        parser.add_argument(
            "--num-classes",
            type=int,
            metavar="N",
            help="number of classes (default: the yt8m dataset preset's, 3862)",
        )
        parser.add_argument(
            "--top-k",
            type=int,
            default=20,
            metavar="K",
            help="predictions per video that count for GAP and mAP (default %(default)s)",
        )
        parser.add_argument("--json", action="store_true", help="print the results as JSON")
        parser.add_argument(
            "--per-class", metavar="CSV", help="write per-class AP (with --segments: segment AP) to this CSV"
        )
        parser.add_argument(
            "--vocabulary", metavar="CSV", help="YouTube-8M vocabulary.csv: adds class names to --per-class"
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        import zoo

        if args.num_classes is None:
            args.num_classes = zoo.dataset_preset("yt8m").spec.num_classes
        from zoo.config import MAX_DATASET_SIZE

        if not 1 <= args.num_classes <= MAX_DATASET_SIZE:
            raise UsageError(f"--num-classes must be in 1 .. {MAX_DATASET_SIZE:,}, got {args.num_classes}")
        if bool(args.segments) == bool(args.predictions):
            raise UsageError("give --predictions CSV (video level) or --segments SUBMISSION (2019 segments)")
        if args.segments:
            return _score_segments(args)
        if args.top_k < 1:
            raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
        if args.vocabulary and not args.per_class:
            raise UsageError("--vocabulary names the classes of --per-class; give --per-class CSV too")
        vocabulary = None
        if args.vocabulary:
            from zoo.engine.api import load_class_names

            vocabulary = load_class_names(args.vocabulary)
        # features={}: only ids and labels are needed, so the reader skips decoding the frames.
        spec = DatasetSpec(num_classes=args.num_classes, features={})
        reader = zoo.build_reader(args.reader, paths=list(args.data), spec=spec)
        report = score_predictions(
            args.predictions, reader_videos(reader), num_classes=args.num_classes, top_k=args.top_k
        )
        if args.per_class and report.metric is not None:
            report.metric.write_per_class_csv(args.per_class, vocabulary)
        _print_report(report, args)
        return 0


def _score_segments(args: argparse.Namespace) -> int:
    import zoo
    from zoo_yt8m_metrics.segment import score_segment_submission

    if args.top_segments < 1:
        raise UsageError(f"--top-segments must be at least 1, got {args.top_segments}")
    if args.vocabulary and not args.per_class:
        raise UsageError("--vocabulary names the classes of --per-class; give --per-class CSV too")
    spec = DatasetSpec(num_classes=args.num_classes, features={})  # ratings only: no frames decoded
    reader = zoo.build_reader("yt8m-segment", paths=list(args.data), spec=spec)
    listed: list[int] = []
    metrics, metric = score_segment_submission(
        args.segments, reader, num_classes=args.num_classes, top_n=args.top_segments, listed=listed
    )
    # Kaggle's rated classes: --segment-classes, else segment_label_ids.csv beside the data (up to two folders up)
    reader_cls: Any = zoo.plugin_class("reader", "yt8m-segment")
    label_ids = args.segment_classes
    for path in [] if label_ids else args.data:
        base = Path(path)
        folders = (
            [base.parent, base.parent.parent] if base.is_file() else [base, base.parent, base.parent.parent]
        )
        found = [
            f / reader_cls.rated_classes_file
            for f in folders
            if (f / reader_cls.rated_classes_file).is_file()
        ]
        if found:
            label_ids = str(found[0])
            break
    if label_ids:
        rated = set(reader_cls.read_rated_classes(label_ids, args.num_classes).tolist())
        outside = [c for c in listed if c not in rated]
        if outside:
            shown = ", ".join(str(c) for c in outside[:10])
            print(
                f"warning: {args.segments}: {len(outside)} row(s) for classes outside {label_ids}: {shown}"
                f"{' ...' if len(outside) > 10 else ''}; Kaggle's 2019 competition refused such submissions",
                file=sys.stderr,
            )
    if args.per_class:
        from zoo.engine.api import load_class_names

        vocabulary = load_class_names(args.vocabulary) if args.vocabulary else None
        metric.write_per_class_csv(args.per_class, vocabulary, listed=listed)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(
            f"segment MAP {metrics['segment_map']:.6f} over the {metrics['segment_classes']} classes with rated "
            f"positives (Kaggle 2019)\n"
            f"segment MAP {metrics['segment_map_listed']:.6f} over the {metrics['segment_classes_listed']} rated "
            f"classes the file lists (google's segment_eval_inference.py)\n"
            f"rated pairs scored {metrics['rated_pairs_scored']} of {metrics['rated_pairs']}"
        )
        if args.per_class:
            print(f"per-class segment AP written to {args.per_class}")
    return 0


def _print_report(report: ScoreReport, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        m = report.metrics
        print(
            f"videos {m['num_videos']}  GAP@{args.top_k} {m['gap']:.6f}  Hit@1 {m['hit_at_1']:.6f}  "
            f"PERR {m['perr']:.6f}  mAP {m['map']:.6f}"
        )
        if args.per_class:
            print(f"per-class AP written to {args.per_class}")
    if report.missing:
        shown = ", ".join(repr(v) for v in report.missing[:SHOW_IDS])
        print(
            f"note: {len(report.missing)} labelled videos have no row in {args.predictions} and count as empty "
            f"predictions (e.g. {shown})",
            file=sys.stderr,
        )
