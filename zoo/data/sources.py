"""Turning what a user wrote (files, directories, globs, ``.list`` files) into the list of files to read.

The seed's workflow kept hand-written lists of absolute paths (``train.list``: one path per line); those
still work, next to directories and glob patterns. A path that matches nothing, an empty list file and a
file named twice are errors that say which entry caused them; so is a FIFO or device (refused before it is
opened: a read from one can block forever).

Any entry may be a URL (``s3://bucket/train/``, ``gs://bucket/frame/train*.tfrecord``, ``https://host/x.list``;
see :mod:`zoo.storage`): object-store prefixes list like directories, patterns glob like local ones, and the
lines of a list file may be URLs (a relative line in a remote list file is relative to the list's URL).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
from collections.abc import Callable, Sequence

from zoo import storage
from zoo.errors import DataError

LIST_SUFFIXES = (".list", ".lst")
_GLOB_CHARS = set("*?[")


def is_glob(path: str) -> bool:
    return any(c in _GLOB_CHARS for c in path)


def check_regular(path: str, source: str) -> None:
    """Refuse a FIFO, socket or device before anything opens it: reading one can block forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}; {source})") from None
    if not stat.S_ISREG(mode):
        raise DataError(
            f"{path}: not a regular file (a FIFO, socket or device; {source}); name data files, directories, "
            f"glob patterns or .list files"
        )


def read_list_file(path: str) -> list[str]:
    """Entries of a list file: one path or URL per line; blank lines and ``#`` comments ignored.

    Relative entries are relative to the list file's directory (so a dataset folder can be moved whole).
    """
    if storage.is_url(path):
        try:
            text = storage.read_bytes(path, limit=256 << 20).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"list file {storage.redact(path)} cannot be read: {exc}") from None
        return [storage.join(path, line) for line in _list_lines(text.splitlines())]
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"list file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"list file {path} cannot be read: {exc}") from None
    base = os.path.dirname(os.path.abspath(path))
    entries = []
    for line in _list_lines(lines):
        if storage.is_url(line):
            entries.append(line)
            continue
        line = os.path.expanduser(line)
        entries.append(line if os.path.isabs(line) else os.path.join(base, line))
    return entries


def _list_lines(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def expand_paths(
    paths: Sequence[str] | str | None,
    *,
    patterns: Sequence[str] = ("*",),
    directory: Callable[[str], list[str] | None] | None = None,
    what: str = "data files",
) -> list[str]:
    """Files named by ``paths``, in the order given (directory contents and glob matches sorted).

    ``patterns``: file-name patterns a directory contributes (hidden and ``.partial`` files never count).
    ``directory(path)``: may claim a directory and return its sources itself (a packed dataset does),
    or return None to list it with ``patterns``.
    Raises :class:`DataError` when nothing is given, an entry matches nothing, or a file is named twice.
    """
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise DataError(
            f"no {what} given: name files, directories, glob patterns or .list files "
            f"(for example data.train: [/data/yt8m/train] or -o data.train=/data/train.list)"
        )
    out: list[str] = []
    origin: dict[str, str] = {}

    def add(path: str, source: str) -> None:
        key = path if storage.is_url(path) else os.path.realpath(path)
        if key in origin:
            first = origin[key]
            raise DataError(
                f"{storage.redact(path)} is named twice (first {first}, then {source}); each file must appear once or its "
                f"videos would be read twice per epoch: remove one entry"
            )
        origin[key] = source
        out.append(path)

    def expand(entry: str, source: str, depth: int) -> None:
        if storage.is_url(entry):
            expand_url(str(entry), source, depth)
            return
        entry = os.path.expanduser(storage.local_path(str(entry)))
        if is_glob(entry):
            matches = sorted(glob.glob(entry))
            if not matches:
                raise DataError(f"{entry}: the pattern matches no file ({source})")
            for match in matches:
                expand(match, f"pattern {entry}", depth)
            return
        if os.path.isdir(entry):
            claimed = directory(entry) if directory else None
            if claimed is not None:
                for item in claimed:
                    add(item, f"directory {entry}")
                return
            names = sorted(
                n
                for n in os.listdir(entry)
                if not n.startswith(".")
                and not n.endswith(".partial")
                and any(fnmatch.fnmatch(n, p) for p in patterns)
                and os.path.isfile(os.path.join(entry, n))
            )
            if not names:
                raise DataError(f"{entry}: the directory holds no {what} (looked for {', '.join(patterns)})")
            for name in names:
                add(os.path.join(entry, name), f"directory {entry}")
            return
        if entry.endswith(LIST_SUFFIXES):
            if not os.path.exists(entry):
                raise DataError(f"list file {entry} does not exist ({source})")
            check_regular(entry, f"list file, {source}")
            expand_list(entry, depth)
            return
        if not os.path.exists(entry):
            raise DataError(f"{entry}: no such file or directory ({source})")
        check_regular(entry, source)
        add(entry, source)

    def expand_list(entry: str, depth: int) -> None:
        shown = storage.redact(entry)
        if depth > 8:
            raise DataError(f"{shown}: list files nested more than 8 deep (a list that names itself?)")
        items = read_list_file(entry)
        if not items:
            raise DataError(f"list file {shown} is empty: it should hold one path per line")
        for item in items:
            expand(item, f"list file {shown}", depth + 1)

    def expand_url(url: str, source: str, depth: int) -> None:
        shown = storage.redact(url)
        scheme_end = url.index("://") + 3
        if is_glob(url[scheme_end:].split("?")[0]):
            matches = storage.glob(url)
            if not matches:
                raise DataError(f"{shown}: the pattern matches no object ({source})")
            for match in matches:
                add(match, f"pattern {shown}")
            return
        if url.split("?")[0].endswith(LIST_SUFFIXES):
            expand_list(url, depth)
            return
        found = storage.stat(url)
        if found is None:
            raise DataError(f"{storage.missing(url, 'object or prefix')} ({source})")
        if found.is_file:
            add(url, source)
            return
        claimed = directory(url) if directory else None
        if claimed is not None:
            for item in claimed:
                add(item, f"directory {shown}")
            return
        names = [
            e.url
            for e in storage.listdir(url)
            if e.is_file
            and not e.name.startswith(".")
            and not e.name.endswith(".partial")
            and any(fnmatch.fnmatch(e.name, p) for p in patterns)
        ]
        if not names:
            raise DataError(f"{shown}: the prefix holds no {what} (looked for {', '.join(patterns)})")
        for name in names:
            add(name, f"directory {shown}")

    for path in paths:
        expand(path, "given directly", 0)
    return out
