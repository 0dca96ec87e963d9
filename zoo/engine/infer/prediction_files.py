"""Prediction files read and written column-wise: whole files as arrays, not one Python object per row.

``zoo ensemble`` and the distillation teacher store read several files of a million videos each; parsing them
line by line in Python costs ~20 s per million videos and file. Here a file becomes :class:`PredictionColumns`
(ids, ``[N, k]`` int32 classes, ``[N, k]`` scores) block by block (``CHUNK_BYTES``) through polars' CSV and
NDJSON readers and its string kernels, and arrays are written back through polars' string kernels, byte for
byte as the Python writers. Polars takes the plain spelling of each format: a block with anything else in it
(non-ASCII text in a CSV, control characters, a lone CR, a key listed twice, any value polars' readers and the
format's rules disagree on, an error...) is handed, line by line, to the format's Python line parser, so the
results and error messages are those of the Python readers. Without polars (not installed, or
``ZOO_FAST_PREDICTIONS=0``) every line goes that way.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_path
from zoo.contracts import Prediction
from zoo.errors import DataError

_UNSET: Any = object()
FAST: Any = _UNSET
"""The polars module (imported on first use), or None: the Python line parsers and writers do all the work."""

CHUNK_BYTES = 16 << 20
"""Bytes read (and parsed) at a time."""
WRITE_ROWS = 1 << 15
"""Rows formatted at a time."""
INT32_MAX = 2**31 - 1

LineParser = Callable[[int, str], "tuple[str, list[int], list[float]]"]
"""``(line number, line text) -> (video id, classes, scores)`` for a non-blank line; raises DataError."""
BlockParser = Callable[[bytes], "_Block | None"]
"""A whole block of lines -> its non-blank rows (line numbers from 1), or None: let the line parser do it."""


def fast_library() -> Any:
    """polars, or None when it is not installed or ``ZOO_FAST_PREDICTIONS=0``."""
    global FAST
    if FAST is _UNSET:
        FAST = None
        if os.environ.get("ZOO_FAST_PREDICTIONS") != "0":
            try:
                import polars

                FAST = polars
            except ImportError:  # not installed: the Python line parsers do all the work
                pass
    return FAST


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


@dataclass
class _Block:
    """Rows of one block: ids (``S``), classes ``[n, k]`` (-1 padded), float64 scores ``[n, k]`` (0 padded),
    line numbers (from 1 within the block)."""

    ids: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    lines: np.ndarray


def read_columns(
    path: str | os.PathLike,
    parse_line: LineParser,
    fast: BlockParser | None,
    *,
    start: int = 0,
    line_no: int = 0,
    rank: bool = True,
    dtype: type = np.float32,
    num_classes: int | None = None,
) -> PredictionColumns:
    """The rows of ``path`` from byte ``start`` (after ``line_no`` lines), each ranked best first (score
    descending, then class ascending) when ``rank``. ``fast`` parses a whole block of the format through
    polars (None, or polars missing: Python only); ``parse_line`` parses the blocks it leaves, and raises the
    errors. ``num_classes``: a class outside ``0 .. num_classes - 1`` is an error as soon as its block is
    parsed (a row listing a million classes stops there, before the ``[rows, classes]`` arrays are made)."""
    path = Path(path)
    blocks: list[PredictionColumns] = []
    fast = fast if fast_library() is not None else None
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
            line_no = _parse_block(
                path, buf, cut, line_no, parse_line, fast, rank, dtype, blocks, num_classes
            )
            pending = buf[cut:]
            if not block:
                break
    return _join_blocks(blocks, dtype)


def _parse_block(
    path: Path,
    buf: bytes,
    cut: int,
    line_no: int,
    parse_line: LineParser,
    fast: BlockParser | None,
    rank: bool,
    dtype: type,
    blocks: list[PredictionColumns],
    num_classes: int | None = None,
) -> int:
    text = buf[:cut] if cut < len(buf) else buf
    if (
        fast is not None
        and num_classes is not None
        and text
        and _longest_line(text) > 64 * num_classes + 1024
    ):
        fast = None  # a row longer than any valid one (it would list a class twice or out of range): the
        # Python parser stops at its first bad class, where polars would pad every row of the block to it
    got = fast(text) if fast is not None and text else None
    if got is not None:
        if num_classes is not None:
            _check_range(path, got.ids, got.classes, got.lines + line_no, num_classes)
        lines = text.count(b"\n") + (0 if text.endswith(b"\n") else 1)
        got.lines += line_no
        if rank:
            got.classes, got.scores = _rank_rows(got.classes, got.scores)
        blocks.append(PredictionColumns(got.ids, got.classes, got.scores.astype(dtype), got.lines))
        return line_no + lines
    rows: list[tuple[int, str, list[int], list[float]]] = []
    pos = 0
    while pos < cut:
        end = _line_end(buf, pos, cut)
        line_no += 1
        raw = bytes(buf[pos:end])
        pos = end + 2 if buf.startswith(b"\r\n", end) else end + 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: line {line_no}: not valid UTF-8 ({exc.reason})") from None
        if line.strip():
            vid, classes, scores = parse_line(line_no, line)
            if num_classes is not None and classes and max(classes) >= num_classes:
                cls = next(c for c in classes if c >= num_classes)
                _raise_out_of_range(path, line_no, vid.encode("utf-8"), cls, num_classes)
            big = [c for c in classes if c > INT32_MAX]
            if big:
                raise DataError(
                    f"{path}: line {line_no}: video {vid!r}: class {big[0]} is out of range (class indices "
                    f"are below 2**31)"
                )
            if rank:
                order = sorted(range(len(classes)), key=lambda i: (-scores[i], classes[i]))
                classes, scores = [classes[i] for i in order], [scores[i] for i in order]
            rows.append((line_no, vid, classes, scores))
    if rows:
        k = max(1, *(len(r[2]) for r in rows))
        classes = np.full((len(rows), k), -1, np.int32)
        scores = np.zeros((len(rows), k), dtype)
        for i, (_, _, c, s) in enumerate(rows):
            classes[i, : len(c)] = c
            scores[i, : len(s)] = s
        ids = np.array([r[1].encode("utf-8") for r in rows])
        blocks.append(PredictionColumns(ids, classes, scores, np.array([r[0] for r in rows], np.int64)))
    return line_no


def _longest_line(text: bytes) -> int:
    longest, pos = 0, 0
    while pos < len(text):
        end = text.find(b"\n", pos)
        end = len(text) if end < 0 else end
        longest = max(longest, end - pos)
        pos = end + 1
    return longest


def _check_range(
    path: Path, ids: np.ndarray, classes: np.ndarray, lines: np.ndarray, num_classes: int
) -> None:
    bad = np.flatnonzero((classes >= num_classes).any(axis=1))
    if bad.size:
        row = int(bad[0])
        cls = int(classes[row][classes[row] >= num_classes][0])
        _raise_out_of_range(path, int(lines[row]), bytes(ids[row]), cls, num_classes)


def _raise_out_of_range(path: Path, line_no: int, vid: bytes, cls: int, num_classes: int) -> None:
    raise DataError(
        f"{path}: line {line_no}: video {_show(vid)}: class {cls} is out of range; the dataset has "
        f"{num_classes} classes (0 .. {num_classes - 1}); pass the right --num-classes"
    )


def _line_end(buf: bytes, pos: int, cut: int) -> int:
    ends = [i for i in (buf.find(b"\n", pos, cut), buf.find(b"\r", pos, cut)) if i >= 0]
    return min(ends) if ends else cut


def _join_blocks(blocks: list[PredictionColumns], dtype: type) -> PredictionColumns:
    """The blocks as one set of padded arrays, filled block by block (each freed once copied)."""
    n = sum(len(b) for b in blocks)
    k = max([1, *(b.classes.shape[1] for b in blocks)])
    width = max([1, *(b.ids.dtype.itemsize for b in blocks)])
    classes = np.full((n, k), -1, dtype=np.int32)
    scores = np.zeros((n, k), dtype=dtype)
    ids = np.zeros(n, dtype=f"S{width}")
    lines = np.zeros(n, dtype=np.int64)
    lo = 0
    while blocks:
        b = blocks.pop(0)
        hi = lo + len(b)
        classes[lo:hi, : b.classes.shape[1]] = b.classes
        scores[lo:hi, : b.scores.shape[1]] = b.scores
        ids[lo:hi] = b.ids
        lines[lo:hi] = b.lines
        lo = hi
    return PredictionColumns(ids, classes, scores, lines)


def _rank_rows(classes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every row best first (score descending, then class ascending), padding last; ordered rows untouched."""
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
    return classes, scores


_PLAIN_CSV = bytes(range(32, 127)) + b"\n\r"  # printable ASCII, LF and CR (in CR LF only)


def _lone_cr(block: bytes) -> bool:
    return b"\r" in block and block.count(b"\r") != block.count(b"\r\n")


def _line_ends(data: np.ndarray) -> np.ndarray:
    """Where each line of a block ends (its LF, or the block's end)."""
    ends = np.flatnonzero(data == 10)
    return ends if len(data) and data[-1] == 10 else np.append(ends, len(data))


def _padded(counts: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat per-row values as ``[n, k]`` arrays (-1 / 0 padded), or None where a row lists a class twice."""
    n = len(counts)
    k = max(1, int(counts.max(initial=0)))
    take = np.arange(k) < counts[:, None]
    c = np.full((n, k), -1, np.int32)
    s = np.zeros((n, k), np.float64)
    c[take] = classes
    s[take] = scores
    return None if _repeats(c) else (c, s)


def _checked(classes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Classes and scores as the format allows them (classes 0 .. 2**31 - 1, finite scores), or None."""
    if (classes < 0).any() or (classes > INT32_MAX).any() or not np.isfinite(scores).all():
        return None
    return classes.astype(np.int32), scores.astype(np.float64, copy=False)


def parse_kaggle_block(block: bytes) -> _Block | None:
    """The rows of a block of Kaggle CSV lines (no header) through polars' CSV reader, or None.

    polars reads ``id label score label score ...`` (the comma turned into a space) as columns when the
    block is spelled plainly: printable ASCII, one comma per line and no space before it, no sign before a
    token (which polars' integers would take and the format does not); an empty field (a doubled space, a
    space after the comma) shows as a gap in a row and sends the block to Python."""
    pl = fast_library()
    if block.translate(None, _PLAIN_CSV) or _lone_cr(block):
        return None
    data = np.frombuffer(block, np.uint8)
    for sign in (b"-", b"+"):  # a token that starts with a sign (after a space or the comma)
        if sign in block:
            at = np.flatnonzero(data == sign[0])
            if np.isin(data[np.maximum(at - 1, 0)], (32, 44)).any() or (at == 0).any():
                return None
    ends = _line_ends(data)
    starts = np.concatenate([[0], ends[:-1] + 1])
    filled = (ends - starts - (data[np.maximum(ends - 1, 0)] == 13)) > 0
    commas = np.flatnonzero(data == 44)
    comma_line = np.searchsorted(ends, commas)
    if not np.array_equal(np.bincount(comma_line, minlength=len(ends)), filled.astype(np.int64)):
        return None  # a line without a comma, or with two
    comma_at = np.full(len(ends), len(data))
    comma_at[comma_line] = commas
    spaces = np.flatnonzero(data == 32)
    before = np.searchsorted(spaces, np.concatenate([starts, [len(data)]]))
    first_space = np.append(spaces, len(data))[before[:-1]]
    if (first_space < np.minimum(comma_at, ends)).any():
        return None  # a space in the id or before the comma
    tokens = int(np.diff(before).max(initial=0)) + 1
    k = (tokens + 1) // 2
    schema = {"id": pl.String}
    for j in range(k):
        schema[f"c{j}"], schema[f"s{j}"] = pl.Int64, pl.Float64
    try:
        frame = pl.read_csv(  # a header names every column: polars takes the first line's count otherwise
            io.BytesIO(" ".join(schema).encode() + b"\n" + block.replace(b",", b" ")),
            has_header=True,
            schema=schema,
            separator=" ",
            quote_char=None,
        )
    except Exception:  # noqa: BLE001 - anything polars refuses goes to the Python parser, which names it
        return None
    if frame.height != len(ends):
        return None
    rows = np.flatnonzero(filled)
    if len(rows) < len(ends):
        frame = frame[rows]
    if frame["id"].null_count():
        return None
    labels = frame.select([f"c{j}" for j in range(k)]).to_numpy()
    values = frame.select([f"s{j}" for j in range(k)])
    missing = values.select(pl.all().is_null()).to_numpy()
    values = values.to_numpy()
    listed = ~np.isnan(labels)
    if (listed[:, 1:] & ~listed[:, :-1]).any() or not np.array_equal(missing, ~listed):
        return None  # a gap in a row, or a label without its score
    labels = np.where(listed, labels, -1)
    values = np.where(listed, values, 0.0)
    if (labels > INT32_MAX).any() or not np.isfinite(values).all():
        return None
    classes = labels.astype(np.int32)
    if _repeats(classes):
        return None
    vids = frame["id"].cast(pl.Binary).to_numpy().astype(bytes)
    return _Block(vids, classes, values, rows.astype(np.int64) + 1)


def _repeats(classes: np.ndarray) -> bool:
    """A row of ``classes`` (-1 padded) lists a class twice."""
    ordered = np.sort(classes, axis=1)
    return bool(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any())


_JSONL_SCHEMA = ("id", "classes", "scores")


def parse_jsonl_block(block: bytes) -> _Block | None:
    """The rows of a block of JSON lines through polars' NDJSON reader, or None."""
    pl = fast_library()
    if _lone_cr(block):
        return None
    data = np.frombuffer(block, np.uint8)
    ends = _line_ends(data)
    starts = np.concatenate([[0], ends[:-1] + 1])
    nonblank = np.flatnonzero((ends - starts - (data[np.maximum(ends - 1, 0)] == 13)) > 0)
    rows = len(nonblank)
    # every line spelled as the writer spells it: the id first, a JSON string; one list of classes and one of
    # scores. Else (a key listed twice or nested, an id that is no string, a line of spaces) the Python parser
    if not rows or not (
        block.count(b'"id"') == block.count(b'{"id": "') == block.count(b'"classes"') == rows
        and block.count(b'"scores"') == rows
    ):
        return None
    try:
        frame = pl.read_ndjson(
            io.BytesIO(block),
            schema={"id": pl.String, "classes": pl.List(pl.Int64), "scores": pl.List(pl.Float64)},
        )
    except Exception:  # noqa: BLE001 - anything polars refuses goes to the Python parser, which names it
        return None
    if frame.height != rows or any(frame[c].null_count() for c in _JSONL_SCHEMA):
        return None
    if (frame["id"].str.len_bytes() == 0).any():
        return None
    counts = frame["classes"].list.len().to_numpy().astype(np.int64)
    if not np.array_equal(counts, frame["scores"].list.len().to_numpy()):
        return None
    labels, values = frame["classes"].explode(), frame["scores"].explode()
    if len(labels) != counts.sum() or len(values) != counts.sum():  # an empty list exploded to a null
        labels, values = labels.filter(labels.is_not_null()), values.filter(values.is_not_null())
        if len(labels) != counts.sum() or len(values) != counts.sum():
            return None
    if labels.null_count() or values.null_count():
        return None
    got = _checked(labels.to_numpy(), values.to_numpy())
    padded = None if got is None else _padded(counts, *got)
    if padded is None:
        return None
    vids = frame["id"].cast(pl.Binary).to_numpy().astype(bytes)
    return _Block(vids, *padded, nonblank.astype(np.int64) + 1)


# -- writing ------------------------------------------------------------------------------------------------


def ranked(columns: PredictionColumns) -> tuple[np.ndarray, np.ndarray]:
    """``classes, scores`` (float32) with every row best first (score descending, then class ascending) and
    padding last, as the Python writers order a row; rows already in that order are not touched."""
    classes, scores = _rank_rows(columns.classes, np.asarray(columns.scores, dtype=np.float32))
    return np.ascontiguousarray(classes, dtype=np.int32), np.ascontiguousarray(scores, dtype=np.float32)


def fast_writes() -> bool:
    """polars is there to format the rows."""
    return fast_library() is not None


def id_bytes(ids: np.ndarray) -> np.ndarray:
    """The ids as a ``[N, width]`` uint8 view (NUL padded)."""
    ids = np.ascontiguousarray(ids)
    return ids.view(np.uint8).reshape(len(ids), ids.dtype.itemsize)


def float32_texts(values: np.ndarray) -> list[str]:
    """The Kaggle format's spelling of scores: numpy's shortest text of each float32 (``str(np.float32(x))``,
    which reads back as the same float32)."""
    return np.asarray(values, dtype=np.float32).astype(str).tolist()


def _texts(values: np.ndarray, double: bool) -> Any:
    """A polars column with the text of each value: numpy's float32 text, or ``repr`` of the double
    (``json.dumps``' spelling). polars writes the same digits, and the same text where the value lies in
    [1e-4, 1e6) (float32) or [1e-4, 1e16) (double), or is 0; the others are spelled in Python."""
    pl = fast_library()
    with np.errstate(invalid="ignore"):  # a signalling NaN stays a NaN
        wide = values.astype(np.float64)
    size = np.abs(wide)
    texts = pl.Series(wide if double else values).cast(pl.String)
    odd = np.flatnonzero(~(((size >= 1e-4) & (size < (1e16 if double else 1e6))) | (wide == 0)))
    if odd.size:
        spelled = [json.dumps(v) for v in wide[odd].tolist()] if double else float32_texts(values[odd])
        texts = texts.scatter(odd, spelled)
    return texts


def _joined(pl: Any, texts: Any, listed: np.ndarray, separator: str) -> Any:
    """Per row, the texts of its listed entries joined by ``separator`` (``texts`` row-major ``[n, k]``)."""
    n, k = listed.shape
    texts = texts.set(pl.Series(~listed.reshape(-1)), None)
    return texts.reshape((n, k)).arr.join(separator, ignore_nulls=True)


def _write_lines(path: str | os.PathLike, header: bytes, chunks: Iterator[Any]) -> None:
    """``header``, then each chunk's lines (polars String columns) ending in a newline, atomically."""
    pl = fast_library()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header)
        for lines in chunks:
            pl.DataFrame({"line": lines}).write_csv(f, include_header=False, quote_style="never")


def write_kaggle_rows(path: str | os.PathLike, columns: PredictionColumns, header: bytes) -> int:
    """Kaggle CSV rows ``id,class score class score ...`` (ids checked by the caller) through polars."""
    pl = fast_library()
    classes, scores = ranked(columns)
    ids = columns.ids

    def chunks() -> Iterator[Any]:
        for lo in range(0, len(ids), WRITE_ROWS):
            c, s = classes[lo : lo + WRITE_ROWS], scores[lo : lo + WRITE_ROWS]
            pairs = pl.Series(c.reshape(-1)).cast(pl.String) + " " + _texts(s.reshape(-1), double=False)
            vids = pl.Series(ids[lo : lo + WRITE_ROWS]).cast(pl.String)
            yield vids + "," + _joined(pl, pairs, c >= 0, " ")

    _write_lines(path, header, chunks())
    return len(ids)


def write_jsonl_columns(
    path: str | os.PathLike, columns: PredictionColumns, class_names: Mapping[int, str] | None = None
) -> int:
    """:func:`zoo.engine.infer.predictions.write_jsonl` for arrays through polars (check :func:`fast_writes`
    first): the same bytes, atomic."""
    pl = fast_library()
    classes, scores = ranked(columns)
    ids = [json.dumps(v, ensure_ascii=False) for v in (i.decode("utf-8") for i in columns.ids)]
    names = None
    if class_names is not None:
        top = max(int(classes.max(initial=0)), max(class_names, default=0))
        names = pl.Series([json.dumps(class_names.get(c, ""), ensure_ascii=False) for c in range(top + 1)])

    def chunks() -> Iterator[Any]:
        for lo in range(0, len(ids), WRITE_ROWS):
            c, s = classes[lo : lo + WRITE_ROWS], scores[lo : lo + WRITE_ROWS]
            listed = c >= 0
            line = (
                '{"id": '
                + pl.Series(ids[lo : lo + WRITE_ROWS], dtype=pl.String)
                + ', "classes": ['
                + _joined(pl, pl.Series(c.reshape(-1)).cast(pl.String), listed, ", ")
                + '], "scores": ['
                + _joined(pl, _texts(s.reshape(-1), double=True), listed, ", ")
                + "]"
            )
            if names is not None:
                named = names.gather(np.maximum(c, 0).reshape(-1))
                line = line + ', "names": [' + _joined(pl, named, listed, ", ") + "]"
            yield line + "}"

    _write_lines(path, b"", chunks())
    return len(ids)
