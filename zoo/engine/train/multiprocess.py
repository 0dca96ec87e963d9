"""``zoo train`` on several processes: its flags, how many processes it runs, and the job.

The parent resolves the config once, writes it beside the launch logs and runs ``zoo train --config`` on
every process through :func:`zoo.engine.distributed.watch.run`; a failed job ends with how to resume it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from zoo import storage
from zoo.atomic import atomic_write_text
from zoo.config import ZooConfig
from zoo.engine.distributed import context as distributed
from zoo.engine.distributed.launch import LaunchPlan, check_master, gpu_count
from zoo.engine.distributed.watch import JobFailed, run
from zoo.engine.runs.bucket import RunMirror, is_bucket_run, local_run_dir
from zoo.errors import DataError, UsageError, ZooError
from zoo.storage import redact_tree


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
    save_dir = local_run_dir(cfg.train.save_dir)  # a bucket run: its local staging copy
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
    run_dir = local_run_dir(t.save_dir)
    mirror = None
    if is_bucket_run(t.save_dir):  # the bucket's run copied once here; rank 0 uploads as it goes
        mirror = RunMirror(t.save_dir, run_dir, log=lambda message: print(message, file=sys.stderr))
        mirror.pull()
    if t.batch_size % plan.world_size:
        raise UsageError(
            f"train.batch_size {t.batch_size} (the global batch) is not divisible by the "
            f"{plan.world_size} processes; choose a multiple of {plan.world_size}"
        )
    resume, overwrite = getattr(args, "resume", False), getattr(args, "overwrite", False)
    shown = storage.redact(t.save_dir) if mirror is not None else run_dir
    if resume and checkpoint.latest_checkpoint(run_dir) is None:
        raise ZooError(f"--resume: no checkpoint in {shown} (train.save_dir); start without --resume")
    if not resume and not overwrite and checkpoint.latest_checkpoint(run_dir) is not None:
        raise ZooError(
            f"{shown} already holds checkpoints of a run: continue it with --resume, start over "
            f"with --overwrite, or choose another --save_dir"
        )
    plan.log_dir.mkdir(parents=True, exist_ok=True)
    # the log folder keeps the config with the credentials of its URLs redacted; the workers read the full
    # one from a private file outside the run (mode 0600, removed when the job ends)
    atomic_write_text(plan.log_dir / "config.json", json.dumps(redact_tree(cfg.to_dict()), indent=1))
    private = Path(tempfile.mkdtemp(prefix="zoo-launch-"))
    config_path = private / "config.json"
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg.to_dict(), f, indent=1)
    try:
        return _run_job(args, cfg, plan, run_dir, config_path, mirror)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _run_job(
    args: argparse.Namespace,
    cfg: ZooConfig,
    plan: LaunchPlan,
    run_dir: Path,
    config_path: Path,
    mirror: RunMirror | None,
) -> int:
    from zoo.engine.runs import checkpoint

    t = cfg.train
    resume, overwrite = getattr(args, "resume", False), getattr(args, "overwrite", False)
    worker_args = ["train", "--config", str(config_path), "--device", plan.device]
    if resume:
        worker_args.append("--resume")
    for key in getattr(args, "allow_change", None) or []:
        worker_args += ["--allow-change", key]
    if overwrite:
        worker_args.append("--overwrite")
    if getattr(args, "pretrain", None):
        worker_args += ["--pretrain", str(args.pretrain)]
    logs = f"{storage.redact(t.save_dir.rstrip('/'))}/logs" if mirror is not None else str(plan.log_dir)
    print(
        f"training {cfg.model_name} on {plan.describe()} through paddle.distributed.launch "
        f"(global batch {t.batch_size}, {t.batch_size // plan.world_size} per process); every rank's output: "
        f"{logs}/workerlog.*",
        file=sys.stderr,
        flush=True,
    )
    try:
        run(plan, worker_args)
    except JobFailed as exc:
        if mirror is not None:
            with contextlib.suppress(DataError):  # every rank's log, beside the run's last checkpoint
                mirror.push(under="logs/")
        latest = checkpoint.latest_checkpoint(run_dir)
        if latest is not None:
            step = json.loads((latest / "state.json").read_text()).get("step")
            where = (
                f"{storage.redact(t.save_dir.rstrip('/'))}/{checkpoint.CHECKPOINTS}/{latest.name}"
                if mirror is not None
                else latest
            )
            hint = (
                f"The last checkpoint is step {step} ({where}): fix the cause, then run the same command "
                f"with --resume"
            )
        else:
            hint = "No checkpoint was written yet: fix the cause and start again (add --overwrite if needed)"
        raise JobFailed(f"{exc}. {hint}", rank=exc.rank) from None
    if mirror is not None:  # the ranks' complete logs; rank 0 uploaded the rest
        mirror.push(under="logs/")
        mirror.discard_staging()
    return 0
