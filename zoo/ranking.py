"""Ranking scores: the top k classes of each row of a score matrix, and one prediction's classes in rank order.

A library for the engine and for plugins (metrics and prediction formats rank with it); numpy only. Ties are
broken by class index, lowest first, as ``np.argmax`` does, so a ranking never depends on how the work was
split.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from zoo.contracts import Prediction


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best classes of each row of ``scores`` [B, C] and their scores, both [B, min(k, C)].

    Rows are ordered by score (highest first); equal scores are ordered by class index (lowest first), as
    ``np.argmax`` breaks ties, so the result never depends on how the work was split. A NaN score is an
    error (it has no place in a ranking). Non-float scores are ranked as float64.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"top_k expects scores of shape [batch, classes], got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"top_k: k must be at least 1, got {k}")
    scores = np.ascontiguousarray(scores, dtype=None if scores.dtype.kind == "f" else np.float64)
    batch, num_classes = scores.shape
    k = min(k, num_classes)
    if batch == 0 or num_classes == 0:
        return np.zeros((batch, k), dtype=np.int64), np.zeros((batch, k), dtype=scores.dtype)
    blocks = _block_count(num_classes, k) if scores.dtype == np.float32 else None
    if blocks is not None and batch < 2**31 // num_classes and batch < 2 ** (32 - num_classes.bit_length()):
        index = _top_k_blocked(scores, k, blocks)
        return index, scores.reshape(-1)[index + (np.arange(batch) * num_classes)[:, None]]
    index = _top_k_partition(scores, k)
    index.sort(axis=1)  # then a stable sort by score leaves equal scores in class order
    values = scores.reshape(-1)[index + (np.arange(batch) * num_classes)[:, None]]
    order = np.argsort(-values, axis=1, kind="stable")
    order += (np.arange(batch) * k)[:, None]
    return index.reshape(-1)[order], values.reshape(-1)[order]


def _nan_error(scores: np.ndarray) -> ValueError:
    row = int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])
    return ValueError(f"top_k: row {row} has a NaN score; check the model output")


def _stable_rows(scores: np.ndarray, index: np.ndarray, rows: np.ndarray, k: int) -> None:
    """Redo ``rows`` with a stable sort: among equal scores the lowest class indices win."""
    if rows.size:
        index[rows] = np.argsort(-scores[rows], axis=1, kind="stable")[:, :k]


def _top_k_partition(scores: np.ndarray, k: int) -> np.ndarray:
    """Unordered top-k column indices via one argpartition per row (small class counts)."""
    num_classes = scores.shape[1]
    if k == num_classes:
        if np.isnan(scores).any():
            raise _nan_error(scores)
        return np.argsort(-scores, axis=1, kind="stable")
    index = np.argpartition(scores, num_classes - k, axis=1)[:, num_classes - k :]
    values = np.take_along_axis(scores, index, axis=1)
    if np.isnan(values).any():  # argpartition ranks NaN above every number, so any NaN shows up here
        raise _nan_error(scores)
    kth = values.min(axis=1)
    # argpartition picks arbitrarily among scores equal to the k-th: where such a tie straddles the boundary
    _stable_rows(scores, index, np.flatnonzero(np.count_nonzero(scores >= kth[:, None], axis=1) > k), k)
    return index


@functools.lru_cache(maxsize=64)
def _block_count(num_classes: int, k: int) -> int | None:
    """Blocks for :func:`_top_k_blocked`: about sqrt(k * classes), which keeps both the per-row sort of the
    block maxima and the number of candidates small; None when a plain partition is as good (few classes
    per wanted entry) or the sort keys would not fit 64 bits."""
    if num_classes < 8 * k or num_classes > 2**20:
        return None
    return max(2 * k, min(num_classes // 2, round(math.sqrt(k * num_classes))))


def _top_k_blocked(scores: np.ndarray, k: int, blocks: int) -> np.ndarray:
    """Top-k column indices of float32 scores, in final order, without sorting every class.

    Column c < blocks * size belongs to block ``c % blocks``. With ``th`` the k-th highest block maximum,
    the k-th best score of the row is at least ``th`` (the k block maxima are k distinct scores), so the top
    k -- and every score tied with its last entry -- is among the scores >= th: usually ~k per row. Those
    few are found through the comparison mask read 8 flags at a time, and ranked by one sort of 64-bit keys
    ``row | score bits | inverted class``, which puts equal scores in class order. Only value sorts run
    (several times faster than index sorts in numpy).
    """
    batch, num_classes = scores.shape
    size = num_classes // blocks
    main = blocks * size
    block_max = scores[:, :main].reshape(batch, size, blocks).max(axis=1)
    if np.isnan(block_max).any() or (main < num_classes and np.isnan(scores[:, main:]).any()):
        raise _nan_error(scores)
    th = np.sort(block_max, axis=1)[:, blocks - k]  # a value sort beats a partition here
    mask = (scores >= th[:, None]).reshape(-1)
    whole = mask.size & ~7
    words = np.flatnonzero(mask[:whole].view(np.uint64))  # words holding at least one candidate
    pos = (words[:, None] * 8 + np.arange(8)).reshape(-1)
    pos = pos[mask[pos]]
    if whole < mask.size:
        pos = np.concatenate([pos, whole + np.flatnonzero(mask[whole:])])
    row_of = pos // num_classes
    col = pos - row_of * num_classes
    values = scores.reshape(-1)[pos]
    class_bits = max(1, int(num_classes - 1).bit_length())
    bits = (values + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
    bits ^= (-(bits >> np.uint32(31))) | np.uint32(0x80000000)  # order-preserving float -> uint
    low = np.uint64((1 << class_bits) - 1)
    keys = (
        (row_of.astype(np.uint64) << np.uint64(32 + class_bits))
        | (bits.astype(np.uint64) << np.uint64(class_bits))
        | (low - col.astype(np.uint64))
    )
    keys.sort()
    ends = np.cumsum(np.bincount(row_of, minlength=batch))  # every row has at least k candidates
    best_keys = keys[ends[:, None] - 1 - np.arange(k)]
    return (low - (best_keys & low)).astype(np.int64)


def sorted_row(row: Prediction, k: int | None = None) -> tuple[list[int], list[float]]:
    """A row's classes and scores best first (equal scores: lowest class first), the first ``k`` only."""
    if len(row.classes) != len(row.scores):
        raise ValueError(
            f"prediction for {row.id!r}: {len(row.classes)} classes but {len(row.scores)} scores"
        )
    order = sorted(range(len(row.classes)), key=lambda i: (-float(row.scores[i]), int(row.classes[i])))
    if k is not None:
        order = order[:k]
    return [int(row.classes[i]) for i in order], [float(row.scores[i]) for i in order]
