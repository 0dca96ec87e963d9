"""Predictions, format-independent: top-k selection, the JSON lines format and class names.

``zoo predict`` ranks each video's scores with :func:`top_k` and writes every format of
``predict.formats`` (plugins add formats through ``zoo_register_formats``; the engine registers ``jsonl``).
Every write is atomic; every reading error names the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.atomic import atomic_path
from zoo.contracts import Prediction
from zoo.engine.prediction_io import (
    FAST,
    PredictionColumns,
    fast_writes,
    read_columns,
    write_jsonl_columns,
)
from zoo.errors import DataError

CLASS_NAME_COLUMNS = ("Index", "Name")


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


def write_jsonl(
    path: str | os.PathLike,
    rows: Iterable[Prediction],
    *,
    vocabulary: Mapping[int, str] | None = None,
    top_k: int | None = None,
) -> int:
    """One JSON object per video: ``{"id", "classes", "scores"}`` (+ ``"names"`` with class names), atomic.

    Classes are listed best first; a class missing from the names is named ``""``.
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            classes, scores = sorted_row(row, top_k)
            record: dict[str, object] = {"id": str(row.id), "classes": classes, "scores": scores}
            if vocabulary is not None:
                record["names"] = [vocabulary.get(c, "") for c in classes]
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> Iterator[Prediction]:
    """The predictions of a JSON lines file written by :func:`write_jsonl`; errors name the file and line."""
    path = Path(path)
    try:
        f = open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot open the prediction file: {exc.strerror or exc}") from exc
    with f:
        line_no = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: after line {line_no}: not valid UTF-8 ({exc.reason})") from exc
            if not line:
                return
            line_no += 1
            if line.strip():
                yield _jsonl_row(path, line_no, line)


def _jsonl_row(path: Path, line_no: int, line: str) -> Prediction:
    where = f"{path}: line {line_no}"
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise DataError(f"{where}: not a JSON object ({exc})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object with id, classes and scores")
    vid, classes, scores = record.get("id"), record.get("classes"), record.get("scores")
    if not isinstance(vid, str) or not vid:
        raise DataError(f"{where}: 'id' must be a non-empty string, found {str(vid)[:40]!r}")
    if not isinstance(classes, list) or not all(type(c) is int and c >= 0 for c in classes):
        raise DataError(f"{where}: video {vid!r}: 'classes' must be a list of non-negative integers")
    if not isinstance(scores, list) or not all(type(s) in (int, float) and math.isfinite(s) for s in scores):
        raise DataError(f"{where}: video {vid!r}: 'scores' must be a list of finite numbers")
    if len(classes) != len(scores):
        raise DataError(f"{where}: video {vid!r}: {len(classes)} classes but {len(scores)} scores")
    if len(set(classes)) != len(classes):
        dup = next(c for i, c in enumerate(classes) if c in classes[:i])
        raise DataError(f"{where}: video {vid!r}: class {dup} is listed twice; list each class once")
    return Prediction(vid, list(classes), [float(s) for s in scores])


class JsonLinesFormat:
    """``predictions.jsonl``: one JSON object per video, with class names when they are known."""

    name = "jsonl"
    suffix = ".jsonl"

    @dataclass
    class Config:
        pass

    def __init__(self, config: Config | None = None) -> None:
        self.config = config

    def write(self, path: Path, predictions: list[Prediction], class_names: dict[int, str] | None) -> None:
        write_jsonl(path, predictions, vocabulary=class_names)

    def read(self, path: Path) -> Iterator[Prediction]:
        return read_jsonl(path)

    def read_columns(
        self, path: Path, *, rank: bool = True, dtype: type = np.float32, num_classes: int | None = None
    ) -> PredictionColumns:
        return read_jsonl_columns(path, rank=rank, dtype=dtype, num_classes=num_classes)

    def write_columns(
        self, path: Path, columns: PredictionColumns, class_names: dict[int, str] | None
    ) -> None:
        if fast_writes():
            write_jsonl_columns(path, columns, class_names)
        else:
            write_jsonl(path, columns.predictions(), vocabulary=class_names)


def read_jsonl_columns(
    path: str | os.PathLike, *, rank: bool = True, dtype: type = np.float32, num_classes: int | None = None
) -> PredictionColumns:
    """A JSON lines prediction file as arrays (:mod:`zoo.engine.prediction_io`): the rows of
    :func:`read_jsonl`, each ranked best first when ``rank``; the same errors."""
    path = Path(path)

    def parse_line(line_no: int, text: str) -> tuple[str, list[int], list[float]]:
        row = _jsonl_row(path, line_no, text)
        return row.id, row.classes, row.scores

    return read_columns(
        path, parse_line, FAST and FAST.parse_jsonl, rank=rank, dtype=dtype, num_classes=num_classes
    )


def load_class_names(path: str | os.PathLike) -> dict[int, str]:
    """``{class index: name}`` from a class-names CSV with columns ``Index`` and ``Name`` (other columns,
    such as those of YouTube-8M's ``vocabulary.csv``, are ignored).

    Raises :class:`DataError` naming the file, line and column for a missing column, an index that is not a
    non-negative integer, or an index listed twice.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the class names: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: the class names are not UTF-8 text ({exc.reason})") from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise DataError(
            f"{path}: the class-names CSV is empty; expected a header with columns Index and Name"
        )
    columns = [h.strip() for h in header]
    missing = [c for c in CLASS_NAME_COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"{path}: line 1: the header has no column {', '.join(missing)} (found "
            f"{', '.join(columns) or 'nothing'}); expected a CSV with columns Index and Name"
        )
    i_index, i_name = columns.index("Index"), columns.index("Name")
    vocabulary: dict[int, str] = {}
    for row in reader:
        line_no = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) <= max(i_index, i_name):
            raise DataError(
                f"{path}: line {line_no}: {len(row)} columns, expected at least "
                f"{max(i_index, i_name) + 1} (Index is column {i_index + 1}, Name column {i_name + 1})"
            )
        raw = row[i_index].strip()
        if not (raw.isascii() and raw.isdigit()):
            raise DataError(f"{path}: line {line_no}: column Index: {raw!r} is not a non-negative integer")
        index = int(raw)
        if index in vocabulary:
            raise DataError(f"{path}: line {line_no}: column Index: class {index} is listed twice")
        vocabulary[index] = row[i_name].strip()
    return vocabulary
