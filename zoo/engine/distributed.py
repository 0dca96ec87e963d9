"""Which process this is in a ``paddle.distributed`` job (rank 0 of 1 when run alone)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


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


def context() -> DistContext:
    """Read from the environment that ``paddle.distributed.launch`` sets for each process."""
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    return DistContext(rank=rank, world_size=world)


def init(ctx: DistContext) -> None:
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


def all_true(flag: bool, ctx: DistContext) -> bool:
    """True when ``flag`` is true on every rank (ranks stop an epoch together)."""
    if not ctx.distributed:
        return flag
    import paddle
    import paddle.distributed as dist

    t = paddle.to_tensor([1 if flag else 0], dtype="int32")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(int(t.item()))
