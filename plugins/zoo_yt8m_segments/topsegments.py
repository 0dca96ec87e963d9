"""The best N segments per class over a stream of score batches: what a 2019 segment submission lists.

Memory is bounded by classes x (N + slack) entries (8 bytes each: a float32 score and a uint32 key) plus a
fixed pending buffer, whatever the number of segments: never segments x classes. Time is close to one pass
over the scores: per batch one comparison of the ``[S, C]`` block with the per-class thresholds; only the
(segment, class) pairs that beat their class's current N-th score are kept as candidates, grouped by class
with a linear-time (radix) sort, and a class's list is cut back to N (a linear-time partition) only when it
has grown by ``slack`` entries, so each candidate costs O(1 + N / slack) amortised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

MAX_ENTRIES = 100_000
SEGMENT_FRAMES = 5
PENDING_LIMIT = 1 << 22  # candidate entries held before they are grouped by class (~40 MB)


def slot_bits(max_frames: int) -> int:
    """Bits of a key that number a video's segments (the rest number the video)."""
    return max(1, int(np.ceil(np.log2(max(2, max_frames // SEGMENT_FRAMES + 1)))))


def segment_keys(videos: np.ndarray, starts: np.ndarray, bits: int) -> np.ndarray:
    """One uint32 per segment, increasing in reading order: ``video << bits | start // 5``."""
    return (np.asarray(videos).astype(np.uint32) << np.uint32(bits)) | (
        np.asarray(starts) // SEGMENT_FRAMES
    ).astype(np.uint32)


def split_keys(keys: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(video indices, segment starts)`` of :func:`segment_keys`."""
    mask = np.uint32((1 << bits) - 1)
    return (keys >> np.uint32(bits)).astype(np.int64), (keys & mask).astype(np.int64) * SEGMENT_FRAMES


class TopSegments:
    """The best ``k`` segments per class, for the classes ``classes`` (columns of the score rows).

    ``add(scores, keys)`` takes ``[S, num_classes]`` scores and one uint32 key per row, keys increasing in the
    order rows are added. Order and ties: score descending, then key ascending (the earlier segment first),
    both in the selection and in :meth:`ranked`; a later row never displaces an equal score, so a row must
    beat its class's N-th score strictly to become a candidate.
    """

    def __init__(
        self,
        classes: Iterable[int],
        k: int = MAX_ENTRIES,
        *,
        pending_limit: int = PENDING_LIMIT,
        slack: int | None = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.classes = np.asarray(list(classes), np.int64)
        self.k = int(k)
        self.slack = max(1, self.k // 8) if slack is None else max(1, int(slack))
        self.pending_limit = int(pending_limit)
        c = len(self.classes)
        self._identity = bool(c) and np.array_equal(self.classes, np.arange(c))
        self._col_dtype = np.uint16 if c <= np.iinfo(np.uint16).max + 1 else np.int32  # uint16: radix sort
        self.threshold = np.full(c, -np.inf, np.float32)
        self._scores: list[list[np.ndarray]] = [[] for _ in range(c)]
        self._keys: list[list[np.ndarray]] = [[] for _ in range(c)]
        self._held = np.zeros(c, np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_count = 0
        self.peak_entries = 0

    def entries(self) -> int:
        """Entries held now (kept lists plus pending candidates): what the memory bound is about."""
        return int(self._held.sum()) + self._pending_count

    def add(self, scores: np.ndarray, keys: np.ndarray) -> None:
        scores = np.asarray(scores, np.float32)
        sub = scores if self._identity and scores.shape[1] == len(self.classes) else scores[:, self.classes]
        rows, cols = np.nonzero(sub > self.threshold)
        if rows.size:
            self._pending.append(
                (cols.astype(self._col_dtype), sub[rows, cols], np.asarray(keys, np.uint32)[rows])
            )
            self._pending_count += rows.size
            self.peak_entries = max(self.peak_entries, int(self._held.sum()) + self._pending_count)
        if self._pending_count >= self.pending_limit:
            self._merge()

    def _merge(self) -> None:
        """Group the pending candidates by class, append them, cut back the lists grown past k + slack."""
        if not self._pending:
            return
        if len(self._pending) == 1:
            cols, scores, keys = self._pending[0]
        else:
            cols = np.concatenate([p[0] for p in self._pending])
            scores = np.concatenate([p[1] for p in self._pending])
            keys = np.concatenate([p[2] for p in self._pending])
        self._pending, self._pending_count = [], 0
        order = np.argsort(cols, kind="stable")  # radix sort for uint16; stable: key order kept per class
        bounds = np.zeros(len(self.classes) + 1, np.int64)
        np.cumsum(np.bincount(cols, minlength=len(self.classes)), out=bounds[1:])
        del cols
        scores, keys = scores[order], keys[order]
        del order
        for c in np.flatnonzero(np.diff(bounds)).tolist():
            lo, hi = bounds[c], bounds[c + 1]
            self._scores[c].append(scores[lo:hi].copy())
            self._keys[c].append(keys[lo:hi].copy())
            self._held[c] += hi - lo
            if self._held[c] > self.k + self.slack:
                self._compact(c)

    def _compact(self, c: int) -> None:
        s = np.concatenate(self._scores[c]) if len(self._scores[c]) > 1 else self._scores[c][0]
        key = np.concatenate(self._keys[c]) if len(self._keys[c]) > 1 else self._keys[c][0]
        if s.size > self.k:
            s, key, cut = _best(s, key, self.k)
            self.threshold[c] = cut
        self._scores[c], self._keys[c] = [s], [key]
        self._held[c] = s.size

    def ranked(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(class, keys, scores)`` per class of ``classes``, best first."""
        self._merge()
        for c, cls in enumerate(self.classes.tolist()):
            if self._scores[c]:
                self._compact(c)
                s, key = self._scores[c][0], self._keys[c][0]
            else:
                s, key = np.zeros(0, np.float32), np.zeros(0, np.uint32)
            order = np.lexsort((key, -s))
            yield cls, key[order], s[order]


def _best(scores: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """The k best by (score desc, key asc) in O(n), and the k-th score: a partition finds the cut score;
    ties at the cut keep the smallest keys."""
    cut = np.partition(scores, scores.size - k)[scores.size - k]
    above = scores > cut
    need = k - int(np.count_nonzero(above))
    at = np.flatnonzero(scores == cut)
    if at.size > need:
        at = at[np.argsort(keys[at], kind="stable")[:need]]
    keep = np.concatenate([np.flatnonzero(above), at])
    return scores[keep], keys[keep], cut
