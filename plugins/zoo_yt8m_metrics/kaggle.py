"""The Kaggle prediction format of the YouTube-8M challenges (``VideoId,LabelConfidencePairs``).

Registered as the prediction format ``kaggle-csv``; ``zoo score`` reads it. Scores are written as the shortest
text of their float32 value (numpy's ``str(np.float32(x))``): exact for float32 probabilities, so reading a file
back gives the same ranking (and the same GAP) as the scores it was written from. Reading errors name the
file, the line and what is wrong, so a bad submission is fixed in one go. Class names come from YouTube-8M's
``vocabulary.csv``, read with the engine's class-names loader
(:func:`zoo.engine.infer.predictions.load_class_names`). Whole files are read and written column-wise
(:func:`read_kaggle_columns`, :func:`write_kaggle_columns`: polars through
:mod:`zoo.engine.infer.prediction_files`, this module's row parser for the blocks it leaves), with the same
rows, bytes and errors as the row-by-row functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.atomic import atomic_path
from zoo.contracts import Prediction
from zoo.engine.infer import prediction_files as prediction_io
from zoo.engine.infer.prediction_files import PredictionColumns
from zoo.errors import DataError
from zoo.ranking import sorted_row

KAGGLE_HEADER = ("VideoId", "LabelConfidencePairs")


def format_pairs(classes: Iterable[int], scores: Iterable[float]) -> str:
    """``label score label score ...``, each score the shortest text of its float32 (round-trips exactly)."""
    texts = prediction_io.float32_texts(np.asarray(list(scores), dtype=np.float64))
    return " ".join(f"{int(c)} {t}" for c, t in zip(classes, texts))


def write_kaggle_csv(path: str | os.PathLike, rows: Iterable[Prediction], *, top_k: int | None = None) -> int:
    """Write a Kaggle submission (header ``VideoId,LabelConfidencePairs``) atomically; returns the row count.

    Each row lists its classes by score, highest first (the file format requires it); ``top_k`` keeps only
    the first k. A video id containing a comma or a line break cannot be written (the format has no quoting).
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(KAGGLE_HEADER) + "\n")
        for row in rows:
            vid = str(row.id)
            if not vid or any(ch in vid for ch in ",\r\n"):
                raise ValueError(
                    f"video id {vid!r} cannot be written to a Kaggle CSV (empty, or has , or newline)"
                )
            classes, scores = sorted_row(row, top_k)
            f.write(f"{vid},{format_pairs(classes, scores)}\n")
            count += 1
    return count


def iter_kaggle_csv(path: str | os.PathLike) -> Iterator[tuple[int, str, list[int], list[float]]]:
    """Yield ``(line number, video id, classes, scores)`` per row of a Kaggle CSV, checking each row.

    Raises :class:`DataError` naming the file and line for a missing or wrong header, a row without
    exactly one comma, an empty id, an odd number of tokens, a label that is not a non-negative integer,
    a score that is not a finite number, or a class listed twice in one row. Duplicate ids are the
    caller's to check (:func:`read_kaggle_csv` does).
    """
    path = Path(path)
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DataError(f"{path}: cannot open the prediction file: {exc.strerror or exc}") from exc
    with f:
        try:
            header = f.readline()
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not a UTF-8 text file ({exc.reason}); expected a Kaggle CSV") from exc
        fields = tuple(h.strip() for h in header.strip().split(","))
        if fields != KAGGLE_HEADER:
            raise DataError(
                f"{path}: line 1: expected the header {','.join(KAGGLE_HEADER)!r}, found {header.strip()[:80]!r}; "
                f"a Kaggle prediction file starts with that line"
            )
        line_no = 1
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: after line {line_no}: not valid UTF-8 ({exc.reason})") from exc
            if not line:
                return
            line_no += 1
            text = line.strip()
            if not text:
                continue
            yield (line_no, *_parse_row(path, line_no, text))


def _parse_row(
    path: Path, line_no: int, text: str, num_classes: int | None = None
) -> tuple[str, list[int], list[float]]:
    where = f"{path}: line {line_no}"
    parts = text.split(",")
    if len(parts) != 2:
        raise DataError(
            f"{where}: expected 'VideoId,label score label score ...' (one comma), found "
            f"{len(parts) - 1} commas in {text[:80]!r}"
        )
    vid, pairs = parts[0].strip(), parts[1].split()
    if not vid:
        raise DataError(f"{where}: the VideoId is empty")
    if len(pairs) % 2:
        raise DataError(
            f"{where}: video {vid!r}: {len(pairs)} tokens after the comma; expected label/score "
            f"pairs (an even number)"
        )
    classes: list[int] = []
    scores: list[float] = []
    for j in range(0, len(pairs), 2):
        label, score = pairs[j], pairs[j + 1]
        if not (label.isascii() and label.isdigit()):
            raise DataError(
                f"{where}: video {vid!r}: label {label!r} (pair {j // 2 + 1}) is not a non-negative "
                f"integer class index"
            )
        try:
            value = float(score)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(
                f"{where}: video {vid!r}: score {score!r} (pair {j // 2 + 1}) is not a finite number"
            )
        if num_classes is not None and int(label) >= num_classes:
            check_classes(path, line_no, vid, [int(label)], num_classes)
        classes.append(int(label))
        scores.append(value)
    if len(set(classes)) != len(classes):
        seen: set[int] = set()
        dup = next(c for c in classes if c in seen or seen.add(c))
        raise DataError(f"{where}: video {vid!r}: class {dup} is listed twice; list each class once")
    return vid, classes, scores


def read_kaggle_csv(
    path: str | os.PathLike, *, num_classes: int | None = None
) -> dict[str, list[tuple[int, float]]]:
    """``{video id: [(label, score), ...]}`` from a Kaggle CSV, in file order within each row.

    Errors (:class:`DataError`) name the file and line: malformed rows, duplicate ids (both lines), and, when
    ``num_classes`` is given, labels outside ``0 .. num_classes - 1``.
    """
    out: dict[str, list[tuple[int, float]]] = {}
    first_line: dict[str, int] = {}
    for line_no, vid, classes, scores in iter_kaggle_csv(path):
        if vid in out:
            raise DataError(
                f"{path}: line {line_no}: video {vid!r} is listed again (first on line "
                f"{first_line[vid]}); keep one row per video"
            )
        if num_classes is not None:
            check_classes(path, line_no, vid, classes, num_classes)
        first_line[vid] = line_no
        out[vid] = list(zip(classes, scores))
    return out


def check_classes(
    path: str | os.PathLike, line_no: int, vid: str, classes: list[int], num_classes: int
) -> None:
    """Every class of a row lies in ``0 .. num_classes - 1`` (a wrong class count is caught at the first row)."""
    bad = [c for c in classes if c >= num_classes]
    if bad:
        raise DataError(
            f"{path}: line {line_no}: video {vid!r}: class {bad[0]} is out of range; the dataset has "
            f"{num_classes} classes (0 .. {num_classes - 1}); pass the right --num-classes"
        )


class KaggleCsvFormat:
    """``predictions.csv``: the Kaggle submission format (no class names: the format has no place for them)."""

    name = "kaggle-csv"
    suffix = ".csv"

    @dataclass
    class Config:
        pass

    def __init__(self, config: Config | None = None) -> None:
        self.config = config

    def write(self, path: Path, predictions: list[Prediction], class_names: dict[int, str] | None) -> None:
        write_kaggle_csv(path, predictions)

    def read(self, path: Path) -> Iterator[Prediction]:
        for _line, vid, classes, scores in iter_kaggle_csv(path):
            yield Prediction(vid, classes, scores)

    def read_columns(
        self, path: Path, *, rank: bool = True, dtype: type = np.float32, num_classes: int | None = None
    ) -> PredictionColumns:
        return read_kaggle_columns(path, rank=rank, dtype=dtype, num_classes=num_classes)

    def write_columns(
        self, path: Path, columns: PredictionColumns, class_names: dict[int, str] | None
    ) -> None:
        write_kaggle_columns(path, columns)


def _header_end(path: Path) -> int:
    """The byte offset after the header line, checked as :func:`iter_kaggle_csv` checks it."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot open the prediction file: {exc.strerror or exc}") from exc
    with f:
        head = b""
        while True:
            block = f.read(1 << 16)
            head += block
            ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
            if ends or not block:
                break
    end = min(ends) if ends else len(head)
    try:
        header = head[:end].decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason}); expected a Kaggle CSV") from None
    if tuple(h.strip() for h in header.strip().split(",")) != KAGGLE_HEADER:
        raise DataError(
            f"{path}: line 1: expected the header {','.join(KAGGLE_HEADER)!r}, found {header.strip()[:80]!r}; "
            f"a Kaggle prediction file starts with that line"
        )
    return end + 2 if head.startswith(b"\r\n", end) else end + 1


def read_kaggle_columns(
    path: str | os.PathLike, *, rank: bool = True, dtype: type = np.float32, num_classes: int | None = None
) -> PredictionColumns:
    """A Kaggle CSV as arrays (:mod:`zoo.engine.infer.prediction_files`, through polars): the rows of :func:`iter_kaggle_csv`
    in file order, each ranked best first when ``rank`` (else in file order); the same errors. Duplicate ids
    and the class range are the caller's to check (``PredictionColumns.check_unique``, ``check_classes``)."""
    path = Path(path)

    def parse_line(line_no: int, text: str) -> tuple[str, list[int], list[float]]:
        return _parse_row(path, line_no, text.strip(), num_classes)

    return prediction_io.read_columns(
        path,
        parse_line,
        prediction_io.parse_kaggle_block,
        start=_header_end(path),
        line_no=1,
        rank=rank,
        dtype=dtype,
        num_classes=num_classes,
    )


def write_kaggle_columns(path: str | os.PathLike, columns: PredictionColumns) -> int:
    """:func:`write_kaggle_csv` for arrays: the same bytes (through polars where it is installed), atomic."""
    if not prediction_io.fast_writes():
        return write_kaggle_csv(path, columns.predictions())
    raw = prediction_io.id_bytes(columns.ids)
    bad = (raw == ord(",")) | (raw == ord("\r")) | (raw == ord("\n"))
    bad = bad.any(axis=1) | (raw == 0).all(axis=1)
    if bad.any():
        vid = columns.ids[int(np.flatnonzero(bad)[0])].decode("utf-8", "replace")
        raise ValueError(f"video id {vid!r} cannot be written to a Kaggle CSV (empty, or has , or newline)")
    header = (",".join(KAGGLE_HEADER) + "\n").encode()
    return prediction_io.write_kaggle_rows(path, columns, header)
