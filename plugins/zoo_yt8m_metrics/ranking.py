"""Average precision over ranked lists with tied scores, vectorized.

The YouTube-8M reference (``average_precision_calculator.py``) shuffles the list with a fixed seed and then
sorts it stably by score, so tied items land in an arbitrary order that depends on how the list was built
(batch order, number of ranks). Here a tie group is scored by its expectation over every order of the tied
items: the value the reference's shuffle averages to, independent of input order, and equal to the plain
AP whenever no two scores are equal.

For a tie group of ``m`` items holding ``p`` positives, with ``s`` items and ``c`` positives ranked above
it, the item in group position ``i`` (1-based) contributes in expectation::

    (p / m) * (c + 1 + (i - 1) * (p - 1) / (m - 1)) / (s + i)        (the middle term is 0 when m == 1)

since it is positive with probability p/m and, given that, each of the other p - 1 positives sits among the
i - 1 positions before it with probability (i - 1) / (m - 1).
"""

from __future__ import annotations

import numpy as np


def precision_sums(
    scores: np.ndarray, labels: np.ndarray, segments: np.ndarray | None = None, num_segments: int = 1
) -> np.ndarray:
    """Per segment, the expected sum over ranks of ``label * precision at that rank`` (ties averaged).

    ``scores`` must be sorted descending within each segment and ``segments`` (ids in
    ``0 .. num_segments - 1``) must be contiguous; ``segments=None`` means one list. Divide by the number of
    positives to get the average precision.
    """
    out = np.zeros(num_segments, dtype=np.float64)
    n = scores.size
    if n == 0:
        return out
    labels = labels.astype(bool, copy=False)
    group_start = np.empty(n, dtype=bool)
    group_start[0] = True
    np.not_equal(scores[1:], scores[:-1], out=group_start[1:])
    if segments is not None:
        segment_start = np.empty(n, dtype=bool)
        segment_start[0] = True
        np.not_equal(segments[1:], segments[:-1], out=segment_start[1:])
        group_start |= segment_start
    starts = np.flatnonzero(group_start)
    del group_start
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = n
    cum = np.cumsum(labels, dtype=np.int64)  # positives up to and including each item
    above = cum[starts] - labels[starts]  # positives before each group (whole array)
    positives = cum[ends - 1] - above
    keep = positives > 0  # groups without a positive contribute nothing
    if not keep.any():
        return out
    starts, sizes, positives, above = starts[keep], (ends - starts)[keep], positives[keep], above[keep]
    if segments is None:
        first = np.zeros_like(starts)
        segment_of = None
    else:
        segment_firsts = np.flatnonzero(segment_start)
        first = segment_firsts[np.searchsorted(segment_firsts, starts, side="right") - 1]
        segment_of = segments[starts].astype(np.int64)
    ranked_above = (starts - first).astype(np.float64)  # items of the same segment ranked above the group
    positives_above = (above - (cum[first] - labels[first])).astype(np.float64)

    group_sums = _group_sums(sizes, positives, ranked_above, positives_above)
    if segment_of is None:
        out[0] = group_sums.sum()
    else:
        out += np.bincount(segment_of, weights=group_sums, minlength=num_segments)
    return out


def _group_sums(
    sizes: np.ndarray, positives: np.ndarray, ranked_above: np.ndarray, positives_above: np.ndarray
) -> np.ndarray:
    """Expected sum of precision over the positives of each tie group (formula in the module docstring)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    out = (np.asarray(positives_above, dtype=np.float64) + 1) / (
        np.asarray(ranked_above, dtype=np.float64) + 1
    )
    tied = np.flatnonzero(sizes > 1)  # singletons (one positive item) are done: (c + 1) / (s + 1)
    if tied.size:
        m_t = sizes[tied]
        offsets = np.cumsum(m_t) - m_t
        position = np.arange(1, int(m_t.sum()) + 1, dtype=np.float64) - np.repeat(offsets, m_t)  # 1-based
        m = np.repeat(m_t.astype(np.float64), m_t)
        p = np.repeat(np.asarray(positives, dtype=np.float64)[tied], m_t)
        c = np.repeat(np.asarray(positives_above, dtype=np.float64)[tied], m_t)
        s = np.repeat(np.asarray(ranked_above, dtype=np.float64)[tied], m_t)
        value = (p / m) * (c + 1 + (position - 1) * (p - 1) / (m - 1)) / (s + position)
        out[tied] = np.add.reduceat(value, offsets)
    return out


def _sorted_group_sums(
    all_sorted: np.ndarray, pos_sorted: np.ndarray, segment_shift: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Tie-group sums from the ascending keys (a larger key ranks higher) of every item and of the positives.

    Returns the key of each tie group that holds positives and its expected precision sum. With
    ``segment_shift`` the bits above it name a segment (a class), ranked separately.
    """
    n_pos = pos_sorted.size
    if n_pos == 0:
        return pos_sorted, np.zeros(0)
    new = np.empty(n_pos, dtype=bool)
    new[0] = True
    np.not_equal(pos_sorted[1:], pos_sorted[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    keys = pos_sorted[starts]
    positives = np.diff(np.append(starts, n_pos))
    lo = np.searchsorted(all_sorted, keys, side="left")
    hi = np.searchsorted(all_sorted, keys, side="right")
    if segment_shift is None:
        all_end, pos_end = all_sorted.size, n_pos
    else:
        shift = np.uint64(segment_shift)
        bound = ((keys >> shift) + np.uint64(1)) << shift  # the first key of the next segment
        all_end = np.searchsorted(all_sorted, bound, side="left")
        pos_end = np.searchsorted(pos_sorted, bound, side="left")
    return keys, _group_sums(hi - lo, positives, all_end - hi, pos_end - (starts + positives))


def _sortable(scores: np.ndarray) -> np.ndarray:
    """float32 -> uint32 with the same order (no NaN; -0.0 is made +0.0 first so it ties with 0.0)."""
    bits = (scores + np.float32(0.0)).view(np.uint32)
    return np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))


def pooled_average_precision(
    scores: np.ndarray, classes: np.ndarray, labels: np.ndarray, positives: np.ndarray
) -> tuple[float, np.ndarray]:
    """GAP and per-class AP of pooled (class, score, label) triplets.

    ``positives[c]`` is class c's number of positive labels in the whole data (also those that never reached
    a top-k list): the per-class denominator; their sum is the GAP denominator. Per-class AP is NaN for a
    class without positives. GAP is 0 when there are no positives (as in the reference).
    """
    num_classes = positives.size
    ap = np.full(num_classes, np.nan)
    has = positives > 0
    total = int(positives.sum())
    if scores.size == 0 or total == 0:
        ap[has] = 0.0
        return 0.0, ap
    if scores.dtype == np.float32:
        gap_sum, sums = _pooled_sums_float32(scores, classes, labels.astype(bool, copy=False), num_classes)
    else:
        order = np.argsort(scores)[::-1]  # descending; equal scores are adjacent, their order does not matter
        scores, classes, labels = scores[order], classes[order], labels[order]
        del order
        gap_sum = precision_sums(scores, labels)[0]
        by_class = np.argsort(classes, kind="stable")  # keeps the score order inside each class (radix sort)
        sums = precision_sums(scores[by_class], labels[by_class], classes[by_class], num_classes)
    ap[has] = sums[has] / positives[has]
    return float(gap_sum / total), ap


def _pooled_sums_float32(
    scores: np.ndarray, classes: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[float, np.ndarray]:
    """GAP and per-class precision sums for float32 scores with value sorts only (no argsort).

    Scores become order-preserving uint32 keys; the per-class ranking sorts ``class << 32 | key``. Each tie
    group holding positives is found by binary search in the sorted keys of every item.
    """
    keys = _sortable(scores)
    gap_sum = float(_sorted_group_sums(np.sort(keys), np.sort(keys[labels]))[1].sum())
    keys = (classes.astype(np.uint64) << np.uint64(32)) | keys
    group_keys, group_sums = _sorted_group_sums(np.sort(keys), np.sort(keys[labels]), segment_shift=32)
    sums = np.bincount(
        (group_keys >> np.uint64(32)).astype(np.int64), weights=group_sums, minlength=num_classes
    )
    return gap_sum, sums
