"""Segment-level mAP for the segment-rated YouTube-8M data (2019 challenge rules).

Ground truth: each video of the segment-rated partition (``3/frame/validate``) carries context lists
``segment_start_times``, ``segment_end_times``, ``segment_labels`` and ``segment_scores`` (0/1): one rated
(segment, class) pair per position. The metric ranks, per class, every scored segment by its score, keeps
only the rated (segment, class) pairs, and takes the average precision with denominator = the class's rated
positives (also those never scored); mAP is the mean over the classes with at least one rated positive.
This is google/youtube-8m ``segment_eval_inference.py``; see docs/metrics.md for where we differ (classes
without a submission count as AP 0; ties averaged; no per-class cap).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.config import DatasetSpec
from zoo.errors import ConfigError, DataError, ZooError
from zoo_yt8m_metrics.ranking import precision_sums
from zoo_yt8m_metrics.segment_submission import MAX_ENTRIES, iter_segment_submission, write_segment_submission

STATE_VERSION = 1
GROUND_TRUTH_KEYS = ("segment_start_times", "segment_labels", "segment_scores")


@dataclass
class SegmentMetricConfig:
    """Options of the ``yt8m-segment`` metric (it has none yet: the 2019 rules are fixed)."""


class SegmentMetric:
    """Segment-level mAP (2019 rules): per class, AP of the rated segments ranked by score; mean over classes.

    Two ways to feed it (one per metric instance: mixing them would count the ratings twice):

    - Segment-mode batches (``data.segments: true``; what ``zoo eval``/``zoo bench`` with ``eval.metric:
      yt8m-segment`` do): ``update(scores, labels, loss=None, mask=None)``, each row one rated segment,
      ``mask`` ``[B, C]`` (the batch's ``label_mask``) the rated classes and ``labels`` their rating. The rated
      pairs of the data are exactly those of the batches, so the result equals the ground-truth path's when
      every rated segment is scored once. A missing mask is an error: without it nothing says which pairs
      were rated. ``loss`` is not used.
    - Ground truth plus scored segments (``zoo eval --segments``: every 5-frame segment of each video):
      ``add_ground_truth(video)`` (the segment reader's dict: ``id`` plus the ``segment_*`` keys) before
      ``update_segments(ids, segment_start_times, scores)``: ``scores`` ``[S, num_classes]`` for S segments,
      segment s being the one of video ``ids[s]`` starting at frame ``segment_start_times[s]``. Only rated
      pairs are kept; unrated segments cost nothing. A segment scored twice is an error.

    ``compute()`` -> ``segment_map``, ``segment_classes`` (classes averaged), ``rated_pairs_scored``,
    ``rated_pairs``. ``state()`` / ``merge(states)`` work as for ``yt8m`` and for either path (merge the results
    of every rank; ground truth stays where it was added). Ties in score count with their expected value, as
    in ``yt8m``.
    """

    name = "yt8m-segment"
    headline = "segment_map"
    display = ("segment_map", "segment_classes", "rated_pairs_scored", "rated_pairs")
    Config = SegmentMetricConfig

    def __init__(self, config: SegmentMetricConfig, spec: DatasetSpec) -> None:
        if spec.num_classes < 1:
            raise ConfigError(f"metric {self.name!r}: num_classes must be at least 1, got {spec.num_classes}")
        self.config = config
        self.num_classes = spec.num_classes
        self.reset()

    def reset(self) -> None:
        """Forget the scores and ground truth seen so far."""
        self._truth: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._videos: set[str] = set()
        self._scored: set[tuple[str, int]] = set()
        self._positives = np.zeros(self.num_classes, dtype=np.int64)
        self._rated = 0
        self._pair_scores: list[np.ndarray] = []
        self._pair_classes: list[np.ndarray] = []
        self._pair_labels: list[np.ndarray] = []
        self._source: str | None = None  # "ground truth" or "batches": the way this metric is fed

    def _fed_by(self, source: str) -> None:
        if self._source not in (None, source):
            raise ValueError(
                f"metric {self.name!r}: fed both segment-mode batches (update) and ground truth "
                f"(add_ground_truth/update_segments); use one way per metric, or reset() in between"
            )
        self._source = source

    def add_ground_truth(self, video: Mapping[str, Any]) -> int:
        """Register the rated segments of one video (the segment reader's dict); returns how many pairs."""
        vid = video.get("id")
        if isinstance(vid, bytes):
            vid = vid.decode("utf-8")
        if not isinstance(vid, str) or not vid:
            raise DataError(f"metric {self.name!r}: a ground-truth record has no 'id' (got {vid!r})")
        missing = [k for k in GROUND_TRUTH_KEYS if k not in video]
        if missing:
            raise DataError(
                f"video {vid!r}: no {', '.join(missing)}; segment mAP needs the segment-rated data "
                f"(partition 3/frame/validate) read by a reader that keeps the segment_* keys"
            )
        if vid in self._videos:
            raise DataError(f"video {vid!r}: ground truth added twice (is a file listed twice?)")
        self._fed_by("ground truth")
        starts = np.asarray(video["segment_start_times"], dtype=np.int64).ravel()
        classes = np.asarray(video["segment_labels"], dtype=np.int64).ravel()
        values = np.asarray(video["segment_scores"], dtype=np.float64).ravel()
        lengths = {len(starts), len(classes), len(values)}
        ends = video.get("segment_end_times")
        if ends is not None:
            lengths.add(len(np.asarray(ends).ravel()))
        if len(lengths) != 1:
            raise DataError(
                f"video {vid!r}: segment_start_times, segment_end_times, segment_labels and "
                f"segment_scores must have one entry per rated segment; lengths differ"
            )
        if classes.size and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise DataError(
                f"video {vid!r}: key segment_labels: class {int(classes.max())} is outside 0 .. "
                f"{self.num_classes - 1}"
            )
        if not np.isin(values, (0.0, 1.0)).all():
            raise DataError(
                f"video {vid!r}: key segment_scores must hold 0 or 1, found "
                f"{values[~np.isin(values, (0.0, 1.0))][0]}"
            )
        self._videos.add(vid)
        for start in np.unique(starts):
            at = starts == start
            cls = classes[at]
            if np.unique(cls).size != cls.size:
                raise DataError(f"video {vid!r}: the segment starting at {int(start)} rates a class twice")
            self._truth[(vid, int(start))] = (cls, values[at] > 0)
        self._positives += np.bincount(classes[values > 0], minlength=self.num_classes)
        self._rated += int(classes.size)
        return int(classes.size)

    def update(self, scores: Any, labels: Any, loss: float | None = None, mask: Any = None) -> None:
        """Add a segment-mode batch: ``scores``, ``labels`` and ``mask`` ``[B, num_classes]``, row b one rated
        segment, ``mask[b, c] == 1`` where class c was rated for it and ``labels[b, c]`` the rating (0/1)."""
        if mask is None:
            raise DataError(
                f"metric {self.name!r}: the batch has no label_mask, so nothing says which (segment, class) "
                f"pairs are rated; evaluate the segment-rated data in segment mode (-o data.segments=true, "
                f"e.g. with data.reader: yt8m-segment) or use zoo eval --segments"
            )
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"metric {self.name!r}: scores must have shape [batch, {self.num_classes}], got {scores.shape}"
            )
        labels = np.asarray(labels)
        rated = np.asarray(mask)
        for what, value in (("labels", labels), ("mask", rated)):
            if value.shape != scores.shape:
                raise ValueError(
                    f"metric {self.name!r}: {what} must have the shape of scores {scores.shape}, "
                    f"got {value.shape}"
                )
        if not np.isin(rated, (0, 1)).all():
            raise DataError(f"metric {self.name!r}: mask must hold 0 or 1 (the batch's label_mask)")
        rated = rated > 0
        values = labels[rated]
        if not np.isin(values, (0, 1)).all():
            raise DataError(f"metric {self.name!r}: labels of rated pairs must be 0 or 1")
        pair_scores = scores[rated].astype(np.float64)
        if np.isnan(pair_scores).any():
            raise ValueError(f"metric {self.name!r}: a segment score is NaN; check the model output")
        self._fed_by("batches")
        positive = values > 0
        pair_classes = np.nonzero(rated)[1].astype(np.int64)
        self._pair_scores.append(pair_scores)
        self._pair_classes.append(pair_classes)
        self._pair_labels.append(positive)
        self._positives += np.bincount(pair_classes[positive], minlength=self.num_classes)
        self._rated += int(pair_classes.size)

    def update_segments(
        self, ids: Sequence[str], segment_start_times: Sequence[int] | np.ndarray, scores: np.ndarray
    ) -> None:
        """Add the scores ``[S, num_classes]`` of S segments (video ``ids[s]``, starting at frame
        ``segment_start_times[s]``); their ground truth must have been added."""
        scores = np.asarray(scores)
        starts = np.asarray(segment_start_times).ravel()
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"metric {self.name!r}: scores must have shape [segments, {self.num_classes}], "
                f"got {scores.shape}"
            )
        if not (len(ids) == len(starts) == scores.shape[0]):
            raise ValueError(
                f"metric {self.name!r}: {len(ids)} ids, {len(starts)} start times and "
                f"{scores.shape[0]} score rows; pass one of each per segment"
            )
        if np.isnan(scores).any():
            raise ValueError(f"metric {self.name!r}: a segment score is NaN; check the model output")
        rows: list[int] = []
        keys: list[tuple[str, int]] = []
        classes: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for s, (vid, start) in enumerate(zip(ids, starts)):
            key = (vid.decode("utf-8") if isinstance(vid, bytes) else str(vid), int(start))
            truth = self._truth.get(key)
            if truth is None:
                continue
            rows.append(s)
            keys.append(key)
            classes.append(truth[0])
            labels.append(truth[1])
        if not rows:
            return
        seen: set[tuple[str, int]] = set()
        for key in keys:  # checked before anything is kept, so an error leaves the metric as it was
            if key in self._scored or key in seen:
                raise ValueError(f"metric {self.name!r}: segment {key[0]}:{key[1]} was scored twice")
            seen.add(key)
        self._scored.update(keys)
        sizes = [c.size for c in classes]
        pair_classes = np.concatenate(classes)
        self._pair_scores.append(scores[np.repeat(rows, sizes), pair_classes])
        self._pair_classes.append(pair_classes)
        self._pair_labels.append(np.concatenate(labels))

    def update_class(
        self,
        cls: int,
        ids: Sequence[str],
        segment_start_times: Sequence[int] | np.ndarray,
        scores: np.ndarray,
    ) -> None:
        """Add one class's scores for the listed segments (a submission row, or a per-class top list); the
        segments other classes were rated on are not touched. Call it once per class."""
        starts = np.asarray(segment_start_times).ravel()
        scores = np.asarray(scores, np.float64).ravel()
        if not (len(ids) == len(starts) == len(scores)):
            raise ValueError(f"metric {self.name!r}: pass one id, start time and score per segment")
        if not 0 <= cls < self.num_classes:
            raise ValueError(f"metric {self.name!r}: class {cls} is outside 0 .. {self.num_classes - 1}")
        keep: list[float] = []
        labels: list[bool] = []
        for vid, start, score in zip(ids, starts, scores):
            truth = self._truth.get((str(vid), int(start)))
            if truth is None:
                continue
            hit = np.flatnonzero(truth[0] == cls)
            if hit.size:
                keep.append(float(score))
                labels.append(bool(truth[1][hit[0]]))
        if keep:
            self._pair_scores.append(np.asarray(keep))
            self._pair_classes.append(np.full(len(keep), cls, np.int64))
            self._pair_labels.append(np.asarray(labels, bool))

    def _pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self._pair_scores) != 1:
            self._pair_scores = [np.concatenate(self._pair_scores) if self._pair_scores else np.zeros(0)]
            self._pair_classes = [
                np.concatenate(self._pair_classes) if self._pair_classes else np.zeros(0, dtype=np.int64)
            ]
            self._pair_labels = [
                np.concatenate(self._pair_labels) if self._pair_labels else np.zeros(0, bool)
            ]
        return self._pair_scores[0], self._pair_classes[0], self._pair_labels[0]

    def state(self) -> dict[str, Any]:
        """The scored rated pairs and the per-class rated positives (picklable)."""
        scores, classes, labels = self._pairs()
        return {
            "version": STATE_VERSION,
            "metric": self.name,
            "num_classes": self.num_classes,
            "scores": scores,
            "classes": classes,
            "labels": labels,
            "positives": self._positives.copy(),
            "rated": self._rated,
        }

    def merge(self, states: list[Mapping[str, Any]]) -> None:
        """Add other metrics' ``state()`` (e.g. every rank's, after ``reset()``)."""
        for i, st in enumerate(states):
            if st.get("metric") != self.name or st.get("version") != STATE_VERSION:
                raise ValueError(
                    f"metric {self.name!r}: state {i} is not a {self.name!r} state of version {STATE_VERSION}"
                )
            if st["num_classes"] != self.num_classes:
                raise ValueError(
                    f"metric {self.name!r}: state {i} has {st['num_classes']} classes, this "
                    f"metric {self.num_classes}"
                )
            self._pair_scores.append(np.asarray(st["scores"]))
            self._pair_classes.append(np.asarray(st["classes"], dtype=np.int64))
            self._pair_labels.append(np.asarray(st["labels"], dtype=bool))
            self._positives += np.asarray(st["positives"], dtype=np.int64)
            self._rated += int(st["rated"])

    def rated_positives(self) -> np.ndarray:
        """Rated positive segments per class ``[num_classes]`` (0: the class is not rated in the data)."""
        return self._positives.copy()

    def per_class_ap(self) -> np.ndarray:
        """AP per class ``[num_classes]``; NaN for a class without rated positives."""
        scores, classes, labels = self._pairs()
        ap = np.full(self.num_classes, np.nan)
        has = self._positives > 0
        ap[has] = 0.0
        if scores.size:
            order = np.argsort(scores)[::-1]
            order = order[np.argsort(classes[order], kind="stable")]
            sums = precision_sums(scores[order], labels[order], classes[order], self.num_classes)
            ap[has] = sums[has] / self._positives[has]
        return ap

    @staticmethod
    def write_submission(path: str | Path, rows: Any) -> dict[str, int]:
        """Write the Kaggle 2019 submission this metric scores (``Class,Segments``) atomically, from rows
        ``(class, video ids, segment starts)``, best first: how ``zoo predict --segments`` writes without
        knowing the format. Returns the classes and entries written."""
        return write_segment_submission(path, rows)

    def write_reports(self, out_dir: Path, class_names: Mapping[int, str] | None) -> list[Path]:
        """No detailed report beyond compute()'s values."""
        return []

    def write_per_class_csv(
        self,
        path: str | Path,
        vocabulary: Mapping[int, str] | None = None,
        listed: Sequence[int] | None = None,
    ) -> None:
        """Per-class segment AP, atomically: class, name, ap, rated_positives, rated_pairs_scored and (with
        ``listed``, the classes a submission has a row for) listed. A class with rated positives has an AP (0
        when nothing of it was scored); the others have an empty ``ap`` and are written only when listed."""
        import csv

        from zoo.atomic import atomic_path

        ap = self.per_class_ap()
        _, classes, _ = self._pairs()
        scored = (
            np.bincount(classes, minlength=self.num_classes) if classes.size else np.zeros(self.num_classes)
        )
        in_file = set(int(c) for c in listed) if listed is not None else set()
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["class", "name", "ap", "rated_positives", "rated_pairs_scored"]
                + (["listed"] if listed is not None else [])
            )
            for c in range(self.num_classes):
                if self._positives[c] == 0 and c not in in_file:
                    continue
                row = [
                    c,
                    (vocabulary or {}).get(c, ""),
                    "" if np.isnan(ap[c]) else f"{ap[c]:.6f}",
                    int(self._positives[c]),
                    int(scored[c]),
                ]
                writer.writerow(row + ([int(c in in_file)] if listed is not None else []))

    def compute(self) -> dict[str, float]:
        """segment_map, segment_classes, rated_pairs_scored, rated_pairs."""
        if not self._positives.any():
            raise ZooError(
                f"metric {self.name!r}: no rated positive segment was seen; evaluate the segment-rated "
                f"data (segment-mode batches with label_mask, or add_ground_truth for each video)"
            )
        ap = self.per_class_ap()
        scored = ap[self._positives > 0]
        return {
            "segment_map": float(scored.mean()),
            "segment_classes": int(scored.size),
            "rated_pairs_scored": int(self._pairs()[0].size),
            "rated_pairs": self._rated,
        }


def score_segment_submission(
    path: str | os.PathLike,
    videos: Iterable[Mapping[str, Any]],
    *,
    num_classes: int,
    top_n: int = MAX_ENTRIES,
    listed: list[int] | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[dict[str, float], Any]:
    """Segment mAP of a submission against rated records (the segment reader's dicts).

    Each class's entries score by rank (the first highest); classes without a row count as AP 0. An entry for
    a video not in the rated data, or a class outside ``0 .. num_classes-1``, is an error naming the line.

    Two averages: ``segment_map`` over every class with rated positives (Kaggle's 2019 leaderboard), and
    ``segment_map_listed`` over the classes the file has a row for (google's ``segment_eval_inference.py``).
    A row for a class without rated segments is reported through ``warn`` (default: stderr; Kaggle refused
    such files and google's script stops on them); ``listed`` (if given) receives the classes with a row.
    """
    metric = SegmentMetric(SegmentMetricConfig(), DatasetSpec(num_classes=num_classes, features={}))
    known: set[str] = set()
    for video in videos:
        metric.add_ground_truth(video)
        known.add(str(video["id"]))
    if not known:
        raise DataError("the rated data holds no videos; check --data")
    rows: list[tuple[int, int]] = []  # (line, class) of every row
    for line_no, cls, entries in iter_segment_submission(path, max_entries=top_n):
        if cls >= num_classes:
            raise DataError(f"{path}: line {line_no}: class {cls} is outside 0 .. {num_classes - 1}")
        for vid, _ in entries:
            if vid not in known:
                raise DataError(
                    f"{path}: line {line_no}: video {vid!r} is not in the rated data; score against the "
                    f"partition the submission was made for"
                )
        ids = [vid for vid, _ in entries]
        starts = np.asarray([s for _, s in entries], np.int64)
        metric.update_class(cls, ids, starts, np.arange(len(entries), 0, -1, dtype=np.float64))
        rows.append((line_no, cls))
    metrics = metric.compute()
    positives = metric.rated_positives()
    unrated = [(line_no, cls) for line_no, cls in rows if positives[cls] == 0]
    if unrated:
        shown = ", ".join(f"{cls} (line {line_no})" for line_no, cls in unrated[:5])
        (warn or (lambda message: print(message, file=sys.stderr)))(
            f"warning: {path}: {len(unrated)} row(s) for classes without rated segments in the data: {shown}"
            f"{' ...' if len(unrated) > 5 else ''}. They count in no MAP; Kaggle's 2019 competition refused "
            f"submissions with classes outside segment_label_ids.csv, and google's segment_eval_inference.py "
            f"stops on them: list only the rated classes (zoo predict --segments --segment-classes CSV)"
        )
    rated_listed = [cls for _, cls in rows if positives[cls] > 0]
    ap = metric.per_class_ap()
    metrics["segment_map_listed"] = float(ap[rated_listed].mean()) if rated_listed else 0.0
    metrics["segment_classes_listed"] = len(rated_listed)
    metrics["unrated_rows"] = len(unrated)
    if listed is not None:
        listed.extend(cls for _, cls in rows)
    return metrics, metric
