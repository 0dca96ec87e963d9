"""Inside a launched process: the entry script, this rank's device and process group, and its failure record.

Each worker records why it failed (``failure.rank<N>.json`` in the launch log folder, see
:func:`failure_report`), so the parent names the rank that failed first and its error, not the ranks that only
lost their peer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zoo.atomic import atomic_write_text
from zoo.engine.distributed import context as distributed
from zoo.errors import ZooError

WORKER_SCRIPT = "zoo_worker.py"
_WORKER_SOURCE = '''\
"""Written by zoo.engine.distributed.worker: what paddle.distributed.launch runs on every rank."""
import sys

from zoo.engine.distributed.worker import run_worker

sys.exit(run_worker(sys.argv[1:]))
'''
EXIT_RECORD = "exit.rank{rank}.json"
"""Each rank's exit code, written beside its log when ``zoo`` returns (a rank killed by a signal writes none)."""
_COMMUNICATION = re.compile(
    r"gloo|nccl|connection (reset|closed|refused)|timed? ?out|socket|tcp_store|pair\.cc", re.IGNORECASE
)


def run_worker(argv: list[str]) -> int:
    """``zoo ARGV`` on this rank, then its exit record (``exit.rank<N>.json``: rank, local rank, code, log) for
    the parent, which names a failed rank from these records and the failure records, not from launch's
    output."""
    from zoo.cli import main

    code = 1
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        _record_exit(code)
    return code


def _record_exit(code: int) -> None:
    folder = _failure_dir()
    if folder is None or not distributed.in_launched_job():
        return
    rank, local = distributed.context().rank, distributed.local_rank()
    record = {"rank": rank, "local_rank": local, "code": int(code), "time": time.time()}
    record["log"] = str(folder / f"workerlog.{local}")
    try:
        atomic_write_text(folder / EXIT_RECORD.format(rank=rank), json.dumps(record))
    except OSError:
        pass


def worker_context(device: str) -> distributed.DistContext:
    """In a launched process: paddle on this rank's device, a fair share of the CPU cores, the process group."""
    from zoo.engine.runtime import cpu_count, init_paddle

    die_with_parent()
    threads = max(1, cpu_count() // max(1, distributed.local_size())) if device == "cpu" else None
    if device == "cpu":
        os.environ["PADDLE_DISTRI_BACKEND"] = "gloo"  # a GPU build of paddle would pick NCCL
    init_paddle(device, threads=threads)
    ctx = distributed.context()
    distributed.init(ctx)
    return ctx


def die_with_parent() -> None:
    """Linux: receive SIGTERM when the parent process dies (launch when `zoo` is killed, a rank when launch
    is), so no part of a job outlives the command that started it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # launch was gone before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _failure_dir() -> Path | None:
    folder = os.environ.get("PADDLE_LOG_DIR")
    return Path(folder) if folder else None


@contextmanager
def failure_report(ctx: distributed.DistContext) -> Iterator[None]:
    """Record why this rank failed, for the parent to report (no-op outside a launched job)."""
    try:
        yield
    except Exception as exc:
        folder = _failure_dir()
        if folder is not None and distributed.in_launched_job():
            local = distributed.local_rank()
            record = {
                "rank": ctx.rank,
                "world_size": ctx.world_size,
                "local_rank": local,
                "time": time.time(),
                "type": type(exc).__name__,
                "message": str(exc),
                "log": str(folder / f"workerlog.{local}"),
                "traceback": "" if isinstance(exc, ZooError) else traceback.format_exc(limit=8),
            }
            try:
                atomic_write_text(folder / f"failure.rank{ctx.rank}.json", json.dumps(record, indent=1))
            except OSError:
                pass
            if ctx.distributed and not isinstance(exc, ZooError) and is_communication(record):
                # a consequence, not a cause: one line instead of a traceback (the parent names the cause)
                raise ZooError(f"rank {ctx.rank} lost the connection to the other ranks: {exc}") from None
        raise


def is_communication(record: dict) -> bool:
    return bool(_COMMUNICATION.search(f"{record.get('type', '')}: {record.get('message', '')}"))


def write_worker_script(log_dir: Path) -> Path:
    """The entry point launch starts; alone in its folder so nothing beside it shadows a module."""
    log_dir.mkdir(parents=True, exist_ok=True)
    script = log_dir / WORKER_SCRIPT
    atomic_write_text(script, _WORKER_SOURCE)
    return script
