"""Several processes per job through ``paddle.distributed.launch``: checks, the command, the watch, the blame.

yt8m-zoo has no launcher of its own. The parent process (``zoo train --gpus 4``, ``zoo bench``) resolves the
config once, then runs ``python -m paddle.distributed.launch --nproc_per_node N ... zoo_worker.py ARGS``;
launch starts one process per device (NCCL between GPUs, gloo between CPU processes), sets
``PADDLE_TRAINER_ID`` / ``PADDLE_TRAINERS_NUM`` and, when one process fails, stops the others (a peer on
another node learns it through the master). What this module adds:

- device checks before anything starts (``--gpus 4`` with a CPU-only paddle is a usage error at once);
- each worker records why it failed (``failure.rank<N>.json`` in the launch log folder, see
  :func:`failure_report`), so the parent names the rank that failed first and its error, not the ranks that
  only lost their peer; a worker killed by a signal leaves no record and is named from launch's own report;
- an optional wall-clock limit (``timeout``) as a last resort against a job that stops making progress.

Rank 0's output is passed through as it comes (launch tails ``workerlog.0``); every rank's full output
stays in the log folder as ``workerlog.<local rank>``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.atomic import atomic_write_text
from zoo.config import ZooConfig
from zoo.engine.distributed import context as distributed
from zoo.errors import UsageError, ZooError

WORKER_SCRIPT = "zoo_worker.py"
_WORKER_SOURCE = '''\
"""Written by zoo.engine.distributed.launch: what paddle.distributed.launch runs on every rank."""
import sys

import zoo  # noqa: F401  (sets the environment before paddle loads)
from zoo.cli import main

sys.exit(main(sys.argv[1:]))
'''
_CONTAINER_FAILED = re.compile(r"Container rank (\d+) status failed .*? code (-?\d+) log (\S+)")
_HTTP_LOG = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+\] \[\s*INFO\] _client\.py")  # launch's master requests
_COMMUNICATION = re.compile(
    r"gloo|nccl|connection (reset|closed|refused)|timed? ?out|socket|tcp_store|pair\.cc", re.IGNORECASE
)


class JobFailed(ZooError):
    """A process of a multi-process job failed (exit code 1)."""

    def __init__(self, message: str, rank: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank


@dataclass(frozen=True)
class LaunchPlan:
    """How many processes, on what, and where they log."""

    device: str = "cpu"  # "cpu" or "gpu"
    nproc_per_node: int = 1
    nnodes: int = 1
    master: str | None = None  # host:port of node 0 when nnodes > 1
    node_rank: int | None = None
    log_dir: Path = Path("logs")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def needs_launch(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        n = self.nproc_per_node
        text = (
            f"{n} GPU{'s' if n > 1 else ''}"
            if self.device == "gpu"
            else f"{n} CPU process{'es' if n > 1 else ''}"
        )
        if self.nnodes > 1:
            text += f" per node x {self.nnodes} nodes (this is node {self.node_rank}, master {self.master})"
        return text


# ---------------------------------------------------------------------------------------------------------
# Checks


def gpu_count(requested: int, flag: str = "--gpus") -> int:
    """Check that this machine can run ``requested`` GPU processes; returns the visible GPU count."""
    from zoo.engine.runtime import visible_gpus

    count = visible_gpus(f"{flag} {requested}", "train on CPU processes with --cpu-procs N")
    if requested > count:
        raise UsageError(
            f"{flag} {requested}: this machine has only {count} visible GPU(s); ask for at most "
            f"{count} (per node), or add nodes with --nnodes"
        )
    return count


def check_master(master: str | None, nnodes: int, node_rank: int | None) -> None:
    if nnodes < 1:
        raise UsageError(f"--nnodes {nnodes}: must be at least 1")
    if nnodes == 1:
        if node_rank not in (None, 0):
            raise UsageError(f"--node-rank {node_rank}: a single-node job has only node 0")
        return
    if not master or not re.fullmatch(r"[^\s:]+:\d+", master):
        raise UsageError(
            f"--nnodes {nnodes}: give --master HOST:PORT, the address of node 0 that every node "
            f"can reach (for example --master 10.0.0.1:8090)"
        )
    if node_rank is None or not 0 <= node_rank < nnodes:
        raise UsageError(
            f"--nnodes {nnodes}: give --node-rank K (0 on the master node, 1..{nnodes - 1} on the others)"
        )


# ---------------------------------------------------------------------------------------------------------
# Worker side


def worker_context(device: str) -> distributed.DistContext:
    """In a launched process: paddle on this rank's device, a fair share of the CPU cores, the process group."""
    from zoo.engine.runtime import cpu_count, init_paddle

    _die_with_parent()
    threads = max(1, cpu_count() // max(1, distributed.local_size())) if device == "cpu" else None
    if device == "cpu":
        os.environ["PADDLE_DISTRI_BACKEND"] = "gloo"  # a GPU build of paddle would pick NCCL
    init_paddle(device, threads=threads)
    ctx = distributed.context()
    distributed.init(ctx)
    return ctx


def _die_with_parent() -> None:
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
            if ctx.distributed and not isinstance(exc, ZooError) and _is_communication(record):
                # a consequence, not a cause: one line instead of a traceback (the parent names the cause)
                raise ZooError(f"rank {ctx.rank} lost the connection to the other ranks: {exc}") from None
        raise


# ---------------------------------------------------------------------------------------------------------
# Parent side


def write_worker_script(log_dir: Path) -> Path:
    """The entry point launch starts; alone in its folder so nothing beside it shadows a module."""
    log_dir.mkdir(parents=True, exist_ok=True)
    script = log_dir / WORKER_SCRIPT
    atomic_write_text(script, _WORKER_SOURCE)
    return script


def launch_command(plan: LaunchPlan, script: Path, worker_args: Sequence[str]) -> list[str]:
    """The ``python -m paddle.distributed.launch ...`` command line for ``plan``."""
    cmd = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        str(plan.nproc_per_node),
        "--log_dir",
        str(plan.log_dir),
        "--log_overwrite",
        "True",
        "--job_id",
        "zoo",
    ]
    if plan.nnodes > 1:
        cmd += ["--nnodes", str(plan.nnodes), "--master", str(plan.master)]
        if plan.node_rank is not None:
            cmd += ["--rank", str(plan.node_rank)]
    return cmd + [str(script), *worker_args]


def _clean_log_dir(log_dir: Path) -> None:
    for old in log_dir.glob("failure.rank*.json"):
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
    containers: list[tuple[int, int, str]] = []
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env=_job_env(plan),
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    timed_out = False
    previous = _on_sigterm_interrupt()
    try:
        timed_out = _pump(proc, timeout, echo, tail, containers)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM to this process: launch stops the ranks
        _stop(proc)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    code = proc.wait()
    if code == 0 and not timed_out:
        return
    message = _failure_message(log_dir, started, code, containers, tail, plan, timed_out, timeout)
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
    containers: list[tuple[int, int, str]],
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
            found = _CONTAINER_FAILED.search(line)
            if found:
                containers.append((int(found.group(1)), int(found.group(2)), found.group(3)))
                continue
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


def _is_communication(record: dict) -> bool:
    return bool(_COMMUNICATION.search(f"{record.get('type', '')}: {record.get('message', '')}"))


def _first_failure(log_dir: Path, since: float) -> dict | None:
    """The failure that started it: the earliest one that is not just a lost connection to a peer."""
    records = _failures(log_dir, since)
    real = [r for r in records if not _is_communication(r)]
    return (real or records or [None])[0]


def _log_tail(path: str | Path, lines: int = 6) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    keep = [line for line in text if line.strip() and not line.startswith(("I1", "W1", "=", "FLAGS("))]
    return "\n".join("    " + line for line in keep[-lines:])


def _failure_message(
    log_dir: Path,
    since: float,
    code: int,
    containers: list[tuple[int, int, str]],
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
    if first is not None and not _is_communication(first):
        return (
            f"rank {first['rank']} of {first['world_size']} failed: {first['type']}: {first['message']} "
            f"(its output: {first['log']}); the other ranks were stopped"
        )
    if containers:
        rank, exit_code, log = containers[0]
        how = f"was killed by signal {-exit_code}" if exit_code < 0 else f"exited with code {exit_code}"
        detail = _log_tail(log)
        return (
            f"rank {rank} {how} without reporting an error (out of memory, or killed?); the other ranks "
            f"were stopped. Last lines of its output ({log}):\n{detail}"
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


# ---------------------------------------------------------------------------------------------------------
# `zoo train` on several processes


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """--gpus, --cpu-procs, --nnodes, --master, --node-rank (``zoo train``)."""
    group = parser.add_argument_group("several devices (paddle.distributed.launch; see docs/distributed.md)")
    group.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="train on N GPUs per node, one process each (default: train.num_gpus with "
        "--device gpu); train.batch_size stays the global batch",
    )
    group.add_argument(
        "--cpu-procs",
        "--cpu_procs",
        dest="cpu_procs",
        type=int,
        metavar="N",
        help="train in N CPU processes that talk over gloo (tests, CI, machines without GPUs)",
    )
    group.add_argument("--nnodes", type=int, default=1, metavar="N", help="nodes taking part (default 1)")
    group.add_argument(
        "--master", metavar="HOST:PORT", help="with --nnodes > 1: node 0's address and a free port"
    )
    group.add_argument(
        "--node-rank",
        "--node_rank",
        dest="node_rank",
        type=int,
        metavar="K",
        help="with --nnodes > 1: this node's rank (0 on the master node)",
    )


def check_train_args(args: argparse.Namespace) -> None:
    """Flag combinations and device counts, checked before any data is touched."""
    gpus, procs, device = (
        getattr(args, "gpus", None),
        getattr(args, "cpu_procs", None),
        getattr(args, "device", None),
    )
    if distributed.in_launched_job():
        return
    if gpus is not None and procs is not None:
        raise UsageError("--gpus and --cpu-procs: pick one")
    if gpus is not None:
        if gpus < 1:
            raise UsageError(f"--gpus {gpus}: must be at least 1")
        if device and not device.startswith("gpu"):
            raise UsageError(
                f"--gpus {gpus} trains on GPUs, but --device is {device}: drop --device (or use "
                f"--cpu-procs for CPU processes)"
            )
        gpu_count(gpus)
        if gpus == 1 and getattr(args, "nnodes", 1) == 1:
            args.device = device or "gpu"
    if procs is not None:
        if procs < 1:
            raise UsageError(f"--cpu-procs {procs}: must be at least 1")
        if device and device != "cpu":
            raise UsageError(f"--cpu-procs {procs} trains on CPU processes, but --device is {device}")
    check_master(getattr(args, "master", None), getattr(args, "nnodes", 1), getattr(args, "node_rank", None))


def train_plan(args: argparse.Namespace, cfg: ZooConfig) -> LaunchPlan:
    """How many processes ``zoo train`` runs, from the flags and ``train.num_gpus``."""
    gpus, procs = getattr(args, "gpus", None), getattr(args, "cpu_procs", None)
    nnodes = getattr(args, "nnodes", 1) or 1
    device = (getattr(args, "device", None) or "cpu").split(":")[0]
    if gpus is not None:
        device, n = "gpu", gpus
    elif procs is not None:
        device, n = "cpu", procs
    elif device == "gpu":
        n = max(1, int(cfg.train.num_gpus))
        if n > 1 and not distributed.in_launched_job():
            gpu_count(n, flag="train.num_gpus")
    else:
        n = 1
        if int(cfg.train.num_gpus) > 1 and not distributed.in_launched_job():
            print(
                f"note: train.num_gpus={cfg.train.num_gpus} applies to --device gpu; training in one CPU "
                f"process (--gpus N for GPUs, --cpu-procs N for several CPU processes)",
                file=sys.stderr,
            )
    save_dir = Path(cfg.train.save_dir)
    node_rank = getattr(args, "node_rank", None)
    log_dir = save_dir / "logs" / (f"node{node_rank}" if nnodes > 1 else "")
    return LaunchPlan(
        device=device,
        nproc_per_node=n,
        nnodes=nnodes,
        master=getattr(args, "master", None),
        node_rank=node_rank,
        log_dir=log_dir,
    )


def launch_training(args: argparse.Namespace, cfg: ZooConfig, plan: LaunchPlan) -> int:
    """Run ``zoo train`` on every process of ``plan`` with the config resolved here, once."""
    from zoo.engine.runs import checkpoint

    t = cfg.train
    run_dir = Path(t.save_dir)
    if t.batch_size % plan.world_size:
        raise UsageError(
            f"train.batch_size {t.batch_size} (the global batch) is not divisible by the "
            f"{plan.world_size} processes; choose a multiple of {plan.world_size}"
        )
    resume, overwrite = getattr(args, "resume", False), getattr(args, "overwrite", False)
    if resume and checkpoint.latest_checkpoint(run_dir) is None:
        raise ZooError(f"--resume: no checkpoint in {run_dir} (train.save_dir); start without --resume")
    if not resume and not overwrite and checkpoint.latest_checkpoint(run_dir) is not None:
        raise ZooError(
            f"{run_dir} already holds checkpoints of a run: continue it with --resume, start over "
            f"with --overwrite, or choose another --save_dir"
        )
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    config_path = plan.log_dir / "config.json"
    atomic_write_text(config_path, json.dumps(cfg.to_dict(), indent=1))
    worker_args = ["train", "--config", str(config_path.resolve()), "--device", plan.device]
    if resume:
        worker_args.append("--resume")
    for key in getattr(args, "allow_change", None) or []:
        worker_args += ["--allow-change", key]
    if overwrite:
        worker_args.append("--overwrite")
    if getattr(args, "pretrain", None):
        worker_args += ["--pretrain", str(args.pretrain)]
    print(
        f"training {cfg.model_name} on {plan.describe()} through paddle.distributed.launch "
        f"(global batch {t.batch_size}, {t.batch_size // plan.world_size} per process); every rank's output: "
        f"{plan.log_dir}/workerlog.*",
        file=sys.stderr,
        flush=True,
    )
    try:
        run(plan, worker_args)
    except JobFailed as exc:
        latest = checkpoint.latest_checkpoint(run_dir)
        if latest is not None:
            step = json.loads((latest / "state.json").read_text()).get("step")
            hint = (
                f"The last checkpoint is step {step} ({latest}): fix the cause, then run the same command "
                f"with --resume"
            )
        else:
            hint = "No checkpoint was written yet: fix the cause and start again (add --overwrite if needed)"
        raise JobFailed(f"{exc}. {hint}", rank=exc.rank) from None
    return 0
