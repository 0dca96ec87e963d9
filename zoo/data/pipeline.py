"""From a reader to padded batches, on ``paddle.io``: sharding, seeded shuffling, workers, resume.

What :func:`batches` yields, for one rank and one epoch: dicts of numpy arrays (the batch contract): one
float32 ``[B, T, D]`` array per feature of ``spec.features`` (zero-padded; ``T`` the longest video in the
batch, at least 1), ``mask`` float32 ``[B, T]``, ``num_frames`` int64 ``[B]``, ``labels`` float32
``[B, num_classes]`` (multi-hot), ``ids`` (list of str) and, when the reader's records say which classes
count (``label_mask``: segment-level training), ``label_mask`` float32 ``[B, num_classes]``.

How the work is split: the ``world_size * max(1, num_workers)`` (rank, worker) pairs are *parts*. With
enough files (every part gets the same number of files, give or take 10%), part ``p`` reads whole files
``p, p + P, p + 2P, ...`` of the epoch's file order; otherwise every part reads every file but keeps only
its own records (record ``i`` of file ``f`` belongs to part ``(i + f) mod P``; the others are skipped by
seeking, not decoded). Either way every record is read exactly once per epoch across all ranks and
workers. Ranks can therefore get different numbers of batches (files hold different numbers of videos);
the engine deals with that. Each part batches its own records, so with ``W`` workers a rank may see up to
``W`` short batches per epoch (none with ``drop_last``).

Order: with ``shuffle`` the file order is permuted by ``(seed, epoch)`` and each part passes its records
through a shuffle buffer of ``shuffle_buffer`` videos seeded by ``(seed, epoch, part)``; without it files
and records keep their order. Worker outputs are merged round-robin (worker 0, 1, ..., 0, 1, ...; a
finished worker drops out), so a given ``(seed, epoch, rank, world_size, num_workers)`` always yields the
same batches in the same order, and ``skip_batches=k`` yields exactly what follows the first ``k``.

Length buckets (``bucket_by_length``): a part cuts its record stream (after the shuffle buffer) into windows
of ``max(1, shuffle_buffer // batch_size)`` batches, sorts each window by length (ties keep their order),
cuts it into batches and, with ``shuffle``, emits them in an order permuted by ``(seed, epoch, part)``, so
batches are not in length order and padding is small. Each window is a whole number of batches, so a part
yields as many batches as without buckets (only the epoch's last window can hold the short batch), which
keeps resume exact: skipped batches are formed from their records but not filled. With ``drop_last`` the
records dropped are the same as without buckets (the last ones of the stream), not the longest videos.

Memory stays bounded: a part holds at most ``shuffle_buffer`` videos (as the reader's compact records,
uint8 for quantized data; twice that with length buckets: the buffer and a window) plus the batch being
assembled; paddle's DataLoader prefetches 2 batches per worker.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.config import DatasetSpec
from zoo.contracts import (
    CountingReader,
    DequantizingReader,
    PartCountingReader,
    PartitionedReader,
    PrefetchingReader,
)
from zoo.errors import DataError, ZooError

# The C kernel that fills batches from uint8 frames (zoo/data/_fastfill.c); None where it was not built, or
# with ZOO_FAST_FILL=0. numpy gives the same values, about half as fast.
try:
    from zoo.data import _fastfill as FAST_FILL
except ImportError:  # pragma: no cover - built by pip install wherever a C compiler is present
    FAST_FILL = None
if os.environ.get("ZOO_FAST_FILL") == "0":
    FAST_FILL = None
_NO_TABLE = np.zeros(256, np.float32)

Task = tuple[str, int, int]  # (source, first record, step)


@dataclass(frozen=True)
class SkippedRecord:
    """A damaged record a reader skipped (``skip_corrupt``): file, record index, what was wrong.

    ``recoverable`` is False when the damage ended the file (truncation): the records after it are lost too.
    """

    path: str
    index: int
    problem: str
    recoverable: bool = True


@dataclass(frozen=True)
class Plan:
    """Who reads what in one epoch."""

    parts: int
    by_file: bool
    tasks: tuple[tuple[Task, ...], ...]  # per part

    def part_tasks(self, part: int) -> tuple[Task, ...]:
        return self.tasks[part]


def plan_epoch(sources: list[str], *, parts: int, shuffle: bool, seed: int, epoch: int) -> Plan:
    """Assign every record of ``sources`` to exactly one of ``parts`` parts (see the module docstring)."""
    if parts < 1:
        raise ValueError("parts must be >= 1")
    order = list(range(len(sources)))
    if shuffle:
        random.Random(_stable_seed(seed, epoch, "files", 0)).shuffle(order)
    files = [sources[i] for i in order]
    n = len(files)
    by_file = n >= parts and math.ceil(n / parts) <= 1.1 * (n // parts)
    if by_file:
        tasks = tuple(tuple((f, 0, 1) for f in files[p::parts]) for p in range(parts))
    else:
        tasks = tuple(tuple((f, (p - k) % parts, parts) for k, f in enumerate(files)) for p in range(parts))
    return Plan(parts=parts, by_file=by_file, tasks=tasks)


def _stable_seed(seed: int, epoch: int, what: str, part: int) -> int:
    """A seed that is the same in every process and Python run (``hash()`` of str is salted)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(part), sum(map(ord, what))])
    return int(ss.generate_state(1)[0])


# ---------------------------------------------------------------------------------------------------------
# Reading one part


def _read_task(reader: Any, task: Task) -> Iterator[dict[str, Any]]:
    source, start, step = task
    if isinstance(reader, PartitionedReader):
        yield from reader.read_part(source, start, step)
        return
    for i, record in enumerate(reader.read(source)):
        if i % step == start:
            yield record


def _prefetching(reader: Any, tasks: list[Task]) -> Iterator[dict[str, Any]]:
    """The records of ``tasks`` in order; a :class:`~zoo.contracts.PrefetchingReader` is told the next task's
    source as each task starts, so that a second file is in flight (remote data)."""
    prefetching = isinstance(reader, PrefetchingReader)
    for i, task in enumerate(tasks):
        if prefetching and i + 1 < len(tasks) and tasks[i + 1][0] != task[0]:
            reader.prefetch(tasks[i + 1][0])
        yield from _read_task(reader, task)


def _part_records(
    reader: Any, tasks: Iterable[Task], shuffle_buffer: int, rng: random.Random | None
) -> Iterator[dict[str, Any]]:
    records = _prefetching(reader, list(tasks))
    if rng is None or shuffle_buffer <= 1:
        yield from records
        return
    buffer: list[dict[str, Any]] = []
    for record in records:
        if len(buffer) < shuffle_buffer:
            buffer.append(record)
            continue
        j = rng.randrange(shuffle_buffer)
        out = buffer[j]
        buffer[j] = record
        yield out
    rng.shuffle(buffer)
    yield from buffer


def _record_groups(
    records: Iterable[dict[str, Any]],
    batch_size: int,
    drop_last: bool,
    window: int,
    rng: random.Random | None,
) -> Iterator[list[dict[str, Any]]]:
    """The records of each batch, in order. ``window`` (a multiple of ``batch_size``, or 0 for no length
    buckets): videos sorted by length before batching; ``rng`` shuffles the batch order of each window."""
    if not window:
        pending: list[dict[str, Any]] = []
        for record in records:
            pending.append(record)
            if len(pending) == batch_size:
                yield pending
                pending = []
        if pending and not drop_last:
            yield pending
        return
    held: list[dict[str, Any]] = []
    for record in records:
        held.append(record)
        if len(held) == window:
            yield from _bucket_window(held, batch_size, rng)
            held = []
    if drop_last:
        del held[len(held) - len(held) % batch_size :]
    if held:
        yield from _bucket_window(held, batch_size, rng)


def _bucket_window(
    window: list[dict[str, Any]], batch_size: int, rng: random.Random | None
) -> list[list[dict[str, Any]]]:
    ordered = sorted(window, key=lambda r: int(r["num_frames"]))  # stable: equal lengths keep their order
    groups = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    return groups


def bucket_window(shuffle_buffer: int, batch_size: int) -> int:
    """Videos sorted together with length buckets: the most whole batches that fit the shuffle buffer."""
    return max(1, shuffle_buffer // batch_size) * batch_size


def padding_fraction(lengths: Iterable[int], batch_sizes: Iterable[int]) -> float:
    """The share of frame slots that are padding when ``lengths`` (in batch order) are batched as given."""
    lengths = list(lengths)
    slots = start = 0
    for size in batch_sizes:
        chunk = lengths[start : start + size]
        slots += max(chunk, default=0) * len(chunk)
        start += size
    return 1.0 - sum(lengths) / slots if slots else 0.0


class BufferPool:
    """Recycles the big batch arrays once nobody holds them any more.

    A fresh 80 MB array costs page faults (the kernel zeroes every page) that take longer than filling it;
    reusing the memory of a batch the consumer has already dropped avoids that. A buffer is reused only
    when its reference count shows that no batch array (a view of it) is alive, so a consumer that keeps a
    batch keeps it intact. The pipeline shares one pool per process (:data:`SHARED_POOL`), so that every
    pass over the data reuses the same memory; it is safe to use from several threads.
    """

    def __init__(self, per_key: int = 3) -> None:
        self.per_key = per_key
        self.buffers: dict[str, list[np.ndarray]] = {}
        self.lock = threading.Lock()

    def array(self, key: str, shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
        n = int(np.prod(shape))
        with self.lock:
            buffers = self.buffers.setdefault(f"{key}:{np.dtype(dtype).str}", [])
            # 2 references = the pool's list + getrefcount's argument: no batch array (a view) is alive
            free = [i for i in range(len(buffers)) if sys.getrefcount(buffers[i]) <= 2]
            for i in free:
                if buffers[i].size >= n:
                    return buffers[i][:n].reshape(shape)
            flat = np.empty(n, dtype)
            if len(buffers) < self.per_key:
                buffers.append(flat)
            elif free:
                buffers[free[0]] = flat
            return flat.reshape(shape)


SHARED_POOL = BufferPool()


def collate(
    records: list[dict[str, Any]],
    spec: DatasetSpec,
    dequantize_into: Any = None,
    pool: BufferPool | None = None,
    *,
    quantized: bool = False,
    split: Any = None,
) -> dict[str, Any]:
    """Records -> one padded batch (the batch contract).

    uint8 features go through ``dequantize_into`` into float32, or, with ``quantized``, stay uint8 (padded
    with 0; the consumer dequantizes them, see :func:`dequantize_table`, and must zero the padding by the
    mask). Frames are copied by the C kernel (``zoo/data/_fastfill.c``, one pass without the GIL) where it is
    built, else by numpy. ``split``: a :class:`concurrent.futures.Executor`; the videos are then filled in
    ``split._max_workers + 1`` slices at once, one in the calling thread.
    """
    b = len(records)
    lengths = np.array([min(int(r["num_frames"]), spec.max_frames) for r in records], np.int64)
    t = max(1, int(lengths.max()) if b else 1)
    batch: dict[str, Any] = {}
    jobs: list[tuple[np.ndarray, list[np.ndarray | None]]] = []
    for name, size in spec.features.items():
        values: list[np.ndarray | None] = []
        uint8 = 0
        for i, record in enumerate(records):
            n = int(lengths[i])
            if not n:
                values.append(None)
                continue
            value = record[name]
            if value.ndim != 2 or value.shape[1] != size or value.shape[0] < n:
                raise DataError(
                    f"video {record.get('id')!r}: feature {name!r} has shape {tuple(value.shape)}, expected "
                    f"[{n}, {size}] (dataset.features says {name}: {size})"
                )
            if value.dtype == np.uint8:
                uint8 += 1
            values.append(value[:n])
        keep_uint8 = quantized and uint8 > 0
        if keep_uint8 and uint8 != int(np.count_nonzero(lengths)):
            raise DataError(
                f"feature {name!r}: some videos of the batch are quantized (uint8), others are not; "
                f"a reader must yield one kind"
            )
        if uint8 and not keep_uint8 and dequantize_into is None:
            video = next(
                r.get("id") for r, v in zip(records, values) if v is not None and v.dtype == np.uint8
            )
            raise DataError(
                f"video {video!r}: feature {name!r} is quantized (uint8) but the reader has no "
                f"dequantize_into()"
            )
        dtype = np.uint8 if keep_uint8 else np.float32
        out = pool.array(name, (b, t, size), dtype) if pool is not None else np.empty((b, t, size), dtype)
        jobs.append((out, values))
        batch[name] = out
    quantization = None if dequantize_into is None else _quantization(dequantize_into)
    _fill_all(jobs, lengths, t, quantization, split)
    if any(out.dtype == np.uint8 for out, _ in jobs):
        if quantization is None:
            raise DataError(
                "quantized batches need the reader's dequantize_into() (for the 'dequantize' table)"
            )
        batch["dequantize"] = quantization.table.copy()
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
    batch["mask"] = mask
    batch["num_frames"] = lengths
    labels = np.zeros((b, spec.num_classes), np.float32)
    for i, record in enumerate(records):
        index = np.asarray(record["labels"], np.int64)
        if index.size:
            if index.min() < 0 or index.max() >= spec.num_classes:
                bad = int(index[(index < 0) | (index >= spec.num_classes)][0])
                raise DataError(
                    f"video {record.get('id')!r}: label {bad} is outside [0, {spec.num_classes}) "
                    f"(dataset.num_classes)"
                )
            labels[i, index] = 1.0
    batch["labels"] = labels
    if any("label_mask" in r for r in records):
        batch["label_mask"] = label_mask(records, spec.num_classes)
    batch["ids"] = [str(r["id"]) for r in records]
    return batch


def label_mask(records: list[dict[str, Any]], num_classes: int) -> np.ndarray:
    """``[B, num_classes]``: 1 where a record's label counts in the loss. A record with ``label_mask`` (the
    classes it was rated for, e.g. a rated 5-frame segment) counts only there; one without counts everywhere."""
    mask = np.ones((len(records), num_classes), np.float32)
    for i, record in enumerate(records):
        if "label_mask" in record:
            index = np.asarray(record["label_mask"], np.int64)
            if index.size and (index.min() < 0 or index.max() >= num_classes):
                raise DataError(
                    f"example {record.get('id')!r}: rated class outside [0, {num_classes}) (dataset.num_classes)"
                )
            mask[i] = 0.0
            mask[i, index] = 1.0
    return mask


def _fill(
    jobs: list[tuple[np.ndarray, list[np.ndarray | None]]],
    lengths: np.ndarray,
    t: int,
    quantization: Quantization | None,
    lo: int,
    hi: int,
) -> None:
    """Copy (and dequantize) videos ``lo:hi`` of every feature into the batch arrays, zero their padding."""
    q = quantization
    for out, values in jobs:
        if (
            FAST_FILL is not None
            and (out.dtype == np.uint8 or q is not None)
            and _kernel_can_fill(values, lo, hi)
        ):
            FAST_FILL.fill(
                out,
                values,
                lengths.tolist(),
                lo,
                hi,
                _NO_TABLE if q is None else q.table,
                0.0 if q is None else q.scale,
                0.0 if q is None else q.bias,
                q is not None and q.affine,
            )
            continue
        for i in range(lo, hi):
            value = values[i]
            n = 0 if value is None else len(value)
            if n:
                if value.dtype == np.uint8 and out.dtype != np.uint8:
                    quantization.dequantize_into(value, out[i, :n])
                else:
                    out[i, :n] = value
            if n < t:
                out[i, n:] = 0


def _kernel_can_fill(values: list[np.ndarray | None], lo: int, hi: int) -> bool:
    """The C kernel takes uint8 frames with contiguous rows (TFRecord views, packed maps, arrays)."""
    for i in range(lo, hi):
        value = values[i]
        if value is not None and (value.dtype != np.uint8 or value.strides[1] != 1):
            return False
    return True


def _fill_all(
    jobs: list[tuple[np.ndarray, list[np.ndarray | None]]],
    lengths: np.ndarray,
    t: int,
    quantization: Quantization | None,
    split: Any,
) -> None:
    b = len(lengths)
    slices = 1 if split is None else min(b, split._max_workers + 1)
    if slices <= 1:
        _fill(jobs, lengths, t, quantization, 0, b)
        return
    bounds = np.linspace(0, b, slices + 1).astype(int)
    futures = [
        split.submit(_fill, jobs, lengths, t, quantization, int(bounds[k]), int(bounds[k + 1]))
        for k in range(1, slices)
    ]
    try:
        _fill(jobs, lengths, t, quantization, 0, int(bounds[1]))
    finally:
        for future in futures:
            future.result()


def dequantize_table(dequantize_into: Any) -> np.ndarray:
    """The float32 value of each of the 256 codes, as the reader's ``dequantize_into`` computes it.

    A lookup in this table gives the reader's values bit for bit on any device, whatever its rounding of a
    fused multiply-add.
    """
    table = np.empty(256, np.float32)
    dequantize_into(np.arange(256, dtype=np.uint8), table)
    return table


class Quantization:
    """How a reader turns uint8 codes into float32: its ``dequantize_into``, the table of all 256 values, and
    whether the C kernel may compute them as ``float32(code) * scale + bias`` (two roundings) instead of
    looking them up (about twice as fast). A reader states that form as the attribute ``affine = (scale,
    bias)`` of its ``dequantize_into``; it is used only if it reproduces the table for every code."""

    def __init__(self, dequantize_into: Any) -> None:
        self.dequantize_into = dequantize_into
        self.table = dequantize_table(dequantize_into)
        scale, bias = getattr(dequantize_into, "affine", (0.0, 0.0))
        self.scale, self.bias = float(scale), float(bias)
        self.affine = False
        if FAST_FILL is not None and hasattr(dequantize_into, "affine"):
            check = np.empty((1, 1, 256), np.float32)
            FAST_FILL.fill(
                check,
                [np.arange(256, dtype=np.uint8)[None, :]],
                [1],
                0,
                1,
                self.table,
                self.scale,
                self.bias,
                True,
            )
            self.affine = bool(np.array_equal(check[0, 0].view(np.uint32), self.table.view(np.uint32)))


@functools.lru_cache(maxsize=16)
def _quantization(dequantize_into: Any) -> Quantization:
    return Quantization(dequantize_into)


def dequantize_batch(batch: dict[str, Any], features: dict[str, int]) -> dict[str, Any]:
    """A quantized batch (:func:`collate` with ``quantized``) with float32 features, in numpy, as
    :func:`collate` would have made it without ``quantized``. Other batches come back as they are, and
    features the batch lacks are left for the caller to report."""
    features = [name for name in features if name in batch]
    if not any(np.asarray(batch[name]).dtype == np.uint8 for name in features):
        return batch
    if "dequantize" not in batch:
        raise DataError("the batch has uint8 features but no 'dequantize' table (see zoo.data.collate)")
    table = np.asarray(batch["dequantize"], np.float32)
    padding = ~np.asarray(batch["mask"], bool)
    out = {k: v for k, v in batch.items() if k != "dequantize"}
    for name in features:
        codes = np.asarray(batch[name])
        if codes.dtype == np.uint8:
            values = table[codes]
            values[padding] = 0.0
            out[name] = values
    return out


class Collator:
    """Where batches are filled: in the reading thread (``threads=0``), or in ``threads`` threads that
    overlap with it. A background thread fills batch ``k`` while the reading thread decodes batch ``k+1``;
    with ``threads > 1`` it splits each batch over ``threads - 1`` more threads."""

    def __init__(self, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.threads = max(0, int(threads))
        self.background = ThreadPoolExecutor(1, thread_name_prefix="zoo-collate") if self.threads else None
        self.split = (
            ThreadPoolExecutor(self.threads - 1, thread_name_prefix="zoo-collate-split")
            if self.threads > 1
            else None
        )

    def close(self) -> None:
        for executor in (self.background, self.split):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)


def _part_batches(
    reader: Any,
    plan: Plan,
    part: int,
    *,
    spec: DatasetSpec,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    shuffle_buffer: int,
    drop_last: bool,
    skip: int,
    quantized: bool = False,
    threads: int = 0,
    bucket_by_length: bool = False,
) -> Iterator[dict[str, Any]]:
    rng = random.Random(_stable_seed(seed, epoch, "buffer", part)) if shuffle else None
    bucket_rng = random.Random(_stable_seed(seed, epoch, "buckets", part)) if shuffle else None
    window = bucket_window(shuffle_buffer, batch_size) if bucket_by_length else 0
    dequantize_into = reader.dequantize_into if isinstance(reader, DequantizingReader) else None
    collator = Collator(threads)
    background = collator.background
    # batches handed to the background thread, oldest first: one is filled while the next is read
    in_flight: deque = deque()

    def submit(records: list[dict[str, Any]]) -> None:
        if background is None:
            in_flight.append(collate(records, spec, dequantize_into, SHARED_POOL, quantized=quantized))
        else:
            in_flight.append(
                background.submit(
                    collate,
                    records,
                    spec,
                    dequantize_into,
                    SHARED_POOL,
                    quantized=quantized,
                    split=collator.split,
                )
            )

    def oldest() -> dict[str, Any]:
        item = in_flight.popleft()
        return item if background is None else item.result()

    try:
        records = _part_records(reader, plan.part_tasks(part), shuffle_buffer, rng)
        for group in _record_groups(records, batch_size, drop_last, window, bucket_rng):
            if skip:
                skip -= 1
                continue
            submit(group)
            if len(in_flight) > (0 if background is None else 1):
                yield oldest()
        while in_flight:
            yield oldest()
    finally:
        collator.close()


# ---------------------------------------------------------------------------------------------------------
# Resume: how many batches each worker has to skip


def _batch_count(records: int, batch_size: int, drop_last: bool) -> int:
    return records // batch_size if drop_last else math.ceil(records / batch_size)


def _task_records(reader: Any, task: Task, cache: dict[str, int]) -> int:
    """Examples a task yields: the reader's ``count_part`` if it has one (a reader whose examples are not its
    records, e.g. one per rated segment), else its records (``count``, or reading them)."""
    source, start, step = task
    if isinstance(reader, PartCountingReader):
        return reader.count_part(source, start, step)
    if source not in cache:
        counted = isinstance(reader, CountingReader)
        cache[source] = reader.count(source) if counted else sum(1 for _ in reader.read(source))
    total = cache[source]
    return len(range(start, total, step))


def round_robin(counts: list[int], steps: int) -> tuple[list[int], int]:
    """After ``steps`` outputs of a round-robin merge of streams with ``counts`` items: items taken from
    each stream and the stream whose turn is next."""
    taken = [0] * len(counts)
    turn = 0
    for _ in range(steps):
        if all(taken[w] >= counts[w] for w in range(len(counts))):
            break
        while taken[turn] >= counts[turn]:
            turn = (turn + 1) % len(counts)
        taken[turn] += 1
        turn = (turn + 1) % len(counts)
    return taken, turn


# ---------------------------------------------------------------------------------------------------------
# The public entry points


class Batches:
    """The batches of one rank for one epoch; iterate it (once or again: each pass reads anew)."""

    def __init__(
        self,
        reader: Any,
        *,
        spec: DatasetSpec,
        batch_size: int,
        shuffle: bool,
        seed: int,
        epoch: int,
        rank: int,
        world_size: int,
        num_workers: int,
        shuffle_buffer: int,
        drop_last: bool,
        skip_batches: int,
        quantized: bool = False,
        threads: int | None = None,
        bucket_by_length: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ZooError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ZooError(f"rank {rank} is outside world_size {world_size}")
        if num_workers < 0 or skip_batches < 0 or (threads is not None and threads < 0):
            raise ZooError("num_workers, skip_batches and threads must be >= 0")
        self.reader = reader
        self.spec = spec
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.drop_last = drop_last
        self.skip_batches = skip_batches
        self.quantized = quantized
        self.bucket_by_length = bucket_by_length
        self.threads = default_threads(num_workers) if threads is None else threads
        self.workers = max(1, num_workers)
        self.plan = plan_epoch(
            reader.sources(), parts=world_size * self.workers, shuffle=shuffle, seed=seed, epoch=epoch
        )

    def parts(self) -> list[int]:
        """This rank's parts, one per worker."""
        return [self.rank * self.workers + w for w in range(self.workers)]

    def _skips(self) -> tuple[list[int], int]:
        if self.skip_batches == 0:
            return [0] * self.workers, 0
        if self.workers == 1:
            return [self.skip_batches], 0
        cache: dict[str, int] = {}
        counts = [
            _batch_count(
                sum(_task_records(self.reader, t, cache) for t in self.plan.part_tasks(p)),
                self.batch_size,
                self.drop_last,
            )
            for p in self.parts()
        ]
        return round_robin(counts, self.skip_batches)

    def part_batches(self, part: int, skip: int = 0) -> Iterator[dict[str, Any]]:
        return _part_batches(
            self.reader,
            self.plan,
            part,
            spec=self.spec,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=self.epoch,
            shuffle_buffer=self.shuffle_buffer,
            drop_last=self.drop_last,
            skip=skip,
            quantized=self.quantized,
            threads=self.threads,
            bucket_by_length=self.bucket_by_length,
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        skipped_before = len(getattr(self.reader, "skipped", []))
        skips, turn = self._skips()
        if self.num_workers == 0:
            yield from self.part_batches(self.parts()[0], skips[0])
        else:
            yield from self._with_workers(skips, turn)
        report = getattr(self.reader, "skipped_report", None)
        if report is not None:
            text = report(skipped_before)
            if text:
                print(text, file=sys.stderr)

    def _with_workers(self, skips: list[int], turn: int) -> Iterator[dict[str, Any]]:
        import paddle.io

        from zoo.data.workers import WorkerDataset
        from zoo.orphans import exit_with_parent

        dataset = WorkerDataset(self, skips, to_transfer)
        loader = paddle.io.DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_identity,
            use_shared_memory=True,
            worker_init_fn=exit_with_parent,  # no orphans after a kill -9 of the training process
        )
        queues: list[deque] = [deque() for _ in range(self.workers)]
        done = [False] * self.workers
        it = iter(loader)
        try:
            while not all(done):
                if done[turn]:
                    turn = (turn + 1) % self.workers
                    continue
                while not queues[turn]:
                    try:
                        item = next(it)
                    except StopIteration:
                        raise ZooError(
                            f"DataLoader worker {turn} stopped without finishing its part"
                        ) from None
                    queues[int(item["_worker"])].append(item)
                item = queues[turn].popleft()
                if "_error" in item:
                    raise _rebuild_error(item)
                if "_end" in item:
                    done[turn] = True
                    self._merge_skipped(item)
                    continue
                yield _from_transfer(item)
                turn = (turn + 1) % self.workers
        finally:
            del it

    def _merge_skipped(self, item: dict[str, Any]) -> None:
        skipped = getattr(self.reader, "skipped", None)
        if skipped is not None:
            skipped.extend(SkippedRecord(*entry) for entry in json.loads(item["_skipped"]))


def _identity(batch: Any) -> Any:
    return batch


def to_transfer(batch: dict[str, Any], worker: int) -> dict[str, Any]:
    """Make a batch survive paddle's worker transfer: ids travel as one JSON string."""
    out = {k: v for k, v in batch.items() if k != "ids"}
    out["_ids"] = json.dumps(batch["ids"])
    out["_worker"] = worker
    return out


def _from_transfer(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key.startswith("_"):
            continue
        out[key] = value.numpy() if hasattr(value, "numpy") else value
    out["ids"] = json.loads(item["_ids"])
    return out


def _rebuild_error(item: dict[str, Any]) -> Exception:
    import zoo.errors as errors

    cls = getattr(errors, str(item.get("_error_type")), None)
    if isinstance(cls, type) and issubclass(cls, ZooError):
        return cls(item["_error"])
    return ZooError(f"DataLoader worker {item['_worker']} failed: {item['_error']}")


def batches(
    reader: Any,
    *,
    spec: DatasetSpec,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    shuffle_buffer: int = 1024,
    drop_last: bool = False,
    skip_batches: int = 0,
    quantized: bool = False,
    threads: int | None = None,
    bucket_by_length: bool = False,
) -> Batches:
    """The padded batches of rank ``rank`` for epoch ``epoch`` (see the module docstring).

    ``quantized``: quantized (uint8) features stay uint8 in the batches (see :func:`collate`).
    ``threads``: threads that fill batches beside the reading thread (see :class:`Collator`); None: one
    without DataLoader workers, none inside them (they already run in parallel).
    ``bucket_by_length``: batch videos of similar length together (see the module docstring).
    """
    return Batches(
        reader,
        spec=spec,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        shuffle_buffer=shuffle_buffer,
        drop_last=drop_last,
        skip_batches=skip_batches,
        quantized=quantized,
        threads=threads,
        bucket_by_length=bucket_by_length,
    )


def default_threads(num_workers: int) -> int:
    """Collate threads when none are asked for: one beside the reading thread, none in DataLoader workers."""
    return 0 if num_workers else 1


def count_records(reader: Any) -> int:
    """Videos in all of the reader's sources (cheap for packed data and TFRecords: headers only)."""
    if not isinstance(reader, CountingReader):
        return sum(1 for _ in reader)
    return sum(reader.count(source) for source in reader.sources())
