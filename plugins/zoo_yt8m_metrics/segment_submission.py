"""The Kaggle 2019 segment submission: the ``Class,Segments`` file, written, read and scored.

Format (google/youtube-8m ``segment_eval_inference.py``): header ``Class,Segments``, then one row per class: the
class index, a comma, and up to 100,000 space-separated ``videoid:start`` entries, best first, ``start`` the
first frame of a 5-frame segment. Scoring ranks each class's entries by their position and keeps the rated
(segment, class) pairs (see :class:`~zoo_yt8m_metrics.segment.SegmentMetric`).

The segment plugin selects the top-N per class (``zoo_yt8m_segments.topsegments``) and writes through
:meth:`~zoo_yt8m_metrics.segment.SegmentMetric.write_submission`, the metric that scores the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from zoo.errors import DataError

SEGMENT_FRAMES = 5
MAX_ENTRIES = 100_000
HEADER = "Class,Segments"


MAX_START = 2**31 - 1
"""The largest segment start accepted: a frame number (one frame a second: 68 years)."""


def write_segment_submission(
    path: str | os.PathLike, rows: Iterable[tuple[int, Sequence[str], Sequence[int]]]
) -> dict[str, int]:
    """Write a Kaggle 2019 submission atomically: one row per ``(class, video ids, segment starts)``, entries
    best first. Returns the classes and entries written."""
    from zoo.atomic import atomic_path

    count = entries = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(HEADER + "\n")
        for cls, videos, starts in rows:
            if len(videos) != len(starts):
                raise ValueError(f"class {cls}: {len(videos)} videos but {len(starts)} segment starts")
            f.write(f"{int(cls)}," + " ".join(f"{v}:{int(s)}" for v, s in zip(videos, starts)) + "\n")
            count += 1
            entries += len(videos)
    return {"classes": count, "entries": entries}


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
                    if len(start_text) > 10 or int(start_text) > MAX_START:
                        raise DataError(
                            f"{where}: entry {item[:60]!r}: segment start {start_text[:30]} is beyond any video "
                            f"(starts are frame numbers, at most {MAX_START:,})"
                        )
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
