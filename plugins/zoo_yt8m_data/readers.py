"""The YouTube-8M readers: frame-level, video-level and segment-rated TFRecords, packed data and pickles.

No TensorFlow: TFRecord framing (with checksums) is :mod:`zoo_yt8m_data.tfrecord`, the protobuf decoding
:mod:`zoo_yt8m_data.wire`. Values equal TensorFlow's parse followed by the starter code's dequantization
``x * 4/255 + (4/512 - 2)`` in float32.

Reader protocol (what the engine and :func:`zoo.data.pipeline.batches` rely on): ``sources()``,
``read(source)`` (one dict per video, float32 features), iteration over every source. The pipeline also
uses the optional fast path ``read_part(source, start, step)`` (every ``step``-th video from ``start``,
features left as uint8 when quantized) with ``dequantize_into(uint8, out)``, and ``count(source)``.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from zoo import storage
from zoo.config import DatasetSpec
from zoo.data.pipeline import SkippedRecord
from zoo.data.sources import expand_paths
from zoo.errors import ConfigError, DataError
from zoo_yt8m_data import packed
from zoo_yt8m_data.layouts import (
    MEDIAPIPE_ID_KEYS,
    MEDIAPIPE_LABEL_KEYS,
    YT8M_ID_KEYS,
    mediapipe_feature_key,
    resolve_layout,
)
from zoo_yt8m_data.tfrecord import RecordError, read_records
from zoo_yt8m_data.wire import (
    WireError,
    decode_feature,
    decode_frame_values,
    parse_example,
    parse_sequence_example,
)

# The starter code's dequantization: 256 levels spanning [-2, 2], each value at the middle of its bin.
QUANT_SCALE = np.float32(4.0 / 255.0)
QUANT_BIAS = np.float32(4.0 / 512.0 - 2.0)
WARN_LIMIT = 20
SEGMENT_FRAMES = 5  # the 2019 task's segments: 5 frames (5 seconds)
_UINT8 = np.dtype(np.uint8)


def dequantize(values: np.ndarray) -> np.ndarray:
    """uint8 -> float32 exactly as ``tf.cast(x, tf.float32) * (4/255) + (4/512 - 2)`` computes it."""
    out = np.empty(values.shape, np.float32)
    dequantize_into(values, out)
    return out


def dequantize_into(values: np.ndarray, out: np.ndarray) -> None:
    """Dequantize ``values`` (uint8) into the float32 array ``out`` of the same shape, in place.

    uint8 -> float32 is exact, so multiplying in float32 and then adding gives TensorFlow's values bit for bit.
    (A plain cast followed by two in-place passes measured faster than a casting multiply.)
    """
    np.copyto(out, values, casting="unsafe")
    out *= QUANT_SCALE
    out += QUANT_BIAS


def quantize(values: np.ndarray) -> np.ndarray:
    """float -> uint8: the code whose :func:`dequantize` value is nearest (values outside [-2, 2] clip).

    The inverse of this reader's dequantization, so ``quantize(dequantize(c)) == c`` for every code and a
    quantized float feature reads back within half a step (2/255) of its value. (The starter code's
    ``quantize`` rounds ``(x + 2) * 255/4`` instead, half a step off this reader's bin centres.)
    """
    codes = np.rint((np.asarray(values, np.float64) - float(QUANT_BIAS)) / float(QUANT_SCALE))
    return np.clip(codes, 0, 255).astype(np.uint8)


# the form of the values, for the pipeline's C kernel (which checks it against this function for all 256 codes)
dequantize_into.affine = (QUANT_SCALE, QUANT_BIAS)  # type: ignore[attr-defined]


@dataclass
class RemoteData:
    """How data named by URL (s3://, gs://, https://) is read; these keys sit in ``data`` (``-o data.cache=DIR``)."""

    cache: str | None = None
    """Directory that keeps whole remote files after their first read, so later epochs read local disk
    (None: stream every epoch)."""
    cache_size: str = "64GiB"
    """Bound on ``cache``: the least recently used files are removed to stay under it."""
    read_ahead_block: str = "8MiB"
    """Bytes per ranged request to the store."""
    read_ahead_blocks: int = 4
    """Requests kept in flight ahead of the reading position (memory: about (blocks + 1) x block per file
    being read, whatever the file's size)."""

    def __post_init__(self) -> None:
        storage.parse_size(self.cache_size)
        if storage.parse_size(self.read_ahead_block) < 4096 or self.read_ahead_blocks < 0:
            raise ConfigError("data.read_ahead_block must be at least 4KiB and data.read_ahead_blocks >= 0")


def read_options(config: Any) -> storage.ReadOptions:
    """The :class:`zoo.storage.ReadOptions` of a reader config (defaults for a config without the keys)."""
    defaults = RemoteData()
    cache = getattr(config, "cache", defaults.cache)
    return storage.ReadOptions(
        block_size=storage.parse_size(getattr(config, "read_ahead_block", defaults.read_ahead_block)),
        blocks=int(getattr(config, "read_ahead_blocks", defaults.read_ahead_blocks)),
        cache_dir=str(cache) if cache else None,
        cache_bytes=storage.parse_size(getattr(config, "cache_size", defaults.cache_size)),
    )


class _YT8MReader:
    """Shared machinery: source expansion, damaged-record policy, label checks, skip accounting."""

    name = ""
    dir_patterns: tuple[str, ...] = ("*.tfrecord",)

    def __init__(self, config: Any, spec: DatasetSpec) -> None:
        self.config = config
        self.spec = spec
        self.features = dict(spec.features)
        self.max_frames = spec.max_frames
        self.num_classes = spec.num_classes
        self.verify_crc = getattr(config, "verify_crc", True)
        self.skip_corrupt = getattr(config, "skip_corrupt", False)
        self.skipped: list[SkippedRecord] = []
        self._sources: list[str] | None = None
        self.layout = resolve_layout(config, self.features)
        self.remote = read_options(config)
        # (layout, id key, label key, ((feature, key, dtype), ...)) -> records; counted when not None (inspect)
        self.layouts_seen: Counter[tuple] | None = None
        self.two_layouts: dict[str, tuple[int, str | None]] = {}  # file -> (records, the first one)
        self.two_layouts_reported: set[str] = set()

    # -- the protocol ------------------------------------------------------------------------------------
    def sources(self) -> list[str]:
        """Files (or packed shards) to read, expanded from ``config.paths``."""
        if self._sources is None:
            self._sources = expand_paths(
                self.config.paths,
                patterns=self.dir_patterns,
                directory=self._claim_directory,
                what=f"{self.name} files",
            )
        return self._sources

    def __iter__(self) -> Iterator[dict[str, Any]]:
        before = len(self.skipped)
        for source in self.sources():
            yield from self.read(source)
        self.print_skipped(since=before)

    def read(self, source: str) -> Iterator[dict[str, Any]]:
        """Every video of one source, features as float32."""
        for record in self.read_part(source, 0, 1):
            yield self.finish(record)

    def read_part(self, source: str, start: int, step: int) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record from :meth:`read_part` as :meth:`read` yields it (quantized features dequantized)."""
        out = dict(record)
        for name in self.features:
            value = out.get(name)
            if isinstance(value, np.ndarray) and value.dtype == np.uint8:
                out[name] = dequantize(value)
        return out

    dequantize_into = staticmethod(dequantize_into)

    def prefetch(self, source: str) -> None:
        """The pipeline's hint: ``source`` is read next. A remote TFRecord's first blocks start now."""
        if storage.is_url(source) and not source.endswith((".pkl", ".pickle")):
            storage.prefetch(source, self.remote)

    def count(self, source: str) -> int:
        """Videos in ``source`` (packed: from the index; TFRecord: from the record headers)."""
        if packed.is_shard(source):
            return packed.open_shard(source, self.features).records
        from zoo_yt8m_data.tfrecord import count_records

        return count_records(source, verify_crc=self.verify_crc, remote=self.remote)

    # -- damaged records ----------------------------------------------------------------------------------
    def corrupt(self, error: RecordError) -> None:
        """Raise ``error``, or (skip_corrupt) record it and warn on stderr."""
        if not self.skip_corrupt:
            raise error
        self.skipped.append(SkippedRecord(error.path, error.index, error.problem, error.recoverable))
        if len(self.skipped) <= WARN_LIMIT:
            tail = "" if error.recoverable else "; the rest of the file is skipped"
            print(
                f"warning: skipped {error.path} record {error.index}: {error.problem}{tail}", file=sys.stderr
            )
        elif len(self.skipped) == WARN_LIMIT + 1:
            print("warning: more damaged records skipped; a summary follows at the end", file=sys.stderr)

    def bad_record(self, path: str, index: int, problem: str, *, video: str | None = None) -> None:
        where = f"video {video!r}: " if video else ""
        self.corrupt(
            RecordError(
                path,
                index,
                None,
                where + problem,
                recoverable=True,
                advice="fix the data or the dataset settings (dataset.features, num_classes)",
            )
        )

    def skipped_report(self, since: int = 0) -> str:
        """A summary of the records skipped (since the ``since``-th skip), empty when none were."""
        skipped = self.skipped[since:]
        if not skipped:
            return ""
        files = sorted({s.path for s in skipped})
        lines = [f"skipped {len(skipped)} damaged record(s) in {len(files)} file(s) (skip_corrupt is on):"]
        for s in skipped[:WARN_LIMIT]:
            lines.append(f"  {s.path} record {s.index}: {s.problem}")
        if len(skipped) > WARN_LIMIT:
            lines.append(f"  ... and {len(skipped) - WARN_LIMIT} more")
        return "\n".join(lines)

    def print_skipped(self, since: int = 0) -> None:
        report = self.skipped_report(since)
        if report:
            print(report, file=sys.stderr)

    # -- helpers ------------------------------------------------------------------------------------------
    def _claim_directory(self, path: str) -> list[str] | None:
        return None

    def _labels(self, path: str, index: int, labels: list[int], video: str) -> list[int] | None:
        """``labels`` if all are in [0, num_classes), else report the record and return None."""
        for label in labels:
            if not 0 <= label < self.num_classes:
                self.bad_record(
                    path,
                    index,
                    f"label {label} is outside [0, {self.num_classes}) (dataset.num_classes is "
                    f"{self.num_classes}; YouTube-8M 2018 has 3862 classes; for data with more classes set "
                    f"-o dataset.num_classes=N)",
                    video=video,
                )
                return None
        return labels

    def _records(self, path: str, start: int, step: int) -> Iterator[tuple[int, bytes]]:
        select: Callable[[int], bool] | None = None
        if step > 1 or start > 0:

            def select(i: int) -> bool:
                return i % step == start

        for index, payload in read_records(
            path, verify_crc=self.verify_crc, select=select, on_corrupt=self.corrupt, remote=self.remote
        ):
            if payload is not None:
                yield index, payload


def _first_key(entries: dict[str, tuple[int, int]], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in entries:
            return key
    return None


def _context_id(
    path: str, payload: bytes, context: dict[str, tuple[int, int]], keys: tuple[str, ...] = ("id", "video_id")
) -> tuple[str, str]:
    """(id, the context key it came from): the first of ``keys`` present."""
    key = keys[0] if keys[0] in context else _first_key(context, keys)
    if key is None:
        have = ", ".join(sorted(context)) or "none"
        raise WireError(
            f"the context has no {' or '.join(repr(k) for k in keys)} feature (it has: {have}); "
            f"name the id's key with data.id_key"
        )
    kind, values = decode_feature(payload, *context[key])
    if kind != "bytes" or len(values) != 1:
        raise WireError(f"{key!r} should be one byte string, found a {kind} list of {len(values)}")
    return values[0].decode("utf-8", "backslashreplace"), key


def _int_list(payload: bytes, context: dict[str, tuple[int, int]], key: str) -> list[int]:
    rng = context.get(key)
    if rng is None:
        return []
    kind, values = decode_feature(payload, *rng)
    if kind not in ("int64", "empty"):
        raise WireError(f"{key!r} should be an int64 list, found a {kind} list")
    return list(values)


def _float_list(payload: bytes, context: dict[str, tuple[int, int]], key: str) -> np.ndarray:
    rng = context.get(key)
    if rng is None:
        return np.zeros(0, np.float32)
    kind, values = decode_feature(payload, *rng)
    if kind == "empty":
        return np.zeros(0, np.float32)
    if kind != "float":
        raise WireError(f"{key!r} should be a float list, found a {kind} list")
    return values  # type: ignore[return-value]


class FrameFeatureReader(_YT8MReader):
    """Frame-level YouTube-8M ``SequenceExample`` TFRecords (and directories made by ``zoo data pack``).

    Yields ``id`` (str), ``labels`` (list of int), one float32 ``[n, size]`` array per feature in
    ``dataset.features`` (rgb 1024, audio 128), truncated to ``dataset.max_frames``, and ``num_frames`` (n).
    """

    name = "yt8m-frame"

    @dataclass
    class Config(RemoteData):
        paths: list[str] = field(default_factory=list)
        """TFRecord files, packed directories, directories, glob patterns or .list files (one path per line);
        local paths or URLs (s3://, gs://, https://)."""
        verify_crc: bool = True
        """Check each record's masked crc32c (cheap; catches damaged or half-downloaded files)."""
        skip_corrupt: bool = False
        """Skip damaged records (bad checksum, truncated, wrong feature size, label out of range), count them
        and report them at the end, instead of stopping with an error."""
        segments: bool = False
        """Segment-level training (2019 task): one example per rated 5-frame segment of the segment-rated
        data (its 5 frames; ``labels`` the classes rated present, ``label_mask`` the classes rated at all, so
        the loss ignores the unrated classes). Example ids are ``video:start``."""
        layout: Literal["auto", "yt8m", "mediapipe"] = "auto"
        """Record keys: yt8m (id or video_id, labels, feature lists named like the features), mediapipe
        (MediaSequence: RGB/feature/floats, clip/label/index, example/id), auto (whichever is present)."""
        feature_keys: dict[str, str] = field(default_factory=dict)
        """Feature list key per feature, overriding the layout, e.g. {rgb: my/rgb/floats}."""
        id_key: str | None = None
        """Context key of the video id, overriding the layout (e.g. video_id)."""
        label_key: str | None = None
        """Context key of the int64 labels, overriding the layout (e.g. clip/label/index)."""
        dtype: Literal["auto", "uint8", "float32"] = "auto"
        """Frame values: uint8 (quantized bytes, dequantized when read), float32 (float lists) or auto."""
        align: Literal["auto", "strict", "shortest"] = "auto"
        """Features with different frame counts: strict (error), shortest (truncate to the shortest),
        auto (shortest for MediaSequence keys, whose streams are not aligned; strict otherwise)."""

    def _claim_directory(self, path: str) -> list[str] | None:
        if storage.is_url(path):
            # packed data is memory-mapped: a packed dataset in a bucket is copied once to local disk
            index = storage.stat(f"{path.rstrip('/')}/{packed.INDEX}")
            if index is None or not index.is_file:
                return None
            from zoo.paths import cache_dir

            root = self.remote.cache_dir or str(cache_dir("packed-remote"))
            return packed.shards_of(storage.localize(path.rstrip("/"), root))
        return packed.shards_of(path)

    @classmethod
    def sample_data(cls, root: Any) -> dict[str, Any]:
        """Make (once, atomically) the built-in sample dataset under ``root``; paths per split and facts."""
        from zoo_yt8m_data.synth import ensure_sample_data

        return ensure_sample_data(root)

    def read_part(self, source: str, start: int, step: int) -> Iterator[dict[str, Any]]:
        if not getattr(self.config, "segments", False):
            yield from self._videos(source, start, step)
            return
        if packed.is_shard(source):
            raise DataError(
                f"{source}: packed data keeps no segment ratings; data.segments needs the segment-rated "
                f"TFRecords (partition 3/frame/validate)"
            )
        for record in self._videos(source, start, step):
            yield from self._segment_examples(source, record)

    def _segment_examples(self, source: str, record: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """One training example per rated segment of ``record`` (the starter code's segment reader)."""
        good, bad = _fitting_starts(record)
        for start in bad:
            self.bad_record(
                source,
                -1,
                f"rated segment at {start} does not fit in the video's {record['num_frames']} frames",
                video=record["id"],
            )
        starts = record["segment_start_times"]
        for start in good:
            at = starts == start
            classes = record["segment_labels"][at]
            out = {
                "id": f"{record['id']}:{start}",
                "labels": [int(c) for c in classes[record["segment_scores"][at] > 0]],
                "label_mask": [int(c) for c in classes],
                "num_frames": SEGMENT_FRAMES,
            }
            for name in self.features:
                out[name] = record[name][start : start + SEGMENT_FRAMES].copy()
            yield out

    def count_part(self, source: str, start: int, step: int) -> int:
        """Examples :meth:`read_part` yields for a task: videos, or (segment mode) their rated segments."""
        if not getattr(self.config, "segments", False):
            return len(range(start, self.count(source), step))
        skipped = len(self.skipped)
        total = 0
        for record in self._videos(source, start, step):
            total += len(_fitting_starts(record)[0])
        del self.skipped[skipped:]  # reported when the records are read, not when they are counted
        return total

    def _videos(self, source: str, start: int, step: int) -> Iterator[dict[str, Any]]:
        if packed.is_shard(source):
            shard = packed.open_shard(source, self.features)
            for index in range(start, shard.records, step):
                record = shard.record(index, self.max_frames)
                labels = self._labels(source, index, record["labels"], record["id"])
                if labels is not None:
                    yield record
            return
        if source.endswith((".pkl", ".pickle")):
            raise DataError(
                f"{source}: a pickle; PaddleVideo pickles are read by the reader 'paddlevideo-pkl' "
                f"(data.reader: paddlevideo-pkl), or convert them once with `zoo data pack`"
            )
        for index, payload in self._records(source, start, step):
            record = self._decode(source, index, payload)
            if record is not None:
                yield record
        self._report_two_layouts(source)

    def _decode(self, path: str, index: int, payload: bytes) -> dict[str, Any] | None:
        video = None
        layout = self.layout
        try:
            context, lists = parse_sequence_example(payload)
            video, id_key = _context_id(path, payload, context, layout.id_keys)
            label_key = _first_key(context, layout.label_keys)
            labels = _int_list(payload, context, label_key) if label_key is not None else []
            record: dict[str, Any] = {"id": video}
            counts: dict[str, int] = {}
            keys: dict[str, str] = {}
            max_frames = self.max_frames
            n = -1
            for name, size in self.features.items():
                candidates = layout.feature_keys[name]
                key = candidates[0] if candidates[0] in lists else _first_key(lists, candidates)
                if key is None:
                    have = ", ".join(sorted(lists)) or "none"
                    wanted = " or ".join(repr(k) for k in candidates)
                    raise WireError(
                        f"no feature list {wanted} (the record has: {have}); is this frame-level data? "
                        f"video-level files need data.reader: yt8m-video; other keys: data.feature_keys"
                    )
                keys[name] = key
                start, stop = lists[key]
                try:
                    frames = decode_frame_values(payload, start, stop, size, layout.dtype)
                except WireError as exc:
                    dtype = "" if layout.dtype == "auto" else f", data.dtype says {layout.dtype}"
                    raise WireError(
                        f"feature {key!r}: {exc} (dataset.features says {name}: {size}{dtype})"
                    ) from None
                counts[name] = length = len(frames)
                n = length if n in (-1, length) else -2  # -2: the features differ in length
                if frames.dtype is _UINT8:
                    # A view would keep the whole record alive (all its frames) while the video waits in the
                    # shuffle buffer: a long video keeps a copy of its first max_frames frames only.
                    if len(frames) > max_frames:
                        frames = frames[:max_frames].copy()
                else:  # float frames are (maybe unaligned) views of the record: an aligned float32 copy
                    frames = np.array(frames[:max_frames], np.float32)
                record[name] = frames
            if n < 0:
                n = self._align(counts, keys, record)
            if layout.name == "auto":
                self._check_two_layouts(path, index, payload, context, lists, video, labels, counts)
            if self.layouts_seen is not None:
                dtypes = {name: str(record[name].dtype) if counts[name] else "" for name in counts}
                seen = tuple((name, keys[name], dtypes[name]) for name in counts)
                self.layouts_seen[(layout.describe(id_key, label_key, keys), id_key, label_key, seen)] += 1
            self._extra(payload, context, record)
        except WireError as exc:
            self.bad_record(path, index, str(exc), video=video)
            return None
        checked = self._labels(path, index, labels, video)
        if checked is None:
            return None
        record["labels"] = checked
        record["num_frames"] = min(n, self.max_frames)
        return record

    def _check_two_layouts(
        self,
        path: str,
        index: int,
        payload: bytes,
        context: dict[str, tuple[int, int]],
        lists: dict[str, tuple[int, int]],
        video: str,
        labels: list[int],
        counts: dict[str, int],
    ) -> None:
        """A record holding both the YouTube-8M and the MediaPipe keys with different ids, labels or frame
        counts: read with the first found (the YouTube-8M ones), counted per file and reported once a file
        is read (a few dict lookups per record when only one layout is present)."""
        other_id = _first_key(context, MEDIAPIPE_ID_KEYS)
        other_labels = MEDIAPIPE_LABEL_KEYS[0] if MEDIAPIPE_LABEL_KEYS[0] in context else None
        other_lists = {n: mediapipe_feature_key(n) for n in counts if mediapipe_feature_key(n) in lists}
        if not (other_id or other_labels or other_lists) or not (
            _first_key(context, YT8M_ID_KEYS) or "labels" in context or any(n in lists for n in counts)
        ):
            return
        differences = []
        if other_id and _first_key(context, YT8M_ID_KEYS):
            their = _context_id(path, payload, context, (other_id,))[0]
            if their != video:
                differences.append(f"id {video!r} vs {other_id} {their!r}")
        if other_labels and "labels" in context:
            their_labels = _int_list(payload, context, other_labels)
            if sorted(their_labels) != sorted(labels):
                differences.append(f"labels {labels[:5]} vs {other_labels} {their_labels[:5]}")
        for name, key in other_lists.items():
            if name in lists:
                theirs = len(decode_frame_values(payload, *lists[key], self.features[name], "auto"))
                if theirs != counts[name]:
                    differences.append(f"{counts[name]} {name} frames vs {theirs} in {key}")
        if differences:
            count, first = self.two_layouts.get(path, (0, None))
            self.two_layouts[path] = (count + 1, first or f"record {index}: {'; '.join(differences)}")

    def _report_two_layouts(self, path: str) -> None:
        found = self.two_layouts.pop(path, None)
        if found is None or path in self.two_layouts_reported:
            return
        self.two_layouts_reported.add(path)
        count, first = found
        print(
            f"warning: {path}: {count} record(s) carry both the YouTube-8M and the MediaPipe layout and they "
            f"disagree (first: {first}); they were read with the YouTube-8M keys. Set data.layout: yt8m or "
            f"mediapipe to choose (`zoo data inspect` lists the layouts of a file)",
            file=sys.stderr,
            flush=True,
        )

    def _align(self, counts: dict[str, int], keys: dict[str, str], record: dict[str, Any]) -> int:
        """The video's frame count; features of different lengths are an error or cut to the shortest."""
        lengths = set(counts.values())
        if len(lengths) <= 1:
            return lengths.pop() if lengths else 0
        n = min(lengths)
        shortest = self.layout.align == "shortest" or (
            self.layout.align == "auto" and any(k.endswith("/feature/floats") for k in keys.values())
        )
        if not shortest:
            first = next(iter(counts))
            other = next(name for name in counts if counts[name] != counts[first])
            raise WireError(
                f"feature {other!r} has {counts[other]} frames but {first!r} has {counts[first]} "
                f"(data.align: shortest cuts every feature to the shortest)"
            )
        for name in counts:
            record[name] = record[name][:n]
        return n

    def _extra(self, payload: bytes, context: dict[str, tuple[int, int]], record: dict[str, Any]) -> None:
        """Readers whose records carry more context: the segment ratings (segment mode, or yt8m-segment)."""
        if getattr(self.config, "segments", False):
            _segment_context(payload, context, record, self.num_classes)


class SegmentReader(FrameFeatureReader):
    """Segment-rated YouTube-8M (2019, partition ``3/frame/validate``) frame-level TFRecords.

    Besides the frame-level fields: ``segment_start_times``, ``segment_end_times``, ``segment_labels``
    (int64 arrays) and ``segment_scores`` (float32 array; 1 = the class is present in the 5-frame segment).
    Test files carry no ratings: those arrays are empty.
    """

    name = "yt8m-segment"

    @dataclass
    class Config(RemoteData):
        paths: list[str] = field(default_factory=list)
        """TFRecord files, directories, glob patterns or .list files (one path per line)."""
        verify_crc: bool = True
        """Check each record's masked crc32c."""
        skip_corrupt: bool = False
        """Skip damaged records, count and report them, instead of stopping with an error."""
        segments: bool = False
        """Segment-level training (2019 task): one example per rated 5-frame segment of the segment-rated
        data (its 5 frames; ``labels`` the classes rated present, ``label_mask`` the classes rated at all, so
        the loss ignores the unrated classes). Example ids are ``video:start``."""

    rated_classes_file = "segment_label_ids.csv"
    """The file naming the rated classes (the 2019 challenge's, header ``Index``), found beside the data."""

    def _claim_directory(self, path: str) -> list[str] | None:
        return None

    def _extra(self, payload: bytes, context: dict[str, tuple[int, int]], record: dict[str, Any]) -> None:
        _segment_context(payload, context, record, self.num_classes)

    @classmethod
    def sample_data(cls, root: Any) -> dict[str, Any]:
        """The built-in segment sample under ``root`` (made once): the rated ``validate/`` shards split in
        halves, ``train`` (to fine-tune on) and ``valid`` (to evaluate on: tuning and evaluating on the same
        ratings would flatter the tuned model), the unrated ``test/`` shards, and ``rated_classes`` (the
        sample's segment_label_ids.csv)."""
        from zoo_yt8m_data.segment_synth import ensure_sample_segments

        seg = ensure_sample_segments(root)
        half = max(1, len(seg["valid"]) // 2)
        return {
            "train": seg["valid"][:half],
            "valid": seg["valid"][half:] or seg["valid"],
            "test": seg["test"],
            "num_classes": seg["num_classes"],
            "vocabulary": seg["vocabulary"],
            "rated_classes": seg["label_ids"],
            "root": seg["root"],
        }

    @staticmethod
    def read_rated_classes(path: Any, num_classes: int | None = None) -> np.ndarray:
        """The sorted class indices a ``segment_label_ids.csv`` lists; errors name the file and line."""
        from zoo_yt8m_data.segment_synth import read_label_ids

        return read_label_ids(path, num_classes)


def _fitting_starts(record: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The distinct rated segment starts of a record that fit in its frames, and those that do not."""
    n = record["num_frames"]
    good: list[int] = []
    bad: list[int] = []
    for start in np.unique(record["segment_start_times"]).tolist():
        (good if 0 <= start and start + SEGMENT_FRAMES <= n else bad).append(int(start))
    return good, bad


def _segment_context(
    payload: bytes, context: dict[str, tuple[int, int]], record: dict[str, Any], num_classes: int
) -> None:
    """The 2019 segment ratings of a record's context into ``record`` (checked: equal lengths, classes)."""
    for key in ("segment_start_times", "segment_end_times", "segment_labels"):
        record[key] = np.asarray(_int_list(payload, context, key), np.int64)
    record["segment_scores"] = _float_list(payload, context, "segment_scores")
    lengths = {len(record[k]) for k in ("segment_start_times", "segment_labels", "segment_scores")}
    if len(lengths) > 1:
        raise WireError("segment_start_times, segment_labels and segment_scores differ in length")
    bad = [int(v) for v in record["segment_labels"] if not 0 <= v < num_classes]
    if bad:
        raise WireError(f"segment label {bad[0]} is outside [0, {num_classes})")


class VideoFeatureReader(_YT8MReader):
    """Video-level YouTube-8M ``Example`` TFRecords: ``id``, ``labels``, ``mean_rgb`` [1024], ``mean_audio`` [128].

    For each feature ``f`` in ``dataset.features`` the record's ``mean_f`` is read (float32). Batches feed
    them as one-frame videos (``f``: ``[B, 1, size]``), so frame-level models and pooling heads work unchanged.
    """

    name = "yt8m-video"

    @dataclass
    class Config(RemoteData):
        paths: list[str] = field(default_factory=list)
        """TFRecord files, directories, glob patterns or .list files (one path per line)."""
        verify_crc: bool = True
        """Check each record's masked crc32c."""
        skip_corrupt: bool = False
        """Skip damaged records, count and report them, instead of stopping with an error."""

    def read(self, source: str) -> Iterator[dict[str, Any]]:
        for record in self.read_part(source, 0, 1):
            out = {"id": record["id"], "labels": record["labels"]}
            for name in self.features:
                out[f"mean_{name}"] = record[name][0]
            yield out

    def read_part(self, source: str, start: int, step: int) -> Iterator[dict[str, Any]]:
        for index, payload in self._records(source, start, step):
            video = None
            try:
                features = parse_example(payload)
                video, _ = _context_id(source, payload, features, self.layout.id_keys)
                labels = _int_list(payload, features, "labels")
                record: dict[str, Any] = {"id": video, "num_frames": 1}
                for name, size in self.features.items():
                    key = f"mean_{name}"
                    if key not in features:
                        have = ", ".join(sorted(features)) or "none"
                        raise WireError(
                            f"no feature {key!r} (the record has: {have}); frame-level files need "
                            f"data.reader: yt8m-frame"
                        )
                    values = _float_list(payload, features, key)
                    if len(values) != size:
                        raise WireError(
                            f"feature {key!r} has {len(values)} values, expected {size} "
                            f"(dataset.features says {name}: {size})"
                        )
                    record[name] = values.reshape(1, size)
            except WireError as exc:
                self.bad_record(source, index, str(exc), video=video)
                continue
            checked = self._labels(source, index, labels, video)
            if checked is not None:
                record["labels"] = checked
                yield record


class PaddleVideoPickleReader(_YT8MReader):
    """PaddleVideo 1.x pickle shards (``tf2pkl.py`` output), read without running code from the file.

    A pickle can execute anything while loading; this reader's unpickler admits only numpy arrays, numpy
    scalars and the plain containers the format uses, and refuses any other object before it is built.
    Prefer ``zoo data pack`` once: the packed format needs no pickle and reads much faster.
    """

    name = "paddlevideo-pkl"
    dir_patterns = ("*.pkl", "*.pickle")

    @dataclass
    class Config(RemoteData):
        paths: list[str] = field(default_factory=list)
        """Pickle files, directories, glob patterns or .list files (train.list: one path per line)."""
        skip_corrupt: bool = False
        """Skip malformed videos (wrong feature size, label out of range), count and report them."""

    def count(self, source: str) -> int:
        from zoo_yt8m_data.pickles import load_pickle

        return len(load_pickle(source))

    def read_part(self, source: str, start: int, step: int) -> Iterator[dict[str, Any]]:
        from zoo_yt8m_data.pickles import load_pickle, pickle_record

        videos = load_pickle(source)
        for index in range(start, len(videos), step):
            try:
                record = pickle_record(videos[index], self.features, self.max_frames)
            except ValueError as exc:
                self.bad_record(source, index, str(exc))
                continue
            labels = self._labels(source, index, record["labels"], record["id"])
            if labels is not None:
                yield record


READERS = [FrameFeatureReader, VideoFeatureReader, SegmentReader, PaddleVideoPickleReader]

__all__ = [
    "READERS",
    "FrameFeatureReader",
    "PaddleVideoPickleReader",
    "SegmentReader",
    "VideoFeatureReader",
    "dequantize",
    "dequantize_into",
    "quantize",
]
