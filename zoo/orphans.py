"""Worker processes that end when their parent does.

A pool or DataLoader worker whose parent is killed with ``kill -9`` is re-parented and would otherwise keep
reading and packing (or block on a queue) for ever. :func:`exit_with_parent` runs in each worker when it
starts: on Linux it asks the kernel for SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``), and on
every platform a daemon thread checks the parent's pid every half second and exits when it has changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
_started = False


def _watch(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def exit_with_parent(*_args: object, interval: float = 0.5) -> None:
    """Worker initializer (also usable as paddle's ``worker_init_fn``, which passes the worker id)."""
    global _started
    if _started:
        return
    _started = True
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog thread below still covers it
    if os.getppid() != parent or parent == 1:
        os._exit(1)  # the parent died before the request above was in place
    threading.Thread(target=_watch, args=(parent, interval), name="exit-with-parent", daemon=True).start()
