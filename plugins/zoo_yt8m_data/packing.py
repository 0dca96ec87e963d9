"""``zoo data pack``: TFRecords (or PaddleVideo pickles) -> the packed format (:mod:`zoo_yt8m_data.packed`).

The seed's users ran a single-process TensorFlow script to turn 1.5 TB of TFRecords into pickles. Here:
no TensorFlow, no pickle, one process per core, one shard per input file, resumable (a shard packed from
the same unchanged file is kept), and verified: every shard is read back and checksummed before it gets
its final name, and its video count must equal the records in the source minus the damaged ones skipped.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.config import DatasetSpec
from zoo.dirlock import DirectoryLock, remove_partials
from zoo.errors import DataError, UsageError
from zoo.orphans import exit_with_parent
from zoo_yt8m_data import packed

# Keep every frame: readers truncate to max_frames when they read packed data.
_ALL_FRAMES = 2**31 - 1
LOCK = ".pack.lock"  # one pack into an output folder at a time


@dataclass
class PackReport:
    output: str
    packed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    records: int = 0
    frames: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dtypes: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"{self.output}: {len(self.packed)} shard(s) packed, {len(self.reused)} already packed and kept; "
            f"{self.records} videos, {self.frames} frames, {self.bytes / 1e6:.1f} MB in {self.seconds:.1f}s",
        ]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} damaged record(s) (--skip-corrupt):")
            lines.extend(f"  {s}" for s in self.skipped[:20])
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more")
        floats = [name for name, dtype in self.dtypes.items() if dtype == "float32"]
        if floats:
            lines.append(f"stored as float32: {', '.join(floats)} (--quantize stores uint8, 4x smaller)")
        lines.append(f"train on it with: -o data.train={self.output}")
        return "\n".join(lines)


def _make_reader(
    reader: str,
    paths: list[str],
    features: dict[str, int],
    num_classes: int,
    verify_crc: bool,
    skip_corrupt: bool,
    options: dict[str, Any] | None = None,
) -> Any:
    from zoo_yt8m_data.readers import FrameFeatureReader, PaddleVideoPickleReader

    spec = DatasetSpec(num_classes=num_classes, features=dict(features), max_frames=_ALL_FRAMES)
    if reader == "yt8m-frame":
        return FrameFeatureReader(
            FrameFeatureReader.Config(
                paths=list(paths), verify_crc=verify_crc, skip_corrupt=skip_corrupt, **(options or {})
            ),
            spec,
        )
    if options:
        raise UsageError(
            f"--reader {reader}: record layout options ({', '.join(options)}) apply to yt8m-frame"
        )
    if reader == "paddlevideo-pkl":
        return PaddleVideoPickleReader(
            PaddleVideoPickleReader.Config(paths=list(paths), skip_corrupt=skip_corrupt), spec
        )
    raise UsageError(f"--reader {reader!r}: pack reads yt8m-frame TFRecords or paddlevideo-pkl pickles")


def pack_one(
    reader: str,
    source: str,
    shard_dir: str,
    features: dict[str, int],
    num_classes: int,
    verify_crc: bool,
    skip_corrupt: bool,
    quantize: bool = False,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pack one input file into ``shard_dir`` (runs in a worker process)."""
    from zoo_yt8m_data.readers import quantize as quantize_values

    r = _make_reader(reader, [source], features, num_classes, verify_crc, skip_corrupt, options)
    try:
        meta = packed.write_shard(
            r.read_part(source, 0, 1),
            Path(shard_dir),
            source,
            features,
            skipped=lambda: len(r.skipped),
            quantize=quantize_values if quantize else None,
            options=options,
        )
    except OSError as exc:  # a full disk came out of write_shard's atomic_dir as NoSpaceLeft
        raise DataError(f"packing {source} into {shard_dir} failed: {exc}") from None
    if reader == "yt8m-frame":
        from zoo_yt8m_data.tfrecord import count_records

        framed = count_records(source, verify_crc=verify_crc, on_corrupt=lambda _error: None)
    else:
        framed = r.count(source)
    expected = framed - sum(1 for s in r.skipped if s.recoverable)
    if meta["records"] != expected:  # a reader that dropped videos silently would be caught here
        raise DataError(
            f"packing {source}: wrote {meta['records']} videos but the file holds {expected} "
            f"readable records; the shard was not kept"
        )
    meta["skipped_records"] = [f"{s.path} record {s.index}: {s.problem}" for s in r.skipped]
    return meta


def _shard_name(source: str) -> str:
    base = os.path.basename(source.rstrip("/"))
    for suffix in (".tfrecord", ".pkl", ".pickle"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def pack(
    inputs: list[str],
    output: str | os.PathLike,
    *,
    reader: str = "yt8m-frame",
    features: dict[str, int] | None = None,
    num_classes: int = 3862,
    jobs: int = 0,
    verify_crc: bool = True,
    skip_corrupt: bool = False,
    progress: bool = True,
    quantize: bool = False,
    options: dict[str, Any] | None = None,
) -> PackReport:
    """Pack every input file into ``output`` (one shard each) and write ``output/index.json``.

    Float frame features stay float32 unless ``quantize`` (then uint8, like the official releases);
    ``options``: the yt8m-frame reader's record layout options (layout, feature_keys, id_key, ...).
    """
    from zoo import storage

    if storage.is_url(os.fspath(output)):
        # into a bucket: packed in a local staging folder (resumable like any output), then uploaded file by
        # file with index.json, which names the shards, last
        storage.check_output(os.fspath(output))
        from zoo.paths import cache_dir

        key = hashlib.sha256(storage.redact(os.fspath(output)).encode()).hexdigest()[:16]
        staging = cache_dir("pack-staging", key)
        report = pack(
            inputs,
            staging,
            reader=reader,
            features=features,
            num_classes=num_classes,
            jobs=jobs,
            verify_crc=verify_crc,
            skip_corrupt=skip_corrupt,
            progress=progress,
            quantize=quantize,
            options=options,
        )
        storage.upload_tree(str(staging), os.fspath(output), last=packed.INDEX, skip=(LOCK,))
        shutil.rmtree(staging, ignore_errors=True)
        return report
    features = dict(features or {"rgb": 1024, "audio": 128})
    options = {k: v for k, v in (options or {}).items() if v not in (None, "auto", {})}
    started = time.perf_counter()
    out = Path(output)
    files = _make_reader(reader, inputs, features, num_classes, verify_crc, skip_corrupt, options).sources()
    if any(packed.is_shard(f) for f in files):
        raise UsageError("the inputs include packed data already; pack TFRecords or pickles")
    names: dict[str, str] = {}
    for f in files:
        name = _shard_name(f)
        if name in names:
            raise UsageError(
                f"{f} and {names[name]} would both be packed as shard {name!r}: pack them into "
                f"different output directories"
            )
        names[name] = f
    from zoo.atomic import output_dir

    output_dir(out, "--output")
    lock = DirectoryLock(out / LOCK, what="pack output").acquire(lambda msg: print(msg, file=sys.stderr))
    try:
        return _pack_locked(
            out,
            names,
            reader,
            features,
            num_classes,
            jobs,
            verify_crc,
            skip_corrupt,
            progress,
            started,
            quantize,
            options,
        )
    finally:
        lock.release()


def _pack_locked(
    out: Path,
    names: dict[str, str],
    reader: str,
    features: dict[str, int],
    num_classes: int,
    jobs: int,
    verify_crc: bool,
    skip_corrupt: bool,
    progress: bool,
    started: float,
    quantize: bool,
    options: dict[str, Any],
) -> PackReport:
    from zoo.atomic import atomic_write_text

    for leftover in remove_partials(out):  # shards of an earlier pack that was killed midway
        print(f"pack: removed {leftover}, left by an interrupted pack", file=sys.stderr)
    report = PackReport(output=str(out))
    metas: dict[str, dict[str, Any]] = {}
    todo = []
    for name, source in names.items():
        if packed.shard_is_current(out / name, source, features, quantize=quantize, options=options):
            metas[name] = packed.read_json(out / name / packed.META, "packed shard")
            report.reused.append(name)
        else:
            todo.append(name)
    jobs = min(jobs or _cpu_count(), max(1, len(todo)))

    def done(name: str, meta: dict[str, Any]) -> None:
        metas[name] = meta
        report.packed.append(name)
        report.skipped.extend(meta.pop("skipped_records", []))
        if progress:
            print(
                f"pack: [{len(report.packed)}/{len(todo)}] {name}: {meta['records']} videos",
                file=sys.stderr,
                flush=True,
            )

    args = {
        name: (
            reader,
            names[name],
            str(out / name),
            features,
            num_classes,
            verify_crc,
            skip_corrupt,
            quantize,
            options,
        )
        for name in todo
    }
    if jobs <= 1:
        for name in todo:
            done(name, pack_one(*args[name]))
    else:
        with worker_pool(jobs) as pool:
            futures = {pool.submit(pack_one, *args[name]): name for name in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    error = future.exception()
                    if error is not None:
                        for other in pending:
                            other.cancel()
                        raise (
                            error
                            if isinstance(error, DataError)
                            else DataError(
                                f"packing {names[futures[future]]} failed: {type(error).__name__}: {error}"
                            )
                        )
                    done(futures[future], future.result())
    shards = []
    for name in names:
        meta = metas[name]
        shards.append(
            {"name": name, "records": meta["records"], "frames": meta["frames"], "source": meta["source"]}
        )
        report.records += meta["records"]
        report.frames += meta["frames"]
        report.bytes += sum(info["bytes"] for info in meta["files"].values())
    dtypes = {f: sorted({metas[n].get("dtypes", {}).get(f, "uint8") for n in names}) for f in features}
    mixed = {f: d for f, d in dtypes.items() if len(d) > 1}
    if mixed:
        raise DataError(
            f"{out}: the inputs differ in how features are stored ("
            + "; ".join(f"{f}: {' and '.join(d)}" for f, d in mixed.items())
            + "); batches need one kind per feature: pack again with --quantize (all uint8)"
        )
    floats = any(d == ["float32"] for d in dtypes.values())
    index: dict[str, Any] = {
        "format": packed.FORMAT,
        "version": packed.FLOAT_VERSION if floats else packed.VERSION,
        "features": features,
        "shards": shards,
        "records": report.records,
        "frames": report.frames,
    }
    if floats or quantize or options:
        index["dtypes"] = {f: d[0] for f, d in dtypes.items()}
        index["quantize"] = quantize
        index["quantized_at_pack"] = sorted({f for n in names for f in metas[n].get("quantized_at_pack", [])})
    if options:
        index["reader_options"] = options
    report.dtypes = {f: d[0] for f, d in dtypes.items()}
    atomic_write_text(out / packed.INDEX, json.dumps(index, indent=1))
    report.seconds = time.perf_counter() - started
    return report


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """The pack workers: spawned (no inherited paddle state), and ending when the pack process dies."""
    return ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent
    )


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _source_size(source: str) -> int:
    from zoo import storage

    if storage.is_url(source):
        found = storage.stat(source)
        return int(found.size or 0) if found is not None else 0
    return os.path.getsize(source)
