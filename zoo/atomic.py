"""Atomic file writes: a file appears under its final name only when complete (write, fsync, rename).

Also the one disk-full mechanism of the project: every writer goes through :func:`atomic_path` or
:func:`atomic_dir`, and a write that fails because the disk (or quota, or the process's file-size limit) is
full comes out of them as :class:`NoSpaceLeft`, the one documented message (the path, the space needed, the
space free, what is intact), with the temporary file removed and the previous file untouched -- whatever
library did the writing (Python's ``OSError``, safetensors' ``SafetensorError``, paddle's errors all carry
the system's reason, see :func:`is_no_space`). Writers of several files that belong together use
:func:`atomic_group`: all of them appear, or none.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from zoo.errors import ZooError

_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# how libraries that are not Python (safetensors' Rust, paddle's C++) spell those errnos in their messages
_CODES = "|".join(str(code) for code in _NO_SPACE_ERRNOS)
_NO_SPACE_TEXT = re.compile(
    r"No space left on device|Disk quota exceeded|File too large|StorageFull|FileTooLarge|QuotaExceeded"
    rf"|\[Errno (?:{_CODES})\]|code: (?:{_CODES})\b"
)


class NoSpaceLeft(ZooError):
    """The disk filled up while writing; the previous complete files are untouched."""


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (of any library) reports a full disk, an exceeded quota or the file-size limit."""
    if isinstance(exc, NoSpaceLeft):
        return False  # already the message
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return False
    seen = 0
    while exc is not None and seen < 8:  # the message, or the cause a library chained
        if _NO_SPACE_TEXT.search(str(exc)[:4000]):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False


def no_space_error(path: Path, needed: int | None, what: str, kept: str, *, written: int = 0) -> NoSpaceLeft:
    """The message for a full disk: the path, the space needed and free, and what is still intact."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        free = -1
    free_text = f"{free / 1e6:.1f} MB free" if free >= 0 else "free space unknown"
    need = (
        f"about {needed / 1e6:.1f} MB"
        if needed
        else f"more than the {written / 1e6:.1f} MB written when it failed"
    )
    limit = _file_size_limit()
    limit_text = (
        f"; this process may write files of at most {limit / 1e6:.1f} MB (ulimit -f)" if limit else ""
    )
    return NoSpaceLeft(
        f"no space left on the device while writing {what} {path}: it needs {need} ({free_text} on that file "
        f"system{limit_text}). Nothing was half-written: {kept}. Free some space (or point the output "
        f"elsewhere) and run the command again"
    )


def _human(n: int) -> str:
    """1234 -> '1.2 KB', 5_000_000 -> '5.0 MB' (decimal units, as df -H)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _file_size_limit() -> int | None:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


_GROUP: list[list[tuple[Path, Path, bool]]] = []


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """Files written with :func:`atomic_path` inside appear together at the end (after all of them were
    written and fsynced), or none of them do. A writer must not read back a file it wrote inside the group.
    A group inside another joins it (its files appear with the outer group's); a group is the process's,
    so writers on other threads (the formats written side by side) join it too."""
    if _GROUP:
        yield
        return
    pending: list[tuple[Path, Path, bool]] = []
    _GROUP.append(pending)
    try:
        yield
    except BaseException:
        for tmp, _path, is_dir in pending:
            _remove(tmp, is_dir)
        raise
    finally:
        _GROUP.remove(pending)
    for tmp, path, is_dir in pending:
        _commit(tmp, path, is_dir)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike,
    *,
    suffix: str = ".partial",
    what: str = "the file",
    needed: int | None = None,
    kept: str | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was; a full disk becomes
    :class:`NoSpaceLeft` (``what``, ``needed`` bytes and ``kept`` word its message).
    """
    path = Path(path)
    existed = path.exists()
    try:
        _make_parent(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        if is_no_space(exc):
            raise _full(path, None, what, kept, existed, 0) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
    try:
        yield tmp_path
        # again: a writer may have replaced the file (safetensors writes its own, with mode 0600)
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        if _GROUP:
            _GROUP[-1].append((tmp_path, path, False))
            return
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        written = _size(tmp_path)
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_no_space(exc):
            raise _full(path, needed, what, kept, existed, written) from None
        raise


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike,
    *,
    what: str = "the folder",
    needed: int | None = None,
    kept: str | None = None,
) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` in one rename.
    A full disk becomes :class:`NoSpaceLeft`, as in :func:`atomic_path`."""
    path = Path(path)
    existed = path.exists()
    try:
        _make_parent(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    except OSError as exc:
        if is_no_space(exc):
            raise _full(path, needed, what, kept, existed, 0) from None
        raise
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        _plain_modes(tmp)
        if _GROUP:
            _GROUP[-1].append((tmp, path, True))
            return
        _commit(tmp, path, True)
    except BaseException as exc:
        written = _size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if is_no_space(exc):
            raise _full(path, needed, what, kept, existed, written) from None
        raise


def _make_parent(path: Path) -> None:
    """The folder ``path`` goes into; a file standing where a folder must be is a usage error naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        check_output_dir(path.parent, "the output")
        raise


def _plain_modes(folder: Path) -> None:
    """The modes a plain ``open()``/``mkdir()`` gives (umask applied) for everything in ``folder``: libraries
    that write through their own temporary files (safetensors) leave them 0600, unreadable to the group."""
    mask = _umask()
    for base, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(base, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


def _full(
    path: Path, needed: int | None, what: str, kept: str | None, existed: bool, written: int
) -> NoSpaceLeft:
    if kept is None:
        kept = f"{path} is as it was before" if existed else f"{path} was not written"
    return no_space_error(path, needed, what, kept, written=written)


def _commit(tmp: Path, path: Path, is_dir: bool) -> None:
    if not is_dir:
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old.{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove(tmp: Path, is_dir: bool) -> None:
    if is_dir:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def check_output_dir(path: str | os.PathLike, option: str = "--output") -> None:
    """Refuse, before any work, an output folder that a file stands in the way of (the path or a parent)."""
    from zoo.errors import UsageError

    probe = Path(path)
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if os.path.lexists(probe) and not probe.is_dir():
        raise UsageError(
            f"{option} {path}: {probe} is a file, not a folder; name a folder for the output (it is made if "
            f"missing)"
        )


def output_dir(path: str | os.PathLike, option: str = "--output") -> Path:
    """Make the output folder ``path`` (and its parents); a usage error naming ``option`` when a file stands
    in its way, a :class:`NoSpaceLeft` when the disk is full, a ZooError for any other refusal."""
    from zoo.errors import UsageError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(
            f"{option} {path}: a file is in the way (an output folder is expected there); name a folder"
        ) from None
    except OSError as exc:
        if is_no_space(exc):
            raise _full(path, None, "the folder", None, False, 0) from None
        raise ZooError(f"{option} {path}: cannot make the folder ({exc.strerror or exc})") from None
    return path


def append_text(path: str | os.PathLike, text: str, *, what: str = "the log") -> None:
    """Append ``text`` to ``path``: all of it, or (disk full, any failure) nothing -- the file is cut back to
    its previous length, so a log never ends in half a line."""
    path = Path(path)
    data = text.encode("utf-8")
    with open(path, "ab", buffering=0) as f:
        start = f.seek(0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[f.write(view) :]
        except BaseException as exc:
            with contextlib.suppress(OSError):
                f.truncate(start)
            if is_no_space(exc):
                raise no_space_error(path, len(data), what, f"{path} is as it was before") from None
            raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "the file") -> None:
    with atomic_path(path, what=what, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "the file") -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what=what)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
