"""The packed training format written by ``zoo data pack``: memory-mapped uint8 frames plus a small index.

Layout (no pickle anywhere; every file is raw little-endian data or ``.npy`` loaded with
``allow_pickle=False``)::

    OUT/index.json                 {"format": "yt8m-zoo-packed", "version": 1, "features": {...},
                                    "shards": [{"name", "records", "frames", "source"}], "records", "frames"}
    OUT/<shard>/meta.json          counts, feature sizes, the source file's size and mtime, and the byte
                                   size and crc32c of every file below
    OUT/<shard>/<feature>.u8       uint8 [frames, size] per feature (all frames of all videos, in order);
                                   <feature>.f32 (float32, little-endian) for float features kept float
    OUT/<shard>/offsets.npy        int64 [records + 1]: video i is frames offsets[i]:offsets[i+1]
    OUT/<shard>/labels.npy         int32 [labels]; label_offsets.npy int64 [records + 1]
    OUT/<shard>/ids.npy            bytes (numpy "S") [records]

One shard per input file, written into a temporary directory and renamed into place only after its files
were read back and their checksums matched, so a shard directory that exists is complete. Frames are
kept whole (readers truncate to ``max_frames``), so one packed copy serves every frame limit.

Version 1 holds uint8 features only; version 2 (written only when a feature is stored as float32) adds
``dtypes`` to meta.json and index.json. Both are read.
"""

from __future__ import annotations

import functools
import json
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import numpy as np

from zoo.errors import DataError

FORMAT = "yt8m-zoo-packed"
SHARD_FORMAT = "yt8m-zoo-packed-shard"
VERSION = 1
FLOAT_VERSION = 2  # written when a feature is stored as float32 (an older reader would not find <f>.u8)
READABLE = (VERSION, FLOAT_VERSION)
SUFFIX = {"uint8": "u8", "float32": "f32"}
INDEX = "index.json"
META = "meta.json"
_CHUNK = 1 << 22


def is_shard(path: str) -> bool:
    return os.path.isfile(os.path.join(path, META))


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(
            f"{path}: missing; the {what} is incomplete: run `zoo data pack` again (it resumes)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable {what} ({exc}); run `zoo data pack` again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a {what}")
    return data


def shards_of(directory: str) -> list[str] | None:
    """The shard directories of a packed dataset (``index.json``), a shard itself, or None (not packed)."""
    index_path = os.path.join(directory, INDEX)
    if os.path.isfile(index_path):
        index = read_json(index_path, "packed dataset index")
        if index.get("format") != FORMAT:
            return None
        if index.get("version") not in READABLE:
            raise DataError(
                f"{index_path}: packed format version {index.get('version')}, this yt8m-zoo reads "
                f"versions {', '.join(map(str, READABLE))}: pack the data again"
            )
        out = []
        for shard in index.get("shards", []):
            path = os.path.join(directory, shard["name"])
            if not is_shard(path):
                raise DataError(
                    f"{path}: listed in {index_path} but missing or incomplete; run `zoo data pack` "
                    f"again (it resumes)"
                )
            out.append(path)
        if not out:
            raise DataError(f"{index_path}: the packed dataset has no shards")
        return out
    if is_shard(directory):
        return [directory]
    return None


@dataclass
class Shard:
    """One packed shard, memory-mapped."""

    path: str
    meta: dict[str, Any]
    frames: dict[str, np.ndarray]
    offsets: np.ndarray
    labels: np.ndarray
    label_offsets: np.ndarray
    ids: np.ndarray

    @property
    def records(self) -> int:
        return len(self.offsets) - 1

    def record(self, index: int, max_frames: int) -> dict[str, Any]:
        """Video ``index``: features as uint8 (or float32) views of the mapped files (no copy)."""
        start = int(self.offsets[index])
        stop = int(self.offsets[index + 1])
        n = min(stop - start, max_frames)
        record: dict[str, Any] = {"id": self.ids[index].decode("utf-8", "backslashreplace")}
        for name, array in self.frames.items():
            record[name] = array[start : start + n]
        record["labels"] = self.labels[self.label_offsets[index] : self.label_offsets[index + 1]].tolist()
        record["num_frames"] = n
        return record


def _map(path: str, rows: int, size: int, dtype: str = "uint8") -> np.ndarray:
    """A read-only ``[rows, size]`` array backed by the file (a plain ndarray: cheap to slice)."""
    if rows == 0:
        return np.zeros((0, size), dtype)
    with open(path, "rb") as f:
        # MAP_POPULATE maps every page now (one readahead pass) instead of one page fault per 4 KB later
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mapped = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    return np.frombuffer(mapped, "<f4" if dtype == "float32" else np.uint8, rows * size).reshape(rows, size)


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a damaged header reaches numpy's parser: SyntaxError, TokenError...
        if isinstance(exc, FileNotFoundError):
            raise DataError(f"{path}: missing; run `zoo data pack` again") from None
        raise DataError(f"{path}: unreadable packed array ({exc}); run `zoo data pack` again") from None


@functools.lru_cache(maxsize=64)
def _open_shard(path: str, features: tuple[tuple[str, int], ...], stamp: tuple) -> Shard:
    meta = read_json(os.path.join(path, META), "packed shard")
    if meta.get("format") != SHARD_FORMAT or meta.get("version") not in READABLE:
        raise DataError(
            f"{path}: not a packed shard of version {', '.join(map(str, READABLE))}; pack the data again"
        )
    have = meta.get("features", {})
    for name, size in features:
        if name not in have:
            raise DataError(
                f"{path}: the packed shard has no feature {name!r} (it has {', '.join(have)}); "
                f"pack the data again with that feature or fix dataset.features"
            )
        if have[name] != size:
            raise DataError(
                f"{path}: feature {name!r} was packed with {have[name]} values per frame, "
                f"dataset.features says {size}"
            )
    for fname, info in meta.get("files", {}).items():
        actual = (
            os.path.getsize(os.path.join(path, fname)) if os.path.exists(os.path.join(path, fname)) else -1
        )
        if actual != info["bytes"]:
            raise DataError(
                f"{path}/{fname}: {actual} bytes, meta.json says {info['bytes']}; the shard is "
                f"damaged: delete the directory and run `zoo data pack` again"
            )
    total = int(meta["frames"])
    frames = {}
    dtypes = meta.get("dtypes", {})
    for name, size in features:
        dtype = dtypes.get(name, "uint8")
        if dtype not in SUFFIX:
            raise DataError(f"{path}: feature {name!r} has dtype {dtype!r}; pack the data again")
        frames[name] = _map(os.path.join(path, f"{name}.{SUFFIX[dtype]}"), total, size, dtype)
    offsets = _load_npy(os.path.join(path, "offsets.npy"))
    shard = Shard(
        path=path,
        meta=meta,
        frames=frames,
        offsets=offsets,
        labels=_load_npy(os.path.join(path, "labels.npy")),
        label_offsets=_load_npy(os.path.join(path, "label_offsets.npy")),
        ids=_load_npy(os.path.join(path, "ids.npy")),
    )
    n = int(meta["records"])
    if not _index_ok(shard, n, total):
        raise DataError(
            f"{path}: the index arrays (offsets.npy, label_offsets.npy, ids.npy, labels.npy) are damaged or "
            f"disagree with meta.json ({n} records, {total} frames); delete the directory and run "
            f"`zoo data pack` again"
        )
    return shard


def _index_ok(shard: Shard, n: int, total: int) -> bool:
    """The index arrays have the shapes and types written, start at 0, never go back, and end where the
    frame and label arrays end: a damaged file is caught here, not as a slice of the wrong frames later."""
    offsets, label_offsets, labels, ids = shard.offsets, shard.label_offsets, shard.labels, shard.ids
    for array, kind in ((offsets, "i"), (label_offsets, "i"), (labels, "i"), (ids, "S")):
        if array.ndim != 1 or array.dtype.kind != kind:
            return False
    if len(offsets) != n + 1 or len(label_offsets) != n + 1 or len(ids) != n:
        return False
    for bounds, end in ((offsets, total), (label_offsets, len(labels))):
        if int(bounds[0]) != 0 or int(bounds[-1]) != end or bool((np.diff(bounds) < 0).any()):
            return False
    return True


def open_shard(path: str, features: dict[str, int]) -> Shard:
    """The shard at ``path``, mapped once per process and mapped again if its files change."""
    path = os.path.abspath(path)
    stamp = []
    for name in [META, *(f"{f}.u8" for f in features)]:
        if name.endswith(".u8") and not os.path.exists(os.path.join(path, name)):
            f32 = name[: -len(".u8")] + ".f32"
            name = f32 if os.path.exists(os.path.join(path, f32)) else name
        try:
            st = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            raise DataError(
                f"{path}/{name}: missing; the packed shard is damaged: delete {path} and run "
                f"`zoo data pack` again (it resumes)"
            ) from None
        stamp.append((st.st_ino, st.st_size, st.st_mtime_ns))
    try:
        return _open_shard(path, tuple(features.items()), tuple(stamp))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a meta.json without its keys
        raise DataError(
            f"{path}/{META}: damaged ({type(exc).__name__}: {str(exc)[:100]}); delete {path} and run "
            f"`zoo data pack` again"
        ) from None


# ---------------------------------------------------------------------------------------------------------
# Writing


def file_crc(path: str | Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = crc32c.crc32c(chunk, crc)
    return crc


class _ChecksummedFile:
    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.crc = 0
        self.bytes = 0

    def write(self, data: bytes | memoryview | np.ndarray) -> None:
        buf = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.file.write(buf)
        self.crc = crc32c.crc32c(buf, self.crc)
        self.bytes += len(buf)

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _save_npy(directory: Path, name: str, array: np.ndarray, files: dict[str, dict[str, int]]) -> None:
    path = directory / name
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    files[name] = {"bytes": path.stat().st_size, "crc32c": file_crc(path)}


def source_stamp(source: str) -> dict[str, int]:
    from zoo import storage

    if storage.is_url(source):  # an object: its size and the store's modification time, where it gives one
        fs, key = storage.filesystem(source)
        info = storage.call(lambda: fs.info(key), source, "look up")
        modified = fs.modified(key) if hasattr(fs, "modified") else None
        mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else 0
        return {"source_size": int(info.get("size") or 0), "source_mtime_ns": mtime_ns}
    st = os.stat(source)
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def shard_is_current(
    shard_dir: Path,
    source: str,
    features: dict[str, int],
    *,
    quantize: bool = False,
    options: dict[str, Any] | None = None,
) -> bool:
    """True when ``shard_dir`` is a complete shard packed from ``source`` as it is now, with the same
    settings (resume). ``options``: the reader options that change what is read (empty: the defaults)."""
    if not is_shard(str(shard_dir)):
        return False
    try:
        meta = read_json(shard_dir / META, "packed shard")
        stamp = source_stamp(source)
    except (DataError, OSError):
        return False
    if meta.get("version") not in READABLE or meta.get("features") != features:
        return False
    if meta.get("quantize", False) != quantize or meta.get("reader_options", {}) != (options or {}):
        return False
    if (
        meta.get("source_size") != stamp["source_size"]
        or meta.get("source_mtime_ns") != stamp["source_mtime_ns"]
    ):
        return False
    return all(
        (shard_dir / name).is_file() and (shard_dir / name).stat().st_size == info["bytes"]
        for name, info in meta.get("files", {}).items()
    )


def verify_shard(shard_dir: str | Path) -> list[str]:
    """Problems found by re-reading every file of a shard and comparing sizes and checksums (empty: good)."""
    shard_dir = Path(shard_dir)
    try:
        meta = read_json(shard_dir / META, "packed shard")
    except DataError as exc:
        return [str(exc)]
    problems = []
    for name, info in meta.get("files", {}).items():
        path = shard_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        if path.stat().st_size != info["bytes"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, expected {info['bytes']}")
            continue
        crc = file_crc(path)
        if crc != info["crc32c"]:
            problems.append(f"{path}: crc32c {crc:08x}, expected {info['crc32c']:08x}")
    return problems


def write_shard(
    records: Any,
    shard_dir: Path,
    source: str,
    features: dict[str, int],
    *,
    skipped: Callable[[], int],
    quantize: Callable[[np.ndarray], np.ndarray] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the videos from the iterable ``records`` (all frames) as a shard, atomically.

    uint8 features are stored as uint8; float features as float32, or as uint8 through ``quantize`` when
    it is given. A feature's dtype is set by its first non-empty video; a file that mixes quantized and
    float frames of one feature is refused (pack it with quantization).
    """
    from zoo.atomic import atomic_dir

    with atomic_dir(
        shard_dir,
        what=f"the shard of {source}",
        needed=os.path.getsize(source) if os.path.isfile(source) else None,  # about its source's size
        kept="the shards packed before are complete, and this one is not kept",
    ) as tmp:
        dtypes: dict[str, str | None] = dict.fromkeys(features)
        outputs: dict[str, _ChecksummedFile] = {}
        quantized: set[str] = set()
        offsets = [0]
        labels: list[int] = []
        label_offsets = [0]
        ids: list[bytes] = []
        try:
            for record in records:
                n = None
                for name in features:
                    frames = record[name]
                    n = len(frames)
                    if not n:
                        continue
                    if frames.dtype != np.uint8:
                        if quantize is not None:
                            frames = quantize(frames)
                            quantized.add(name)
                        else:
                            frames = np.asarray(frames, "<f4")
                    dtype = "uint8" if frames.dtype == np.uint8 else "float32"
                    if dtypes[name] is None:
                        dtypes[name] = dtype
                        outputs[name] = _ChecksummedFile(tmp / f"{name}.{SUFFIX[dtype]}")
                    elif dtypes[name] != dtype:
                        raise DataError(
                            f"packing {source}: video {record['id']!r}: feature {name!r} is {dtype} but "
                            f"earlier videos were {dtypes[name]}; pack with --quantize to store every "
                            f"frame quantized"
                        )
                    outputs[name].write(np.ascontiguousarray(frames))
                offsets.append(offsets[-1] + (n or 0))
                labels.extend(record["labels"])
                label_offsets.append(len(labels))
                ids.append(record["id"].encode("utf-8", "surrogateescape"))
            for name in features:
                if dtypes[name] is None:  # no frames at all
                    dtypes[name] = "uint8"
                    outputs[name] = _ChecksummedFile(tmp / f"{name}.u8")
        finally:
            for out in outputs.values():
                out.close()
        files = {
            f"{name}.{SUFFIX[dtypes[name]]}": {"bytes": out.bytes, "crc32c": out.crc}  # type: ignore[index]
            for name, out in outputs.items()
        }
        _save_npy(tmp, "offsets.npy", np.asarray(offsets, np.int64), files)
        _save_npy(tmp, "labels.npy", np.asarray(labels, np.int32), files)
        _save_npy(tmp, "label_offsets.npy", np.asarray(label_offsets, np.int64), files)
        _save_npy(tmp, "ids.npy", np.asarray(ids, dtype=f"S{max([len(i) for i in ids] or [1])}"), files)
        floats = any(d == "float32" for d in dtypes.values())
        meta = {
            "format": SHARD_FORMAT,
            "version": FLOAT_VERSION if floats else VERSION,
            "source": _shown(source),
            **source_stamp(source),
            "records": len(ids),
            "frames": offsets[-1],
            "labels": len(labels),
            "features": dict(features),
            "skipped": skipped(),
            "files": files,
        }
        if floats or quantize is not None or options:
            meta["dtypes"] = dict(dtypes)
            meta["quantize"] = quantize is not None
            meta["quantized_at_pack"] = sorted(quantized)
        if options:
            meta["reader_options"] = dict(options)
        (tmp / META).write_text(json.dumps(meta, indent=1))
        problems = verify_shard(tmp)  # read back what reached the disk before it gets its final name
        if problems:
            raise DataError(f"packing {source}: the written shard does not verify: {'; '.join(problems)}")
    return meta


def _shown(source: str) -> str:
    from zoo import storage

    return storage.redact(source) if storage.is_url(source) else os.path.abspath(source)
