"""Predictions, format-independent: top-k selection, the JSON lines format and class names.

``zoo predict`` ranks each video's scores with :func:`top_k` and writes every format of
``predict.formats`` (plugins add formats through ``zoo_register_formats``; the engine registers ``jsonl``).
Every write is atomic; every reading error names the file, the line and what is wrong.
"""

from __future__ import annotations

import csv
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
from zoo.engine.infer.prediction_files import (
    PredictionColumns,
    fast_writes,
    parse_jsonl_block,
    read_columns,
    write_jsonl_columns,
)
from zoo.errors import DataError
from zoo.ranking import sorted_row

CLASS_NAME_COLUMNS = ("Index", "Name")


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
    """A JSON lines prediction file as arrays (:mod:`zoo.engine.infer.prediction_files`): the rows of
    :func:`read_jsonl`, each ranked best first when ``rank``; the same errors."""
    path = Path(path)

    def parse_line(line_no: int, text: str) -> tuple[str, list[int], list[float]]:
        row = _jsonl_row(path, line_no, text)
        return row.id, row.classes, row.scores

    return read_columns(path, parse_line, parse_jsonl_block, rank=rank, dtype=dtype, num_classes=num_classes)


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
