"""The 2019 segment task: score every 5-frame segment, evaluate, submit, and the sample workflow.

Inference reads each video once (one decoded record), cuts it into its 5-frame segments (starts 0, 5, 10, ...;
a trailing part shorter than 5 frames is not a segment) and scores them in batches of ``eval.batch_size``
segments. Only the per-class top lists (``TopSegments``: classes x N entries) and, when evaluating, the rated
(segment, class) pairs are kept: never videos x segments x classes.

The engine is used through its public module (:mod:`zoo.engine.api`); the other plugins' parts are found
through the registry, as a third party would: the segment reader (``yt8m-segment`` of the data plugin: its
sample data and the rated-classes file) and the segment metric (``yt8m-segment`` of the metrics plugin: it
scores the submission and writes it). See :class:`SegmentDataReader` and :class:`SegmentSubmissionWriter`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from zoo.config import ZooConfig
from zoo.contracts import SampleDataReader
from zoo.errors import DataError, PluginError, UsageError
from zoo.progress import Progress
from zoo_yt8m_segments.topsegments import TopSegments, segment_keys, slot_bits, split_keys

SEGMENT_FRAMES = 5
SEGMENT_READER = "yt8m-segment"
SEGMENT_METRIC = "yt8m-segment"


@runtime_checkable
class SegmentDataReader(SampleDataReader, Protocol):
    """The segment-rated reader: whole videos with their ratings, its sample data (``train`` and ``valid``
    rated, ``test`` unrated, ``rated_classes`` a rated-classes file) and the rated-classes file format."""

    rated_classes_file: ClassVar[str]

    @staticmethod
    def read_rated_classes(path: Any, num_classes: int | None = None) -> np.ndarray: ...


@runtime_checkable
class SegmentSubmissionWriter(Protocol):
    """The segment metric's class, which also writes the submission format it scores."""

    @staticmethod
    def write_submission(path: Any, rows: Any) -> dict[str, int]: ...


def segment_reader_class() -> Any:
    import zoo

    cls = zoo.plugin_class("reader", SEGMENT_READER)
    if not isinstance(cls, SegmentDataReader):
        raise PluginError(
            f"reader {SEGMENT_READER!r} ({cls.__module__}.{cls.__qualname__}) lacks what the segment task "
            f"needs: sample_data, rated_classes_file and read_rated_classes (zoo_yt8m_segments.task)"
        )
    return cls


def submission_writer() -> Any:
    import zoo

    cls = zoo.plugin_class("metric", SEGMENT_METRIC)
    if not isinstance(cls, SegmentSubmissionWriter):
        raise PluginError(
            f"metric {SEGMENT_METRIC!r} ({cls.__module__}.{cls.__qualname__}) cannot write a segment "
            f"submission: it needs a static write_submission(path, rows) (zoo_yt8m_segments.task)"
        )
    return cls


def segment_reader(cfg: ZooConfig, paths: list[str]) -> Any:
    """The segment-rated reader over ``paths`` reading whole videos (segment mode off: we cut segments here)."""
    import zoo

    options = {k: v for k, v in cfg.reader.items() if k in ("verify_crc", "skip_corrupt")}
    return zoo.build_reader(SEGMENT_READER, spec=cfg.dataset, paths=list(paths), **options)


def segment_starts(num_frames: int) -> np.ndarray:
    return np.arange(0, int(num_frames) - SEGMENT_FRAMES + 1, SEGMENT_FRAMES, dtype=np.int64)


def scored_segments(
    scorer: Callable[[dict[str, Any]], np.ndarray],
    reader: Any,
    cfg: ZooConfig,
    *,
    batch_size: int,
    on_video: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(video indices, starts, probabilities [S, C])`` per batch of segments, in reading order.

    ``on_video(record)`` sees each video (its ground truth) before any of its segments is yielded.
    """
    from zoo.data.pipeline import collate
    from zoo.engine.api import dequantize_on_device

    quantized = dequantize_on_device(cfg)
    features = list(cfg.dataset.features)
    pending: list[dict[str, Any]] = []
    where: list[tuple[int, int]] = []
    bar = Progress("segments", unit="video", enabled=progress)
    video = 0

    def flush() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = collate(pending, cfg.dataset, reader.dequantize_into, quantized=quantized)
        probs = scorer(batch)
        index = np.asarray(where, np.int64).reshape(-1, 2)
        pending.clear()
        where.clear()
        return index[:, 0], index[:, 1], probs

    for source in reader.sources():
        for record in reader.read_part(source, 0, 1):
            if on_video is not None:
                on_video(record)
            for start in segment_starts(record["num_frames"]):
                segment = {"id": record["id"], "labels": (), "num_frames": SEGMENT_FRAMES}
                for name in features:
                    segment[name] = record[name][start : start + SEGMENT_FRAMES]
                pending.append(segment)
                where.append((video, int(start)))
                if len(pending) >= batch_size:
                    yield flush()
            video += 1
            bar.update(1)
    if pending:
        yield flush()
    bar.close()
    reader.print_skipped()


def rated_class_ids(cfg: ZooConfig, explicit: str | None, paths: list[str] | None) -> tuple[np.ndarray, str]:
    """The classes a submission lists: ``explicit`` file, else the segment reader's rated-classes file
    (segment_label_ids.csv) beside the data (up to two folders up), else every class."""
    reader_cls = segment_reader_class()
    if explicit:
        return reader_cls.read_rated_classes(explicit, cfg.dataset.num_classes), explicit
    for path in paths or []:
        base = Path(path)
        folders = (
            [base.parent, base.parent.parent, base.parent.parent.parent]
            if base.is_file()
            else [
                base,
                base.parent,
                base.parent.parent,
            ]
        )
        for folder in folders:
            candidate = folder / reader_cls.rated_classes_file
            if candidate.is_file():
                return reader_cls.read_rated_classes(candidate, cfg.dataset.num_classes), str(candidate)
    return np.arange(cfg.dataset.num_classes), f"all classes (no {reader_cls.rated_classes_file} found)"


def evaluate_segments(
    scorer: Callable[[dict[str, Any]], np.ndarray],
    cfg: ZooConfig,
    paths: list[str],
    *,
    top_n: int = 100_000,
    classes: np.ndarray | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment mAP over every segment of the rated videos of ``paths``, and MAP@top_n: the score of the
    submission the top-``top_n`` lists of ``classes`` (default: :func:`rated_class_ids`) would make."""
    import zoo

    reader = segment_reader(cfg, paths)
    metric = zoo.build_metric(SEGMENT_METRIC, spec=cfg.dataset)
    capped = zoo.build_metric(SEGMENT_METRIC, spec=cfg.dataset)
    rated: set[int] = set()
    ids: list[str] = []

    def on_video(record: dict[str, Any]) -> None:
        metric.add_ground_truth(record)
        capped.add_ground_truth(record)
        rated.update(int(c) for c in record["segment_labels"])
        ids.append(record["id"])

    bits = slot_bits(cfg.dataset.max_frames)
    if classes is None:
        classes = rated_class_ids(cfg, None, paths)[0]
    top = TopSegments(classes, top_n)
    segments = 0
    start = time.perf_counter()
    for videos, starts, probs in scored_segments(
        scorer, reader, cfg, batch_size=cfg.eval.batch_size, on_video=on_video, progress=progress
    ):
        metric.update_segments([ids[v] for v in videos], starts, probs)
        top.add(probs, segment_keys(videos, starts, bits))
        segments += len(videos)
    seconds = time.perf_counter() - start
    if not segments:
        raise DataError(f"no 5-frame segment in {paths}; segment evaluation needs the segment-rated data")
    for cls, keys, scores in top.ranked():
        if cls in rated:
            videos, starts = split_keys(keys, bits)
            capped.update_class(cls, [ids[v] for v in videos.tolist()], starts, scores)
    results = metric.compute()
    results[f"segment_map@{_short(top_n)}"] = capped.compute()["segment_map"]
    results["videos"] = len(ids)
    results["segments"] = segments
    results["segments_per_s"] = segments / max(seconds, 1e-9)
    return results


def predict_segments(
    scorer: Callable[[dict[str, Any]], np.ndarray],
    cfg: ZooConfig,
    paths: list[str],
    output: str | Path,
    *,
    classes: np.ndarray,
    top_n: int = 100_000,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every segment of ``paths`` and write the Kaggle 2019 submission ``output``."""
    writer = submission_writer()
    reader = segment_reader(cfg, paths)
    bits = slot_bits(cfg.dataset.max_frames)
    capacity = 1 << (32 - bits)
    ids: list[str] = []

    def on_video(record: dict[str, Any]) -> None:
        if len(ids) >= capacity:
            raise DataError(f"more than {capacity:,} videos in one submission; split the data")
        ids.append(record["id"])

    top = TopSegments(classes, top_n)
    segments = 0
    start = time.perf_counter()
    for videos, starts, probs in scored_segments(
        scorer, reader, cfg, batch_size=cfg.eval.batch_size, on_video=on_video, progress=progress
    ):
        top.add(probs, segment_keys(videos, starts, bits))
        segments += len(videos)
    seconds = time.perf_counter() - start

    def rows() -> Iterator[tuple[int, list[str], np.ndarray]]:
        for cls, keys, _ in top.ranked():
            videos, starts = split_keys(keys, bits)
            yield cls, [ids[v] for v in videos.tolist()], starts

    written = writer.write_submission(output, rows())
    return {
        "videos": len(ids),
        "segments": segments,
        "segments_per_s": segments / max(seconds, 1e-9),
        "peak_entries": top.peak_entries,
        **written,
    }


def _short(n: int) -> str:
    return f"{n // 1000}K" if n % 1000 == 0 and n >= 1000 else str(n)


# ---------------------------------------------------------------------------------------------------------
# zoo run MODEL --segments


def run_segments(
    cfg: ZooConfig, run_dir: Path, *, finetune_epochs: int = 3, progress: bool = True
) -> list[list[Any]]:
    """Video-level training, segment eval, segment fine-tuning, segment eval, submission (the sample data).

    The rated validate shards are split: the first half fine-tunes, the second half evaluates (fine-tuning and
    evaluating on the same ratings would flatter the fine-tuned model). Returns the summary rows.
    """
    from zoo.engine.api import SAMPLE_VERSION, Trainer, dygraph_scorer, result_model
    from zoo.paths import cache_dir

    begin = time.perf_counter()
    reader_cls = segment_reader_class()
    seg = reader_cls.sample_data(cache_dir(SAMPLE_VERSION))
    if seg["num_classes"] != cfg.dataset.num_classes:
        raise UsageError(
            f"the segment sample has {seg['num_classes']} classes, the video-level data "
            f"{cfg.dataset.num_classes}: zoo run --segments runs on the built-in sample data only"
        )
    classes = reader_cls.read_rated_classes(seg["rated_classes"], cfg.dataset.num_classes)
    tune_paths, eval_paths = seg["train"], seg["valid"]

    video_cfg = cfg.with_overrides({"train": {"save_dir": str(run_dir / "video")}}, "zoo run --segments")
    video = Trainer(video_cfg, overwrite=True, progress=progress).fit()
    model = result_model(video, video_cfg)
    before = evaluate_segments(
        dygraph_scorer(model, cfg.dataset.features), cfg, eval_paths, classes=classes, progress=progress
    )

    tune_cfg = cfg.with_overrides(
        {
            "data": {"reader": SEGMENT_READER, "segments": True, "train": tune_paths, "valid": None},
            "train": {
                "save_dir": str(run_dir / "segments"),
                "epoch": finetune_epochs,
                "valid_interval": 0,
                "learning_rate": cfg.train.learning_rate / 2,
            },
        },
        "zoo run --segments (fine-tuning)",
    )
    tuned = Trainer(tune_cfg, overwrite=True, progress=progress).fit(pretrain=str(run_dir / "video"))
    model = result_model(tuned, tune_cfg)
    scorer = dygraph_scorer(model, cfg.dataset.features)
    after = evaluate_segments(scorer, cfg, eval_paths, classes=classes, progress=progress)
    submission = run_dir / "segment_submission.csv"
    written = predict_segments(scorer, cfg, seg["test"], submission, classes=classes, progress=progress)
    at = "segment_map@100K"
    return [
        ["model", cfg.model_name],
        ["segment data", seg.get("root", str(Path(eval_paths[0]).parent))],
        ["video-level training (steps)", video.steps],
        ["segment fine-tuning (steps, examples)", f"{tuned.steps}, {tuned.examples}"],
        ["segment MAP before fine-tuning", before["segment_map"]],
        ["segment MAP after fine-tuning", after["segment_map"]],
        [f"{at} before / after", f"{before[at]:.4f} / {after[at]:.4f}"],
        ["rated pairs (eval half)", after["rated_pairs"]],
        ["eval segments/s", f"{after['segments_per_s']:.0f}"],
        ["submission", f"{submission} ({written['classes']} classes, {written['entries']} entries)"],
        ["time", f"{time.perf_counter() - begin:.1f} s"],
    ]
