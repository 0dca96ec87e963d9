"""Several processes per job through ``paddle.distributed.launch``: the plan, its checks and the command line.

yt8m-zoo has no launcher of its own. The parent process (``zoo train --gpus 4``, ``zoo bench``) resolves the
config once, then runs ``python -m paddle.distributed.launch --nproc_per_node N ... zoo_worker.py ARGS``;
launch starts one process per device (NCCL between GPUs, gloo between CPU processes), sets
``PADDLE_TRAINER_ID`` / ``PADDLE_TRAINERS_NUM`` and, when one process fails, stops the others (a peer on
another node learns it through the master). Device checks run before anything starts (``--gpus 4`` with a
CPU-only paddle is a usage error at once). Running the job and naming the rank that failed:
:mod:`zoo.engine.distributed.watch`; what runs in each process: :mod:`zoo.engine.distributed.worker`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import UsageError


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
