"""The ``paddle.io.IterableDataset`` that runs one part of :class:`zoo.data.pipeline.Batches` per worker.

Kept apart from the pipeline so that importing the pipeline does not import paddle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import paddle.io

from zoo.contracts import SkipReportingReader
from zoo.errors import ZooError

_KEEP = np.zeros(1, np.int8)


def _core_type(exc: ZooError) -> str:
    """The name of the nearest ``zoo.errors`` class of ``exc`` (a plugin's subclass maps to its base)."""
    import zoo.errors

    for cls in type(exc).__mro__:
        if getattr(zoo.errors, cls.__name__, None) is cls:
            return cls.__name__
    return "ZooError"


class WorkerDataset(paddle.io.IterableDataset):
    """In worker ``w``: the batches of this rank's part ``w``, tagged with ``w``, then an end marker.

    Errors travel as a marker too, so the main process re-raises them with their own type and message
    (paddle would wrap them in a traceback dump). Markers carry a one-element array: paddle drops items
    that hold no array at all.
    """

    def __init__(self, stream: Any, skips: list[int], transfer: Callable[[dict, int], dict]) -> None:
        self.stream = stream
        self.skips = skips
        self.transfer = transfer  # pipeline.to_transfer, passed in so that this module needs no pipeline

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = paddle.io.get_worker_info()
        worker = info.id if info is not None else 0
        reader = self.stream.reader
        reports = isinstance(reader, SkipReportingReader)
        before = len(reader.skipped) if reports else 0
        try:
            for batch in self.stream.part_batches(self.stream.parts()[worker], self.skips[worker]):
                yield self.transfer(batch, worker)
        except ZooError as exc:
            yield {"_worker": worker, "_error": str(exc), "_error_type": _core_type(exc), "_keep": _KEEP}
            return
        except Exception as exc:  # noqa: BLE001 - re-raised in the main process
            yield {
                "_worker": worker,
                "_error": f"{type(exc).__name__}: {exc}",
                "_error_type": "ZooError",
                "_keep": _KEEP,
            }
            return
        skipped = [
            [s.path, s.index, s.problem, s.recoverable] for s in (reader.skipped if reports else [])[before:]
        ]
        yield {"_worker": worker, "_end": 1, "_skipped": json.dumps(skipped), "_keep": _KEEP}
