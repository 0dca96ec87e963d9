"""Data plumbing shared by every reader plugin: source expansion and the batch pipeline.

- :func:`expand_paths`: files, directories, glob patterns and ``.list`` files -> the files to read.
- :func:`batches`: a reader -> padded numpy batches for one rank and epoch (sharding, shuffling,
  ``paddle.io`` workers, resume); :func:`count_records`; :func:`collate`.

Importing this package does not import paddle (only worker processes need it).
"""

from __future__ import annotations

from zoo.data.pipeline import Batches, SkippedRecord, batches, collate, count_records, plan_epoch
from zoo.data.sources import expand_paths, read_list_file

__all__ = [
    "Batches",
    "SkippedRecord",
    "batches",
    "collate",
    "count_records",
    "expand_paths",
    "plan_epoch",
    "read_list_file",
]
