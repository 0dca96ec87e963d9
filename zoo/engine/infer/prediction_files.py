"""Prediction files read and written column-wise: whole files as arrays, not one Python object per row.

``zoo ensemble`` and the distillation teacher store read several files of a million videos each; parsing them
line by line in Python costs ~35 s per million videos and file. Here a file becomes
:class:`PredictionColumns` (ids, ``[N, k]`` int32 classes, ``[N, k]`` scores) through the C parser of
``zoo/engine/infer/_predio.c``, and arrays are written back through its formatter, byte for byte as the Python
writers. The C parser takes the plain spelling of each format; any other line (non-ASCII text, JSON escapes,
an error...) is handed to the format's Python line parser, so results and error messages are those of the
Python readers. Without the C module (not built, or ``ZOO_FAST_PREDICTIONS=0``) every line goes that way.
"""

from __future__ import annotations

import json
import locale
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.atomic import atomic_path
from zoo.contracts import Prediction
from zoo.errors import DataError

try:
    from zoo.engine.infer import _predio as FAST
except ImportError:  # built without a C compiler: the Python line parsers do all the work
    FAST = None
if os.environ.get("ZOO_FAST_PREDICTIONS") == "0":
    FAST = None

CHUNK_BYTES = 16 << 20
"""Bytes read (and parsed) at a time."""
WRITE_ROWS = 65536
"""Rows formatted at a time."""
INT32_MAX = 2**31 - 1

LineParser = Callable[[int, str], "tuple[str, list[int], list[float]]"]
"""``(line number, line text) -> (video id, classes, scores)`` for a non-blank line; raises DataError."""


@dataclass
class PredictionColumns:
    """A prediction file as arrays, rows in file order: ``ids`` (bytes, ``S``), ``classes`` int32 ``[N, k]``
    padded with -1, ``scores`` ``[N, k]`` padded with 0 and ``lines`` (each row's line number; None for
    arrays that did not come from a file)."""

    ids: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    lines: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def where(self, row: int) -> str:
        return f"line {int(self.lines[row])}" if self.lines is not None else f"row {row + 1}"

    def check_unique(self, path: str | os.PathLike) -> np.ndarray | None:
        """The row order that sorts the ids (None: already sorted); a video listed twice is an error naming
        both lines."""
        if len(self.ids) < 2 or bool((self.ids[1:] > self.ids[:-1]).all()):
            return None
        order = np.argsort(self.ids, kind="stable")
        ids = self.ids[order]
        dup = np.flatnonzero(ids[1:] == ids[:-1])
        if dup.size:
            first, again = int(order[dup[0]]), int(order[dup[0] + 1])
            raise DataError(
                f"{path}: {self.where(again)}: video {_show(self.ids[again])} is listed again (first on "
                f"{self.where(first)}); keep one row per video"
            )
        return order

    def check_classes(self, path: str | os.PathLike, num_classes: int) -> None:
        """Every listed class lies in ``0 .. num_classes - 1``; the error names the first bad line."""
        bad = np.flatnonzero((self.classes >= num_classes).any(axis=1))
        if bad.size:
            row = int(bad[0])
            cls = int(self.classes[row][self.classes[row] >= num_classes][0])
            raise DataError(
                f"{path}: {self.where(row)}: video {_show(self.ids[row])}: class {cls} is out of range; the "
                f"dataset has {num_classes} classes (0 .. {num_classes - 1}); pass the right --num-classes"
            )

    def predictions(self) -> Iterator[Prediction]:
        for vid, c, s in zip(self.ids, self.classes, self.scores):
            keep = c >= 0
            yield Prediction(vid.decode("utf-8"), c[keep].tolist(), s[keep].astype(float).tolist())


def _show(vid: bytes) -> str:
    return repr(vid.decode("utf-8", "replace"))


# -- reading ------------------------------------------------------------------------------------------------


def read_columns(
    path: str | os.PathLike,
    parse_line: LineParser,
    fast: Callable | None,
    *,
    start: int = 0,
    line_no: int = 0,
    rank: bool = True,
    dtype: type = np.float32,
) -> PredictionColumns:
    """The rows of ``path`` from byte ``start`` (after ``line_no`` lines), each ranked best first (score
    descending, then class ascending) when ``rank``. ``fast`` is the C parser of the format (None: Python
    only); ``parse_line`` parses the lines it leaves, and raises the errors."""
    path = Path(path)
    chunks = _Chunks()
    fast = fast if FAST is not None else None
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot open the prediction file: {exc.strerror or exc}") from exc
    with f:
        f.seek(start)
        pending = b""
        while True:
            block = f.read(CHUNK_BYTES)
            buf = pending + block if pending else block
            if block:
                end = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
                cut = max(buf.rfind(b"\n", 0, end), buf.rfind(b"\r", 0, end)) + 1
                if cut == 0:
                    pending = buf
                    continue
            else:
                cut = len(buf)
            line_no = _parse_block(path, buf, cut, line_no, parse_line, fast, rank, chunks)
            pending = buf[cut:]
            if not block:
                break
    return chunks.columns(dtype)


def _parse_block(
    path: Path,
    buf: bytes,
    cut: int,
    line_no: int,
    parse_line: LineParser,
    fast: Callable | None,
    rank: bool,
    chunks: _Chunks,
) -> int:
    view = memoryview(buf)[:cut]
    pos = 0
    while pos < cut:
        if fast is not None:
            pos, line_no, stopped, *arrays = fast(view, pos, line_no, rank)
            chunks.add_fast(*arrays)
            if not stopped:
                break
        end = _line_end(buf, pos, cut)
        line_no += 1
        raw = bytes(buf[pos:end])
        pos = end + 2 if buf.startswith(b"\r\n", end) else end + 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: line {line_no}: not valid UTF-8 ({exc.reason})") from None
        if text.strip():
            vid, classes, scores = parse_line(line_no, text)
            chunks.add_row(path, line_no, vid, classes, scores, rank)
    return line_no


def _line_end(buf: bytes, pos: int, cut: int) -> int:
    ends = [i for i in (buf.find(b"\n", pos, cut), buf.find(b"\r", pos, cut)) if i >= 0]
    return min(ends) if ends else cut


class _Chunks:
    """The parsed pieces of a file (flat pairs, row after row), joined into padded arrays at the end."""

    def __init__(self) -> None:
        self.ids: list[bytes] = []
        self.id_len: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.lines: list[np.ndarray] = []
        self.classes: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []

    def add_fast(self, ids: bytes, id_len: bytes, counts: bytes, lines: bytes, classes: bytes, scores: bytes):
        if counts:
            self.ids.append(ids)
            self.id_len.append(np.frombuffer(id_len, np.int32))
            self.counts.append(np.frombuffer(counts, np.int32))
            self.lines.append(np.frombuffer(lines, np.int64))
            self.classes.append(np.frombuffer(classes, np.int32))
            self.scores.append(np.frombuffer(scores, np.float64))

    def add_row(
        self, path: Path, line_no: int, vid: str, classes: list[int], scores: list[float], rank: bool
    ) -> None:
        big = [c for c in classes if c > INT32_MAX]
        if big:
            raise DataError(
                f"{path}: line {line_no}: video {vid!r}: class {big[0]} is out of range (class indices "
                f"are below 2**31)"
            )
        if rank:
            order = sorted(range(len(classes)), key=lambda i: (-scores[i], classes[i]))
            classes, scores = [classes[i] for i in order], [scores[i] for i in order]
        raw = vid.encode("utf-8")
        self.add_fast(
            raw,
            np.array([len(raw)], np.int32).tobytes(),
            np.array([len(classes)], np.int32).tobytes(),
            np.array([line_no], np.int64).tobytes(),
            np.array(classes, np.int32).tobytes(),
            np.array(scores, np.float64).tobytes(),
        )

    def columns(self, dtype: type) -> PredictionColumns:
        """The padded arrays, filled piece by piece (each piece freed once copied: no joined flat copy)."""
        n = sum(len(c) for c in self.counts)
        k = max([1, *(int(c.max()) for c in self.counts if len(c))])
        width = max([1, *(int(w.max()) for w in self.id_len if len(w))])
        classes = np.full((n, k), -1, dtype=np.int32)
        scores = np.zeros((n, k), dtype=dtype)
        ids = np.zeros((n, width), dtype=np.uint8)
        lo = 0
        for i, counts in enumerate(self.counts):
            hi = lo + len(counts)
            take = np.arange(k, dtype=np.int32) < counts[:, None]
            classes[lo:hi][take] = self.classes[i]
            scores[lo:hi][take] = self.scores[i]
            ids[lo:hi][np.arange(width) < self.id_len[i][:, None]] = np.frombuffer(self.ids[i], np.uint8)
            self.classes[i] = self.scores[i] = self.ids[i] = None  # type: ignore[call-overload]
            lo = hi
        return PredictionColumns(
            ids.view(f"S{width}").reshape(n), classes, scores, _join(self.lines, np.int64)
        )


def _join(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


# -- writing ------------------------------------------------------------------------------------------------


def ranked(columns: PredictionColumns) -> tuple[np.ndarray, np.ndarray]:
    """``classes, scores`` (float32) with every row best first (score descending, then class ascending) and
    padding last, as the Python writers order a row; rows already in that order are not touched."""
    classes, scores = columns.classes, np.asarray(columns.scores, dtype=np.float32)
    listed = classes >= 0
    a, b = scores[:, :-1], scores[:, 1:]
    ok = (listed[:, :-1] | ~listed[:, 1:]) & (
        ~listed[:, 1:] | (a > b) | ((a == b) & (classes[:, :-1] < classes[:, 1:]))
    )
    bad = np.flatnonzero(~ok.all(axis=1))
    if bad.size:
        classes, scores = classes.copy(), scores.copy()
        sub_c, sub_s, sub_l = classes[bad], scores[bad], listed[bad]
        order = np.lexsort((sub_c, -sub_s.astype(np.float64), ~sub_l), axis=-1)
        classes[bad] = np.take_along_axis(sub_c, order, axis=1)
        scores[bad] = np.take_along_axis(sub_s, order, axis=1)
    return np.ascontiguousarray(classes, dtype=np.int32), np.ascontiguousarray(scores, dtype=np.float32)


def fast_writes() -> bool:
    """The C formatter is there, and ``%g`` writes a decimal point (the C locale's numbers, as Python's)."""
    return FAST is not None and locale.localeconv()["decimal_point"] == "."


def write_rows(
    path: str | os.PathLike,
    columns: PredictionColumns,
    formatter: Callable[..., bytes],
    *,
    header: bytes = b"",
    ids: np.ndarray | None = None,
    extra: tuple = (),
) -> int:
    """Write ``header`` then every row through the C ``formatter``, atomically; returns the row count."""
    classes, scores = ranked(columns)
    ids = np.ascontiguousarray(columns.ids if ids is None else ids)
    n, k = classes.shape
    width = ids.dtype.itemsize
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header)
        for lo in range(0, n, WRITE_ROWS):
            hi = min(n, lo + WRITE_ROWS)
            f.write(formatter(ids[lo:hi], width, classes[lo:hi], scores[lo:hi], hi - lo, k, *extra))
    return n


def id_bytes(ids: np.ndarray) -> np.ndarray:
    """The ids as a ``[N, width]`` uint8 view (NUL padded)."""
    ids = np.ascontiguousarray(ids)
    return ids.view(np.uint8).reshape(len(ids), ids.dtype.itemsize)


def write_jsonl_columns(
    path: str | os.PathLike, columns: PredictionColumns, class_names: Mapping[int, str] | None = None
) -> int:
    """:func:`zoo.engine.infer.predictions.write_jsonl` for arrays through the C formatter (check
    :func:`fast_writes` first): the same bytes, atomic."""
    raw = id_bytes(columns.ids)
    ids = columns.ids
    nul = raw == 0
    interior_nul = (nul[:, :-1] & ~nul[:, 1:]).any()
    if interior_nul or ((raw < 0x20) & ~nul | (raw == ord('"')) | (raw == ord("\\"))).any():
        escaped = [json.dumps(v.decode("utf-8"), ensure_ascii=False)[1:-1].encode("utf-8") for v in ids]
        ids = np.array(escaped, dtype=f"S{max(1, max(map(len, escaped), default=1))}")
    names = None
    if class_names is not None:
        top = max(int(columns.classes.max(initial=0)), max(class_names, default=0))
        names = [
            json.dumps(class_names.get(c, ""), ensure_ascii=False).encode("utf-8") for c in range(top + 1)
        ]
    return write_rows(path, columns, FAST.format_jsonl, ids=ids, extra=(names,))
