"""The Kaggle 2019 segment submission: per-class top-N selection, the ``Class,Segments`` file and its scoring.

Format (google/youtube-8m ``segment_eval_inference.py``): header ``Class,Segments``, then one row per class: the
class index, a comma, and up to 100,000 space-separated ``videoid:start`` entries, best first, ``start`` the
first frame of a 5-frame segment. Scoring ranks each class's entries by their position and keeps the rated
(segment, class) pairs (see :class:`~zoo_yt8m_metrics.segment.SegmentMetric`).

Selection memory is bounded by classes x N entries (8 bytes each: a float32 score and a uint32 key) plus a
fixed pending buffer, whatever the number of videos: never videos x segments x classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import DataError

SEGMENT_FRAMES = 5
MAX_ENTRIES = 100_000
HEADER = "Class,Segments"
PENDING_LIMIT = 1 << 22  # candidate entries held before a merge (~48 MB)


def slot_bits(max_frames: int) -> int:
    """Bits of a key that number a video's segments (the rest number the video)."""
    return max(1, int(np.ceil(np.log2(max(2, max_frames // SEGMENT_FRAMES + 1)))))


class TopSegments:
    """The best ``k`` segments per class, for the classes ``classes`` (columns of the score rows).

    ``add(scores, keys)`` takes ``[S, num_classes]`` scores and one uint32 key per row, keys increasing in the
    order rows are added. A row enters a class's candidates only if it beats that class's current k-th score,
    so once the lists are full few rows survive the comparison. Order and ties: score descending, then key
    ascending (the earlier segment first), both in the selection and in :meth:`ranked`.
    """

    def __init__(
        self, classes: Iterable[int], k: int = MAX_ENTRIES, *, pending_limit: int = PENDING_LIMIT
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.classes = np.asarray(list(classes), np.int64)
        self.k = int(k)
        self.pending_limit = int(pending_limit)
        c = len(self.classes)
        self.threshold = np.full(c, -np.inf, np.float32)
        self.scores: list[np.ndarray] = [np.zeros(0, np.float32) for _ in range(c)]
        self.keys: list[np.ndarray] = [np.zeros(0, np.uint32) for _ in range(c)]
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_count = 0
        self.peak_entries = 0

    def entries(self) -> int:
        """Entries held now (kept lists plus pending candidates): what the memory bound is about."""
        return sum(len(s) for s in self.scores) + self._pending_count

    def add(self, scores: np.ndarray, keys: np.ndarray) -> None:
        sub = np.asarray(scores, np.float32)[:, self.classes]
        rows, cols = np.nonzero(sub > self.threshold[None, :])
        if rows.size:
            self._pending.append((cols.astype(np.int32), sub[rows, cols], np.asarray(keys, np.uint32)[rows]))
            self._pending_count += rows.size
            self.peak_entries = max(self.peak_entries, self.entries())
        if self._pending_count >= self.pending_limit:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        cols = np.concatenate([p[0] for p in self._pending])
        scores = np.concatenate([p[1] for p in self._pending])
        keys = np.concatenate([p[2] for p in self._pending])
        self._pending, self._pending_count = [], 0
        order = np.argsort(cols, kind="stable")  # stable: each class's candidates stay in key order
        cols, scores, keys = cols[order], scores[order], keys[order]
        bounds = np.searchsorted(cols, np.arange(len(self.classes) + 1))
        for c in np.flatnonzero(np.diff(bounds)):
            lo, hi = bounds[c], bounds[c + 1]
            s = np.concatenate([self.scores[c], scores[lo:hi]])
            key = np.concatenate([self.keys[c], keys[lo:hi]])
            if s.size > self.k:
                s, key = _best(s, key, self.k)
                self.threshold[c] = s.min()
            self.scores[c], self.keys[c] = s, key

    def ranked(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(class, keys, scores)`` per class of ``classes``, best first."""
        self._merge()
        for c, cls in enumerate(self.classes):
            order = np.lexsort((self.keys[c], -self.scores[c]))
            yield int(cls), self.keys[c][order], self.scores[c][order]


def _best(scores: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best by (score desc, key asc) in O(n): a partition finds the cut score; ties at the cut keep the
    smallest keys."""
    cut = -np.partition(-scores, k - 1)[k - 1]
    above = scores > cut
    need = k - int(above.sum())
    at = np.flatnonzero(scores == cut)
    at = at[np.argsort(keys[at], kind="stable")[:need]]
    keep = np.flatnonzero(above)
    keep = np.concatenate([keep, at])
    return scores[keep], keys[keep]


def write_segment_submission(
    path: str | os.PathLike, top: TopSegments, video_ids: list[str], bits: int
) -> dict[str, int]:
    """Write ``top`` as a Kaggle 2019 submission (atomically); keys are ``video index << bits | segment``."""
    from zoo.atomic import atomic_path

    mask = (1 << bits) - 1
    rows = entries = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(HEADER + "\n")
        for cls, keys, _ in top.ranked():
            videos = (keys >> np.uint32(bits)).tolist()
            starts = ((keys & np.uint32(mask)) * SEGMENT_FRAMES).tolist()
            f.write(f"{cls}," + " ".join(f"{video_ids[v]}:{s}" for v, s in zip(videos, starts)) + "\n")
            rows += 1
            entries += len(videos)
    return {"classes": rows, "entries": entries}


def iter_segment_submission(
    path: str | os.PathLike, *, max_entries: int = MAX_ENTRIES
) -> Iterator[tuple[int, int, list[tuple[str, int]]]]:
    """``(line number, class, [(video id, start), ...])`` per row of a submission, checked: the header, the
    row shape, integer classes listed once, ``video:start`` entries with ``start`` on a 5-frame boundary, no
    entry twice in a row, at most ``max_entries`` per class. Errors name the file and line."""
    path = Path(path)
    seen: dict[int, int] = {}
    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the submission: {exc.strerror or exc}") from exc
    with f:
        try:
            header = f.readline().strip()
            if header != HEADER:
                raise DataError(
                    f"{path}: line 1: expected the header {HEADER!r} (a 2019 segment submission), got {header[:60]!r}"
                )
            for line_no, line in enumerate(f, start=2):
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                where = f"{path}: line {line_no}"
                head, comma, body = text.partition(",")
                if not comma:
                    raise DataError(f"{where}: malformed row: expected CLASS,VIDEO:START VIDEO:START ...")
                try:
                    cls = int(head)
                except ValueError:
                    raise DataError(
                        f"{where}: malformed row: class {head[:40]!r} is not an integer"
                    ) from None
                if cls < 0:
                    raise DataError(f"{where}: class {cls} is negative")
                if cls in seen:
                    raise DataError(f"{where}: class {cls} is listed again (first on line {seen[cls]})")
                seen[cls] = line_no
                items = body.split()
                if len(items) > max_entries:
                    raise DataError(
                        f"{where}: class {cls} has {len(items)} entries; at most {max_entries:,} are allowed"
                    )
                entries = []
                for item in items:
                    vid, colon, start_text = item.rpartition(":")
                    if not colon or not vid or not start_text.isdigit():
                        raise DataError(f"{where}: malformed entry {item[:60]!r}: expected VIDEOID:START")
                    start = int(start_text)
                    if start % SEGMENT_FRAMES:
                        raise DataError(
                            f"{where}: entry {item!r}: segment start {start} is not on a "
                            f"{SEGMENT_FRAMES}-frame boundary"
                        )
                    entries.append((vid, start))
                if len(set(entries)) != len(entries):
                    dup = next(e for i, e in enumerate(entries) if e in entries[:i])
                    raise DataError(f"{where}: entry {dup[0]}:{dup[1]} is listed twice for class {cls}")
                yield line_no, cls, entries
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: the submission is not UTF-8 text ({exc.reason})") from None


def score_segment_submission(
    path: str | os.PathLike,
    videos: Iterable[Mapping[str, Any]],
    *,
    num_classes: int,
    top_n: int = MAX_ENTRIES,
) -> tuple[dict[str, float], Any]:
    """Segment mAP of a submission against rated records (the segment reader's dicts).

    Each class's entries score by rank (the first highest); classes without a row count as AP 0. An entry for
    a video not in the rated data, or a class outside ``0 .. num_classes-1``, is an error naming the line.
    """
    from zoo.config import DatasetSpec
    from zoo_yt8m_metrics.segment import SegmentMetric, SegmentMetricConfig

    metric = SegmentMetric(SegmentMetricConfig(), DatasetSpec(num_classes=num_classes, features={}))
    known: set[str] = set()
    for video in videos:
        metric.add_ground_truth(video)
        known.add(str(video["id"]))
    if not known:
        raise DataError("the rated data holds no videos; check --data")
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
    return metric.compute(), metric
