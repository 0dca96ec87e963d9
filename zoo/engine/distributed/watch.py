"""Running a launched job and watching it: rank 0's output passed through, a wall-clock limit, and the blame.

Rank 0's output is passed through as it comes (launch tails ``workerlog.0``; its own INFO lines are left out);
every rank's full output stays in the log folder as ``workerlog.<local rank>``. When the job fails, the
message names the rank that failed first and its error (from the ranks' failure records, see
:func:`zoo.engine.distributed.worker.failure_report`), not the ranks that only lost their peer; a worker
killed by a signal leaves no exit record (``exit.rank<N>.json``, :func:`zoo.engine.distributed.worker.run_worker`)
and is named for that; nothing is read from launch's output but rank 0's lines to pass through. An optional wall-clock limit
(``timeout``) is a last resort against a job that stops making progress.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.engine.distributed.launch import LaunchPlan, launch_command
from zoo.engine.distributed.worker import EXIT_RECORD, die_with_parent, is_communication, write_worker_script
from zoo.errors import ZooError

_HTTP_LOG = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+\] \[\s*INFO\] _client\.py")  # launch's master requests


class JobFailed(ZooError):
    """A process of a multi-process job failed (exit code 1)."""

    def __init__(self, message: str, rank: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank


def _clean_log_dir(log_dir: Path) -> None:
    for pattern in ("failure.rank*.json", EXIT_RECORD.format(rank="*")):
        for old in log_dir.glob(pattern):
            old.unlink(missing_ok=True)


def _job_env(plan: LaunchPlan) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run(
    plan: LaunchPlan,
    worker_args: Sequence[str],
    *,
    timeout: float | None = None,
    echo: bool = True,
    hint: str = "",
) -> None:
    """Run ``zoo WORKER_ARGS`` on every process of ``plan`` and wait; :class:`JobFailed` names the failed rank.

    ``echo`` passes rank 0's output through (launch's own INFO lines are left out); ``timeout`` stops the
    whole job after that many seconds; ``hint`` ends the failure message (for example how to resume).
    """
    log_dir = Path(plan.log_dir).resolve()
    plan = LaunchPlan(plan.device, plan.nproc_per_node, plan.nnodes, plan.master, plan.node_rank, log_dir)
    script = write_worker_script(log_dir)
    _clean_log_dir(log_dir)
    cmd = launch_command(plan, script, worker_args)
    started = time.time()
    tail: deque[str] = deque(maxlen=30)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=_job_env(plan),
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    timed_out = False
    previous = _on_sigterm_interrupt()
    try:
        timed_out = _pump(proc, timeout, echo, tail)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM to this process: launch stops the ranks
        _stop(proc)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    code = proc.wait()
    if code == 0 and not timed_out:
        return
    message = failure_message(log_dir, started, code, tail, plan, timed_out, timeout)
    rank = _first_failure(log_dir, started)
    raise JobFailed(message + (f". {hint}" if hint else ""), rank=rank["rank"] if rank else None)


def _on_sigterm_interrupt() -> Any:
    """Turn SIGTERM into KeyboardInterrupt while a job runs (so the job is stopped, not orphaned)."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        return None


def _pump(
    proc: subprocess.Popen,
    timeout: float | None,
    echo: bool,
    tail: deque[str],
) -> bool:
    """Forward launch's output until it exits; True if ``timeout`` ran out first (the job is then stopped)."""
    import selectors

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout if timeout else None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    in_detail = False
    noise = False
    buffer = ""
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if deadline is not None and wait == 0.0:
            _stop(proc)
            return True
        if not selector.select(timeout=min(wait, 5.0) if wait is not None else 5.0):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536).decode("utf-8", "replace")
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split("\n")
        for line in lines:
            if line.startswith("LAUNCH"):
                if "ERROR LOG DETAIL" in line:
                    in_detail = True  # launch repeats the failed worker's log tail: the summary says it
                if "LAUNCH ERROR" in line or "LAUNCH WARNING" in line:
                    tail.append(line)
                continue
            tail.append(line)
            noise = _noise(line, noise)
            if echo and not in_detail and not noise:
                print(line, flush=True)
    if buffer and echo and not in_detail:
        print(buffer, flush=True)
    return False


def _noise(line: str, inside: bool) -> bool:
    """Paddle's start-up chatter (the ccache warning, the "Modified FLAGS" block): not worth echoing."""
    if "No ccache found" in line or line.strip() == "warnings.warn(warning_message)":
        return True
    if "Modified FLAGS detected" in line or _HTTP_LOG.match(line):
        return True
    if inside:
        return line.startswith(("FLAGS(", "====="))
    return False


def _stop(proc: subprocess.Popen) -> None:
    """Ask launch to stop its workers (it handles SIGTERM), then make sure nothing is left."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _failures(log_dir: Path, since: float) -> list[dict]:
    out = []
    for path in log_dir.glob("failure.rank*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("time", 0) >= since - 1:
            out.append(record)
    return sorted(out, key=lambda r: r["time"])


def _first_failure(log_dir: Path, since: float) -> dict | None:
    """The failure that started it: the earliest one that is not just a lost connection to a peer."""
    records = _failures(log_dir, since)
    real = [r for r in records if not is_communication(r)]
    return (real or records or [None])[0]


def _exits(log_dir: Path, since: float) -> dict[int, dict]:
    """The ranks' exit records (``exit.rank<N>.json``, written by each rank when ``zoo`` returns)."""
    out = {}
    for path in log_dir.glob(EXIT_RECORD.format(rank="*")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("time", 0) >= since - 1:
            out[int(record["rank"])] = record
    return out


def _unreported(log_dir: Path, since: float, plan: LaunchPlan) -> tuple[int, str, str] | None:
    """A rank of this node that ended badly without a failure record: (rank, how, its log). First a rank with
    no exit record (killed by a signal: it could not write one), then one that exited with an error code
    (130 is a rank stopped because another failed)."""
    exits = _exits(log_dir, since)
    first = (plan.node_rank or 0) * plan.nproc_per_node
    ranks = range(first, first + plan.nproc_per_node)
    for rank in ranks:
        if rank not in exits:
            return (
                rank,
                "ended without an exit record (killed by a signal)",
                str(log_dir / f"workerlog.{rank - first}"),
            )
    for rank in ranks:
        code = exits[rank]["code"]
        if code not in (0, 130):
            return rank, f"exited with code {code}", exits[rank]["log"]
    return None


def _log_tail(path: str | Path, lines: int = 6) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    keep = [line for line in text if line.strip() and not line.startswith(("I1", "W1", "=", "FLAGS("))]
    return "\n".join("    " + line for line in keep[-lines:])


def failure_message(
    log_dir: Path,
    since: float,
    code: int,
    tail: deque[str],
    plan: LaunchPlan,
    timed_out: bool,
    timeout: float | None,
) -> str:
    if timed_out:
        return (
            f"the job did not finish within {timeout:.0f} s and was stopped; every rank's output is in "
            f"{log_dir}/workerlog.*"
        )
    first = _first_failure(log_dir, since)
    if first is not None and not is_communication(first):
        return (
            f"rank {first['rank']} of {first['world_size']} failed: {first['type']}: {first['message']} "
            f"(its output: {first['log']}); the other ranks were stopped"
        )
    silent = _unreported(log_dir, since, plan)
    if silent is not None:
        rank, how, log = silent
        return (
            f"rank {rank} {how} without reporting an error (out of memory, or killed?); the other ranks "
            f"were stopped. Last lines of its output ({log}):\n{_log_tail(log)}"
        )
    if first is not None:
        elsewhere = (
            "; a rank on another node probably failed first: see that node's output"
            if plan.nnodes > 1
            else ""
        )
        return (
            f"rank {first['rank']} lost the connection to the other ranks ({first['type']}: "
            f"{first['message'][:300]}){elsewhere} (its output: {first['log']})"
        )
    if plan.nnodes > 1:
        return (
            f"the job stopped (paddle.distributed.launch exit code {code}): a process on another node failed "
            f"or the nodes could not meet at --master {plan.master}; see the other nodes' output and "
            f"{log_dir}"
        )
    last = "\n".join("    " + line for line in list(tail)[-12:])
    return f"paddle.distributed.launch failed (exit code {code}); its last output:\n{last}"
