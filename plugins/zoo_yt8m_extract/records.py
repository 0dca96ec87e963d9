"""The records ``zoo extract`` writes: YouTube-8M's 2018 layouts, encoded and framed without TensorFlow.

Frame level: a ``tf.train.SequenceExample`` with context ``id`` (bytes), ``labels`` (int64 list), ``mean_rgb``
and ``mean_audio`` (floats), and feature lists ``rgb`` and ``audio`` (one quantized byte string per frame).
Video level: a ``tf.train.Example`` with ``id``, ``labels``, ``mean_rgb``, ``mean_audio``.
The protobuf wire format is written by hand (the data plugin's writer is not public API): a handful of
length-delimited fields, packed floats and varints.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import crc32c
import numpy as np

_MASK_DELTA = 0xA282EAD8


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 values are written as their two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def bytes_feature(values: Sequence[bytes]) -> bytes:
    return _field(1, b"".join(_field(1, v) for v in values))


def float_feature(values: np.ndarray) -> bytes:
    packed = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _field(2, _field(1, packed) if packed else b"")


def int64_feature(values: Sequence[int]) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if packed else b"")


def _features(features: dict[str, bytes]) -> bytes:
    """A ``Features`` message: map<string, Feature>, keys sorted (deterministic bytes)."""
    return b"".join(_field(1, _field(1, k.encode()) + _field(2, v)) for k, v in sorted(features.items()))


def _context(vid: bytes, labels: Sequence[int], means: dict[str, np.ndarray]) -> dict[str, bytes]:
    context = {"id": bytes_feature([vid]), "labels": int64_feature(sorted(labels))}
    for name, mean in means.items():
        context[f"mean_{name}"] = float_feature(mean)
    return context


def sequence_example(
    vid: bytes, labels: Sequence[int], frames: dict[str, np.ndarray], means: dict[str, np.ndarray]
) -> bytes:
    """A frame-level record: ``frames`` maps a feature name to uint8 ``[n, dim]`` (one byte string per row)."""
    lists = {}
    for name, codes in frames.items():
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        lists[name] = b"".join(_field(1, bytes_feature([row.tobytes()])) for row in codes)
    feature_lists = b"".join(
        _field(1, _field(1, k.encode()) + _field(2, v)) for k, v in sorted(lists.items())
    )
    return _field(1, _features(_context(vid, labels, means))) + _field(2, feature_lists)


def example(vid: bytes, labels: Sequence[int], means: dict[str, np.ndarray]) -> bytes:
    """A video-level record (``tf.train.Example``)."""
    return _field(1, _features(_context(vid, labels, means)))


def masked_crc(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def framed(payload: bytes) -> bytes:
    """One TFRecord: length, masked crc32c of the length, payload, masked crc32c of the payload."""
    length = struct.pack("<Q", len(payload))
    return b"".join(
        (length, struct.pack("<I", masked_crc(length)), payload, struct.pack("<I", masked_crc(payload)))
    )
