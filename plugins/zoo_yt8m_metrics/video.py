"""The YouTube-8M video-level metrics: GAP@k, Hit@1, PERR, mAP (and the loss), exact and streaming.

Definitions follow the starter code (google/youtube-8m ``eval_util.py``, ``average_precision_calculator.py``,
``mean_average_precision_calculator.py``); docs/metrics.md states them and the tie rule in full.

Memory is O(videos x top_k): each batch leaves only its top-k (score, class, label) triplets, the per-class
positive counts and a few sums. Nothing of size videos x classes is kept.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_path
from zoo.config import DatasetSpec
from zoo.errors import ConfigError, DataError, ZooError
from zoo.ranking import top_k
from zoo_yt8m_metrics.ranking import pooled_average_precision

STATE_VERSION = 1
CHUNK_BYTES = 2**21


@dataclass
class Yt8mMetricConfig:
    """Options of the ``yt8m`` metric."""

    top_k: int = 20
    """Predictions per video pooled into GAP and mAP (YouTube-8M: GAP@20)."""


class Yt8mMetric:
    """GAP@k, Hit@1, PERR and mAP exactly as the YouTube-8M starter code defines them, plus the loss.

    ``update(scores, labels, loss=None)`` per batch (numpy ``[B, C]`` probabilities and 0/1 labels; ``loss``
    is the batch mean), ``compute()`` at the end. GAP and mAP are global over every video seen, never a mean
    of per-batch values. For distributed evaluation gather ``state()`` from every rank, then ``reset()`` and
    ``merge(states)``: the result equals one metric that saw every batch.

    Tie rule: within a video, equal scores are ordered by class index (lowest first), as ``np.argmax`` does;
    this decides Hit@1, PERR and which classes enter a top-k list. In the pooled GAP and per-class AP
    rankings, tied triplets count with their expected value over every order of the tie (the reference
    shuffles them with a fixed seed). Without ties every value equals the reference's.

    A score of ``-inf`` means "not predicted": such a class never enters the top-k list, never counts as a
    hit (``zoo score`` uses it for classes a prediction file does not list).
    """

    name = "yt8m"
    Config = Yt8mMetricConfig
    headline = "gap"
    display = ("gap", "hit_at_1", "perr", "map", "loss")

    def __init__(self, config: Yt8mMetricConfig, spec: DatasetSpec) -> None:
        if config.top_k < 1:
            raise ConfigError(f"metric {self.name!r}: top_k must be at least 1, got {config.top_k}")
        if spec.num_classes < 1:
            raise ConfigError(f"metric {self.name!r}: num_classes must be at least 1, got {spec.num_classes}")
        self.config = config
        self.num_classes = spec.num_classes
        self.top_k = min(config.top_k, spec.num_classes)
        self._class_dtype = np.int16 if self.num_classes <= np.iinfo(np.int16).max else np.int32
        self.reset()

    # -- accumulation -------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything seen so far."""
        self._scores: list[np.ndarray] = []
        self._classes: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._positives = np.zeros(self.num_classes, dtype=np.int64)
        self._num_videos = 0
        self._unlabelled = 0
        self._hits = 0
        self._perr_sum = 0.0
        self._loss_sum = 0.0
        self._loss_videos = 0
        self._result: tuple[float, np.ndarray] | None = None

    def update(
        self, scores: np.ndarray, labels: np.ndarray, loss: float | None = None, mask: Any = None
    ) -> None:
        """Add one batch: ``scores`` and ``labels`` are ``[B, num_classes]``; ``loss`` the batch's mean loss.

        ``mask`` must be None or all ones: the video-level metrics rank every class of a video, so a batch
        rated on some classes only (segment mode) is a DataError pointing to ``yt8m-segment``.
        """
        self._check_mask(mask)
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"metric {self.name!r}: scores must have shape [batch, {self.num_classes}], "
                f"got {scores.shape}"
            )
        labels = self._check_labels(labels, scores.shape[0])
        if scores.dtype.kind not in "fiub":
            raise ValueError(f"metric {self.name!r}: scores must be numbers, got dtype {scores.dtype}")
        if scores.dtype.kind != "f":
            scores = scores.astype(np.float64)
        elif scores.dtype.itemsize < 4:
            scores = scores.astype(np.float32)
        self._check_loss(loss)
        # Work in slices of about 2 MB: each slice's scores and labels stay in the CPU cache across the
        # several passes below. Nothing is committed until every slice has passed its checks.
        batch = scores.shape[0]
        step = max(16, CHUNK_BYTES // (self.num_classes * scores.dtype.itemsize))
        self._commit(
            [self._slice(scores[i : i + step], labels[i : i + step], i) for i in range(0, batch, step)],
            batch,
            loss,
        )

    def _check_mask(self, mask: Any) -> None:
        if mask is not None and not (np.asarray(mask) == 1).all():
            raise DataError(
                f"metric {self.name!r}: the batch rates only some classes of each example (a label_mask, "
                f"from segment-mode data: data.segments: true); GAP, Hit@1, PERR and mAP need whole labels. "
                f"Use eval.metric: yt8m-segment for segment-rated data, or turn data.segments off"
            )

    def update_ranked(
        self, classes: np.ndarray, scores: np.ndarray, labels: np.ndarray, loss: float | None = None
    ) -> None:
        """Add a batch given as each video's predictions rather than a score for every class.

        ``classes`` and ``scores`` are ``[B, L]`` (any order; pad short rows with score ``-inf``), ``labels``
        ``[B, num_classes]``. Classes a row does not list are not predicted: this is how a prediction file
        (``zoo score``) is scored without a dense matrix. The first ``top_k`` entries by score enter GAP and
        mAP; PERR for a video with more labels than listed classes counts the missing ones as misses.
        """
        classes = np.asarray(classes)
        scores = np.asarray(scores)
        labels = self._check_labels(labels, classes.shape[0] if classes.ndim == 2 else -1)
        if classes.ndim != 2 or scores.shape != classes.shape or classes.dtype.kind not in "iu":
            raise ValueError(
                f"metric {self.name!r}: classes (integers) and scores must have the same shape "
                f"[batch, L]; got {classes.shape} {classes.dtype} and {scores.shape}"
            )
        if np.isnan(scores).any():
            raise ValueError(
                f"metric {self.name!r}: row {int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])} "
                f"has a NaN score"
            )
        listed = scores != -np.inf
        if classes.size and (
            classes[listed].min(initial=0) < 0 or classes[listed].max(initial=0) >= self.num_classes
        ):
            raise ValueError(f"metric {self.name!r}: classes must be in 0 .. {self.num_classes - 1}")
        self._check_loss(loss)
        classes = np.where(listed, classes, self.num_classes).astype(np.int64)  # padding sorts last
        order = np.lexsort((classes, -scores.astype(np.float64)), axis=1)  # by score, ties by class
        classes = np.take_along_axis(classes, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        if classes.shape[1] > 1 and np.any(
            (classes[:, 1:] == classes[:, :-1]) & (classes[:, 1:] < self.num_classes)
        ):
            raise ValueError(f"metric {self.name!r}: a class is listed twice in one row")
        classes = np.minimum(classes, self.num_classes - 1)  # padding (score -inf) stays unpredicted
        num_labels, positives = _label_counts(labels, self.name)
        self._commit([self._part(classes, scores, labels, num_labels, positives, None)], len(classes), loss)

    def _check_labels(self, labels: np.ndarray, batch: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (batch, self.num_classes):
            raise ValueError(
                f"metric {self.name!r}: labels have shape {labels.shape}, expected "
                f"[{batch}, {self.num_classes}] (0/1 multi-hot, one row per video)"
            )
        return labels

    def _commit(self, parts: list[tuple], batch: int, loss: float | None) -> None:
        for hits, perr, unlabelled, positives, triplets in parts:
            self._hits += hits
            self._perr_sum += perr
            self._unlabelled += unlabelled
            self._positives += positives
            self._scores.append(triplets[0])
            self._classes.append(triplets[1])
            self._labels.append(triplets[2])
        self._num_videos += batch
        if loss is not None and batch:
            self._loss_sum += float(loss) * batch
            self._loss_videos += batch
        self._result = None

    def _slice(self, scores: np.ndarray, labels: np.ndarray, first: int) -> tuple:
        """The contribution of the batch rows ``first ..`` (dense scores)."""
        num_labels, positives = _label_counts(labels, self.name, first)
        try:
            classes, values = top_k(scores, self.top_k)
        except ValueError:
            row = first + int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])
            raise ValueError(
                f"metric {self.name!r}: row {row} of the batch has a NaN score; check the model output"
            ) from None
        return self._part(classes, values, labels, num_labels, positives, scores)

    def _part(
        self,
        classes: np.ndarray,
        values: np.ndarray,
        labels: np.ndarray,
        num_labels: np.ndarray,
        positives: np.ndarray,
        dense: np.ndarray | None,
    ) -> tuple:
        """Hits, PERR sum, unlabelled videos, positives per class and top-k triplets from ranked lists
        (``dense``: the full scores, for PERR of videos with more labels than listed classes)."""
        rows = np.arange(len(classes))[:, None]
        top_labels = labels[rows, classes] != 0
        predicted = values != -np.inf
        hits = int(np.count_nonzero(top_labels[:, 0] & predicted[:, 0])) if classes.shape[1] else 0
        perr = _perr_sum(dense, labels, num_labels, top_labels & predicted, values)
        top_labels, values, predicted = (
            top_labels[:, : self.top_k],
            values[:, : self.top_k],
            predicted[:, : self.top_k],
        )
        classes = classes[:, : self.top_k]
        if predicted.all():
            triplets = (values.ravel(), classes.astype(self._class_dtype).ravel(), top_labels.ravel())
        else:
            triplets = (
                values[predicted],
                classes[predicted].astype(self._class_dtype),
                top_labels[predicted],
            )
        return hits, perr, int(np.count_nonzero(num_labels == 0)), positives, triplets

    def _check_loss(self, loss: float | None) -> None:
        had = self._loss_videos > 0
        if self._num_videos and (loss is not None) != had:
            raise ValueError(
                f"metric {self.name!r}: pass a loss with every batch or with none "
                f"({'earlier batches had one' if had else 'earlier batches had none'})"
            )

    # -- distributed ----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything ``compute`` needs, as numpy arrays and numbers (picklable, O(videos x top_k))."""
        self._consolidate()
        return {
            "version": STATE_VERSION,
            "metric": self.name,
            "num_classes": self.num_classes,
            "top_k": self.top_k,
            "scores": self._scores[0],
            "classes": self._classes[0],
            "labels": self._labels[0],
            "positives": self._positives.copy(),
            "num_videos": self._num_videos,
            "unlabelled": self._unlabelled,
            "hits": self._hits,
            "perr_sum": self._perr_sum,
            "loss_sum": self._loss_sum,
            "loss_videos": self._loss_videos,
        }

    def merge(self, states: list[Mapping[str, Any]]) -> None:
        """Add the ``state()`` of other metrics (e.g. every rank's, after ``reset()``) to this one."""
        for i, st in enumerate(states):
            if st.get("metric") != self.name or st.get("version") != STATE_VERSION:
                raise ValueError(
                    f"metric {self.name!r}: state {i} is not a {self.name!r} state of version {STATE_VERSION}"
                )
            if st["num_classes"] != self.num_classes or st["top_k"] != self.top_k:
                raise ValueError(
                    f"metric {self.name!r}: state {i} has num_classes {st['num_classes']}, top_k "
                    f"{st['top_k']}; this metric has {self.num_classes}, {self.top_k}"
                )
            if st["num_videos"] == 0:
                continue
            if self._num_videos and (st["loss_videos"] > 0) != (self._loss_videos > 0):
                raise ValueError(
                    f"metric {self.name!r}: state {i} {'has' if st['loss_videos'] else 'has no'} "
                    f"loss, unlike the videos already merged; pass a loss everywhere or nowhere"
                )
            self._scores.append(np.asarray(st["scores"]))
            self._classes.append(np.asarray(st["classes"]).astype(self._class_dtype, copy=False))
            self._labels.append(np.asarray(st["labels"], dtype=bool))
            self._positives += np.asarray(st["positives"], dtype=np.int64)
            self._num_videos += int(st["num_videos"])
            self._unlabelled += int(st["unlabelled"])
            self._hits += int(st["hits"])
            self._perr_sum += float(st["perr_sum"])
            self._loss_sum += float(st["loss_sum"])
            self._loss_videos += int(st["loss_videos"])
        self._result = None

    def _consolidate(self) -> None:
        """Concatenate the per-batch chunks into one array each."""
        if len(self._scores) == 1:
            return
        if not self._scores:
            self._scores = [np.zeros(0, dtype=np.float32)]
            self._classes = [np.zeros(0, dtype=self._class_dtype)]
            self._labels = [np.zeros(0, dtype=bool)]
            return
        self._scores = [np.concatenate(self._scores)]
        self._classes = [np.concatenate(self._classes)]
        self._labels = [np.concatenate(self._labels)]

    # -- results --------------------------------------------------------------------------------------------
    @property
    def num_videos(self) -> int:
        return self._num_videos

    def _pooled(self) -> tuple[float, np.ndarray]:
        if self._result is None:
            self._consolidate()
            self._result = pooled_average_precision(
                self._scores[0], self._classes[0], self._labels[0], self._positives
            )
        return self._result

    def compute(self) -> dict[str, float]:
        """gap, hit_at_1, perr, map, num_videos, unlabelled_videos (and loss when every batch had one)."""
        if self._num_videos == 0:
            raise ZooError(
                f"metric {self.name!r}: no videos were evaluated; check that the evaluation data is not empty"
            )
        gap, ap = self._pooled()
        scored = ap[self._positives > 0]
        result = {
            "gap": gap,
            "hit_at_1": self._hits / self._num_videos,
            "perr": self._perr_sum / self._num_videos,
            "map": float(scored.mean()) if scored.size else 0.0,
            "num_videos": self._num_videos,
            "unlabelled_videos": self._unlabelled,
        }
        if self._loss_videos:
            result["loss"] = self._loss_sum / self._loss_videos
        return result

    def per_class_ap(self) -> np.ndarray:
        """AP of every class ``[num_classes]`` over the top-k triplets; NaN for a class without positives."""
        return self._pooled()[1].copy()

    def per_class_table(self) -> list[dict[str, Any]]:
        """One row per class: index, AP (None without positives), positives, top-k predictions, hits."""
        ap = self.per_class_ap()
        self._consolidate()
        classes, labels = self._classes[0].astype(np.int64), self._labels[0]
        predicted = np.bincount(classes, minlength=self.num_classes)
        hits = np.bincount(classes[labels], minlength=self.num_classes)
        return [
            {
                "class": c,
                "ap": None if np.isnan(ap[c]) else float(ap[c]),
                "positives": int(self._positives[c]),
                "predicted": int(predicted[c]),
                "hits": int(hits[c]),
            }
            for c in range(self.num_classes)
        ]

    def write_reports(self, out_dir: Path, class_names: Mapping[int, str] | None) -> list[Path]:
        """``per_class_ap.csv``: the per-class table."""
        path = Path(out_dir) / "per_class_ap.csv"
        self.write_per_class_csv(path, class_names)
        return [path]

    def write_per_class_csv(
        self, path: str | os.PathLike, vocabulary: Mapping[int, str] | None = None
    ) -> None:
        """Per-class report, atomically: class, name, ap, positives, predicted (top-k entries), hits.

        ``ap`` is empty for a class without positives (it does not enter mAP); ``name`` is empty without a
        vocabulary or for a class the vocabulary does not list.
        """
        rows = self.per_class_table()
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["class", "name", "ap", "positives", "predicted", "hits"])
            for row in rows:
                name = (vocabulary or {}).get(row["class"], "")
                ap = "" if row["ap"] is None else f"{row['ap']:.6f}"
                writer.writerow([row["class"], name, ap, row["positives"], row["predicted"], row["hits"]])


def _label_counts(labels: np.ndarray, metric: str, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels per video and positives per class; any label other than 0 or 1 is an error.

    The reference sums label values, so soft labels (label smoothing), -1 or 0/255 labels would silently
    change every metric.
    """
    if labels.dtype == bool:
        return np.count_nonzero(labels, axis=1), np.count_nonzero(labels, axis=0)
    if not np.logical_or(labels == 0, labels == 1).all():
        bad = np.argwhere((labels != 0) & (labels != 1))[0]
        raise ValueError(
            f"metric {metric!r}: labels must be 0/1 multi-hot; found {labels[tuple(bad)].item()!r} at "
            f"row {first + bad[0]} of the batch, class {bad[1]}"
        )
    # float sums of 0/1 values are exact integers at any batch size
    return labels.sum(axis=1).astype(np.int64), labels.sum(axis=0).astype(np.int64)


def _perr_sum(
    dense: np.ndarray | None,
    labels: np.ndarray,
    num_labels: np.ndarray,
    top_labels: np.ndarray,
    values: np.ndarray,
) -> float:
    """Sum over videos of precision at the video's label count n (a video without labels adds 0).

    A listed class counts only if it is a label and its score is above 0, as in the reference. When n is
    larger than the ranked list: with ``dense`` scores the whole row is ranked; without (a prediction file)
    the list is all there is and the rest are misses.
    """
    listed = values.shape[1]
    hits = np.cumsum(top_labels & (values > 0), axis=1)
    total = 0.0
    within = (num_labels > 0) & (num_labels <= listed)
    if within.any():
        n = num_labels[within]
        total += float(np.sum(hits[within, n - 1] / n))
    beyond = np.flatnonzero(num_labels > listed)
    if beyond.size and dense is None:
        total += float(np.sum((hits[beyond, -1] if listed else 0) / num_labels[beyond]))
    elif beyond.size:
        rows = dense[beyond]
        order = np.argsort(-rows, axis=1, kind="stable")
        n = num_labels[beyond]
        take = np.arange(rows.shape[1])[None, :] < n[:, None]
        good = (np.take_along_axis(labels[beyond], order, axis=1) != 0) & (
            np.take_along_axis(rows, order, axis=1) > 0
        )
        total += float(np.sum(np.count_nonzero(good & take, axis=1) / n))
    return total
