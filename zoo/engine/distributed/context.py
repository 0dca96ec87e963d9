"""Which process this is in a ``paddle.distributed`` job, and the few collectives the engine needs.

Outside a job every helper is the single-process identity (rank 0 of 1, no communication), so the trainer
and the evaluation loop run the same code with one process or many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def in_launched_job() -> bool:
    """True in a process started by ``paddle.distributed.launch`` (it sets these variables)."""
    return "PADDLE_TRAINERS_NUM" in os.environ and "PADDLE_TRAINER_ID" in os.environ


def context() -> DistContext:
    """Read from the environment that ``paddle.distributed.launch`` sets for each process."""
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    return DistContext(rank=rank, world_size=world)


def local_rank() -> int:
    """Index of this process on its node (launch names the log ``workerlog.<local rank>``)."""
    return int(os.environ.get("PADDLE_LOCAL_RANK", os.environ.get("PADDLE_RANK_IN_NODE", "0")))


def local_size() -> int:
    """Processes of this job on this node."""
    return int(os.environ.get("PADDLE_LOCAL_SIZE", "1"))


def init(ctx: DistContext) -> None:
    """Join the job's process group (NCCL on GPUs, gloo on CPU: launch picks the backend)."""
    if ctx.distributed:
        import paddle.distributed as dist

        dist.init_parallel_env()


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (a list of one element when run alone)."""
    if not ctx.distributed:
        return [obj]
    import paddle.distributed as dist

    out: list[Any] = []
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    return all_gather_objects(obj, ctx)[0]


def all_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of ``values`` over the ranks, in float64 (counts stay exact up to 2**53)."""
    if not ctx.distributed:
        return [float(v) for v in values]
    import paddle
    import paddle.distributed as dist

    t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.numpy()]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import paddle.distributed as dist

        dist.barrier()


def state_tensors(model: Any) -> list[Any]:
    """The model's tensors that training changes without gradients: BatchNorm running statistics and
    other buffers. Data parallelism keeps parameters identical on every rank, not these."""
    return [t for t in model.state_dict().values() if t.stop_gradient]


def broadcast_state(model: Any, ctx: DistContext) -> None:
    """Give every rank rank 0's running statistics (the model rank 0 saves is the one every rank evaluates)."""
    if not ctx.distributed:
        return
    import paddle.distributed as dist

    for t in state_tensors(model):
        dist.broadcast(t, src=0)


def snapshot_state(model: Any) -> list[np.ndarray]:
    return [t.numpy().copy() for t in state_tensors(model)]


def restore_state(model: Any, saved: list[np.ndarray] | None) -> None:
    """Undo what a zero-weight step did to the running statistics."""
    if saved is None:
        return
    for t, value in zip(state_tensors(model), saved):
        t.set_value(value)


def filler_batch(features: dict[str, int], num_classes: int) -> dict[str, Any]:
    """One all-zero video with one frame: what a rank without data feeds in a zero-weight step."""
    batch: dict[str, Any] = {name: np.zeros((1, 1, size), np.float32) for name, size in features.items()}
    batch["mask"] = np.ones((1, 1), np.float32)
    batch["num_frames"] = np.ones(1, np.int64)
    batch["labels"] = np.zeros((1, num_classes), np.float32)
    batch["ids"] = [""]
    return batch
