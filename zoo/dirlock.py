"""One writer per directory: an OS file lock (the ``filelock`` library), with a note naming its holder.

A training run (its ``train.save_dir``) and a ``zoo data pack`` output are written by one process at a time;
a second one would mix its files with the first one's. The lock is ``filelock.FileLock`` on the lock file
(``flock`` on Unix): the kernel drops it when its process ends in any way (``kill -9`` included), so a lock is
never stale and a reused pid cannot fool it; on a network file system the server arbitrates between hosts.
Next to it, ``<lock>.owner`` (JSON: pid, host, start, command) says who holds it, for the refusal message; it is
removed on release, and a leftover one (a killed holder) is named when the lock is taken over.
(:class:`NoSpaceLeft` and :func:`no_space_error` live in :mod:`zoo.atomic`; re-exported here.)
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

import filelock

from zoo.atomic import NoSpaceLeft, atomic_write_text, is_no_space, no_space_error  # noqa: F401 - re-exported
from zoo.errors import ZooError
from zoo.storage import redact


class DirectoryLocked(ZooError):
    """Another live process is writing the directory."""


class DirectoryLock:
    """``DirectoryLock(path).acquire()``; released by :meth:`release` or at interpreter exit."""

    def __init__(self, path: str | os.PathLike, *, what: str = "run directory") -> None:
        self.path = Path(path)
        self.owner = self.path.with_name(self.path.name + ".owner")
        self.what = what
        # one instance per path in a process: this process taking its own lock again (an earlier run in it failed
        # before releasing) gets it
        self._lock = filelock.FileLock(str(self.path), timeout=0, thread_local=False, is_singleton=True)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.owner.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None

    def acquire(self, log: Callable[[str], None] | None = None) -> DirectoryLock:
        from zoo.atomic import output_dir

        output_dir(self.path.parent, f"the {self.what}")
        if (os.path.lexists(self.path) and not self.path.is_file()) or self.path.is_symlink():
            kind = "folder" if self.path.is_dir() and not self.path.is_symlink() else "link or special file"
            raise ZooError(
                f"{self.path} is a {kind}, not the lock file of the {self.what}; remove it (if no other process "
                f"writes {self.path.parent}) and run the command again"
            )
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise self._refusal() from None
        previous = self._holder()
        if previous and log and previous["pid"] != os.getpid():
            host = previous.get("host")
            where = "" if host in (None, socket.gethostname()) else f" on host {host}"
            log(
                f"taking over the lock of the {self.what} {self.path.parent}: process {previous['pid']}{where} "
                f"that locked it is gone ({previous.get('command', '')})"
            )
        atomic_write_text(
            self.owner,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "command": redact(" ".join(sys.argv))[:500],  # no credentials of a URL argument
                }
            ),
        )
        atexit.register(self.release)
        return self

    def _refusal(self) -> DirectoryLocked:
        holder = self._holder()
        if holder is None:  # taken this instant, its note not written yet
            who = "another process"
        else:
            host = holder.get("host", "?")
            where = "this host" if host == socket.gethostname() else f"host {host}"
            who = (
                f"process {holder['pid']} on {where} has been writing it since {holder.get('since', '?')} "
                f"({holder.get('command', '')!s})"
            )
        return DirectoryLocked(
            f"{self.path.parent} is in use: {who} holds {self.path}. Wait for it to finish or choose another "
            f"directory"
        )

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        holder = self._holder()
        if holder and holder.get("pid") == os.getpid():
            self.owner.unlink(missing_ok=True)
        self._lock.release(force=True)


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
