"""Video ids that occur more than once across the files of one input (a file listed twice, two copies of a
shard under different names): a metric would count those videos twice and a prediction file would hold two
rows for one video. Found by id while reading; the files holding them are found afterwards, by a second pass
over the ids only, so the common case (no duplicates) costs one set insertion per video."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from zoo.contracts import PartitionedReader


class DuplicateIds:
    """Records ids as they are read; ``repeats`` counts the second and later occurrences."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.repeated: dict[str, int] = {}

    def add(self, ids: Iterable[Any]) -> list[bool]:
        """Returns, per id, whether it is the first occurrence (keep it)."""
        keep = []
        for vid in ids:
            vid = vid.decode("utf-8", "surrogateescape") if isinstance(vid, bytes) else str(vid)
            if vid in self.seen:
                self.repeated[vid] = self.repeated.get(vid, 0) + 1
                keep.append(False)
            else:
                self.seen.add(vid)
                keep.append(True)
        return keep

    @property
    def repeats(self) -> int:
        return sum(self.repeated.values())


def records_with_source(reader: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every record of ``reader`` with the file it came from."""
    read_part = reader.read_part if isinstance(reader, PartitionedReader) else None
    for source in reader.sources():
        records = read_part(source, 0, 1) if read_part is not None else reader.read(source)
        for record in records:
            yield source, record


def locate(reader: Any, ids: Iterable[str]) -> dict[str, list[str]]:
    """``{id: [file, file, ...]}`` for the given ids (one entry per occurrence)."""
    wanted = set(ids)
    where: dict[str, list[str]] = {vid: [] for vid in wanted}
    for source, record in records_with_source(reader):
        vid = record["id"]
        vid = vid.decode("utf-8", "surrogateescape") if isinstance(vid, bytes) else str(vid)
        if vid in wanted:
            where[vid].append(source)
    return where


def describe(tracker: DuplicateIds, reader: Any, *, shown: int = 3) -> str:
    """ "N videos occur more than once: 'abc' in A and B, ..." with the files named."""
    first = sorted(tracker.repeated)[:shown]
    where = locate(reader, first) if hasattr(reader, "sources") else {}
    parts = []
    for vid in first:
        files = where.get(vid) or []
        parts.append(f"{vid!r} in {' and '.join(files)}" if files else repr(vid))
    more = len(tracker.repeated) - len(first)
    return (
        f"{len(tracker.repeated)} video id(s) occur more than once ({tracker.repeats} extra occurrence(s)): "
        + "; ".join(parts)
        + (f"; and {more} more" if more > 0 else "")
    )
