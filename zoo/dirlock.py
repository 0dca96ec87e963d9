"""One writer per directory: a lock file naming the process that holds it, taken over when that process is gone.

A training run (its ``train.save_dir``) and a ``zoo data pack`` output are written by one process at a time;
a second one would mix its files with the first one's. The lock is a file created with ``O_EXCL`` that holds
the owner's pid, host and process start time. A lock whose process no longer exists on this host (killed
with ``kill -9``, machine rebooted) is stale and taken over; one held on another host cannot be checked and
is reported. (:class:`NoSpaceLeft` and :func:`no_space_error` live in :mod:`zoo.atomic`; re-exported here.)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.atomic import NoSpaceLeft, is_no_space, no_space_error  # noqa: F401 - re-exported
from zoo.errors import ZooError


class DirectoryLocked(ZooError):
    """Another live process is writing the directory."""


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid from the lock's owner."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is not None:
        now = _process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True


class DirectoryLock:
    """``DirectoryLock(path).acquire()``; released by :meth:`release` or at interpreter exit."""

    def __init__(self, path: str | os.PathLike, *, what: str = "run directory") -> None:
        self.path = Path(path)
        self.what = what
        self.held = False

    def _payload(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start": _process_start(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:500],
        }

    def _holder(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ZooError(
                f"{self.path} cannot be read as the lock of the {self.what} ({getattr(exc, 'strerror', None) or exc}); "
                f"if no other process writes {self.path.parent}, remove it and run the command again"
            ) from None
        try:
            holder = json.loads(text)
            return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else {}
        except ValueError:
            return {}  # being written right now, or damaged

    def acquire(self, log: Callable[[str], None] | None = None) -> DirectoryLock:
        from zoo.atomic import output_dir

        output_dir(self.path.parent, f"the {self.what}")
        if (os.path.lexists(self.path) and not self.path.is_file()) or self.path.is_symlink():
            kind = "folder" if self.path.is_dir() and not self.path.is_symlink() else "link or special file"
            raise ZooError(
                f"{self.path} is a {kind}, not the lock file of the {self.what}; remove it (if no other process "
                f"writes {self.path.parent}) and run the command again"
            )
        for _attempt in range(20):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released meanwhile
                if not holder:
                    age = time.time() - self._mtime()
                    if age < 5:
                        time.sleep(0.1)  # its owner is writing it
                        continue
                    self._take_over(f"{self.path} is unreadable and {age:.0f} s old", log)
                    continue
                pid, host = holder["pid"], holder.get("host", "?")
                same_host = host == socket.gethostname()
                if same_host and pid == os.getpid():
                    self._take_over(None, None)  # this process again (an earlier run in it failed)
                    continue
                if same_host and not _alive(pid, holder.get("start")):
                    self._take_over(f"process {pid} that locked it is gone", log)
                    continue
                where = "this host" if same_host else f"host {host}"
                raise DirectoryLocked(
                    f"{self.path.parent} is in use: process {pid} on {where} has been writing it since "
                    f"{holder.get('since', '?')} ({holder.get('command', '')!s}). Wait for it to finish or "
                    f"choose another directory"
                    + (
                        ""
                        if same_host
                        else f"; if that process is gone, delete {self.path} (a lock held on another "
                        f"host cannot be checked from here)"
                    )
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(self._payload()))
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            atexit.register(self.release)
            return self
        raise DirectoryLocked(f"could not lock {self.path}: it keeps changing; is another process starting?")

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return time.time()

    def _take_over(self, why: str | None, log: Callable[[str], None] | None) -> None:
        # Rename first: of two processes taking over at once, only one rename succeeds.
        aside = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        aside.unlink(missing_ok=True)
        if why and log:
            log(f"taking over the stale lock of the {self.what} {self.path.parent}: {why}")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = self._holder()
        if holder and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)


def remove_partials(folder: Path) -> list[Path]:
    """Remove ``.NAME.*.partial`` leftovers of atomic writes killed midway (call with the folder's lock held)."""
    removed = []
    if not folder.is_dir():
        return removed
    for leftover in folder.glob(".*.partial"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        removed.append(leftover)
    return removed
