"""Just enough protobuf wire format for ``tf.train.Example`` and ``tf.train.SequenceExample``.

Decoding walks the few top-level fields in Python and leaves the bulk (one bytes feature per frame) to
numpy: a canonical encoder writes every frame of a ``FeatureList`` with the same 9-byte header (tag and
length of Feature, BytesList and value), so after checking those headers with one vectorized comparison
all frames are a single strided ``np.frombuffer`` view. Anything else (other field order, extra fields,
multi-byte-length differences) falls back to a general parser that accepts every valid encoding.

Messages (tensorflow/core/example/{example,feature}.proto)::

    Example         { Features features = 1; }
    SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
    Features        { map<string, Feature> feature = 1; }
    FeatureLists    { map<string, FeatureList> feature_list = 1; }
    FeatureList     { repeated Feature feature = 1; }
    Feature         { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1; }  Int64List { repeated int64 value = 1; }
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from zoo.errors import DataError


class WireError(DataError, ValueError):
    """The bytes are not the protobuf message they should be."""


# A decoded context feature: bytes values, float32 values or int64 values.
FeatureValue = list[bytes] | np.ndarray | list[int]

_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field number, wire type, start, stop)`` of each field in ``buf[pos:end]``.

    For length-delimited fields start:stop is the payload; for varints start is the value and stop the
    position after it; fixed-size fields give their byte range.
    """
    while pos < end:
        b = buf[pos]
        if b < 0x80:
            key = b
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        wire = key & 7
        number = key >> 3
        if wire == _WIRE_LEN:
            b = buf[pos] if pos < end else 0x80
            if b < 0x80 and pos < end:
                length = b
                pos += 1
            else:
                length, pos = _varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise WireError(f"field {number} runs past the end of its message")
            yield number, wire, pos, stop
            pos = stop
        elif wire == _WIRE_VARINT:
            value, pos2 = _varint(buf, pos, end)
            yield number, wire, value, pos2
            pos = pos2
        elif wire == _WIRE_I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield number, wire, pos, pos + 8
            pos += 8
        elif wire == _WIRE_I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield number, wire, pos, pos + 4
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire} (field {number})")


def _map_entries(buf: bytes, start: int, end: int) -> dict[str, tuple[int, int]]:
    """``map<string, Message>`` entries of a Features/FeatureLists message: key -> value byte range."""
    out: dict[str, tuple[int, int]] = {}
    for number, wire, s, e in _fields(buf, start, end):
        if number != 1 or wire != _WIRE_LEN:
            continue
        key = ""
        value = (e, e)  # a missing value is the empty message
        # Fast path: key first (0x0a len key), then value (0x12 len value), one-byte lengths of the key.
        if e - s >= 2 and buf[s] == 0x0A and buf[s + 1] < 0x80:
            kend = s + 2 + buf[s + 1]
            if kend < e and buf[kend] == 0x12:
                length, vstart = _varint(buf, kend + 1, e)
                if vstart + length == e:
                    out[bytes(buf[s + 2 : kend]).decode("utf-8", "surrogateescape")] = (vstart, e)
                    continue
        for n2, w2, s2, e2 in _fields(buf, s, e):
            if n2 == 1 and w2 == _WIRE_LEN:
                key = bytes(buf[s2:e2]).decode("utf-8", "surrogateescape")
            elif n2 == 2 and w2 == _WIRE_LEN:
                value = (s2, e2)
        out[key] = value
    return out


def parse_example(buf: bytes) -> dict[str, tuple[int, int]]:
    """An ``Example``'s features: name -> byte range of its ``Feature`` message."""
    features: dict[str, tuple[int, int]] = {}
    for number, wire, s, e in _fields(buf, 0, len(buf)):
        if number == 1 and wire == _WIRE_LEN:
            features.update(_map_entries(buf, s, e))
    return features


def _canonical_entries(buf: bytes, pos: int, end: int, out: dict[str, tuple[int, int]]) -> bool:
    """Fast path for a map written by a canonical encoder (entries ``0a L (0a K key 12 V value)``).

    Fills ``out`` and returns True, or returns False at the first byte that does not fit (the caller then
    parses the message with the general parser).
    """
    while pos < end:
        if buf[pos] != 0x0A or pos + 1 >= end:
            return False
        b = buf[pos + 1]
        if b < 0x80:
            elen = b
            pos += 2
        else:
            elen, pos = _varint(buf, pos + 1, end)
        eend = pos + elen
        if eend > end or pos + 1 >= eend or buf[pos] != 0x0A:
            return False
        klen = buf[pos + 1]
        kend = pos + 2 + klen
        if klen >= 0x80 or kend + 1 >= eend or buf[kend] != 0x12:
            return False
        b = buf[kend + 1]
        if b < 0x80:
            vlen = b
            vstart = kend + 2
        else:
            vlen, vstart = _varint(buf, kend + 1, eend)
        if vstart + vlen != eend:
            return False
        out[bytes(buf[pos + 2 : kend]).decode("utf-8", "surrogateescape")] = (vstart, eend)
        pos = eend
    return True


def parse_sequence_example(buf: bytes) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """A ``SequenceExample``: (context name -> Feature range, feature list name -> FeatureList range)."""
    end = len(buf)
    pos = 0
    context: dict[str, tuple[int, int]] = {}
    lists: dict[str, tuple[int, int]] = {}
    while pos < end:  # the canonical layout, without generators: most of the per-record cost
        tag = buf[pos]
        if tag == 0x0A:
            target = context
        elif tag == 0x12:
            target = lists
        else:
            return _parse_sequence_example_general(buf)
        if pos + 1 >= end:
            raise WireError("truncated message")
        b = buf[pos + 1]
        if b < 0x80:
            length = b
            pos += 2
        else:
            length, pos = _varint(buf, pos + 1, end)
        stop = pos + length
        if stop > end or not _canonical_entries(buf, pos, stop, target):
            return _parse_sequence_example_general(buf)
        pos = stop
    return context, lists


def _parse_sequence_example_general(
    buf: bytes,
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    context: dict[str, tuple[int, int]] = {}
    lists: dict[str, tuple[int, int]] = {}
    for number, wire, s, e in _fields(buf, 0, len(buf)):
        if wire != _WIRE_LEN:
            continue
        if number == 1:
            context.update(_map_entries(buf, s, e))
        elif number == 2:
            lists.update(_map_entries(buf, s, e))
    return context, lists


def decode_feature(buf: bytes, start: int, end: int) -> tuple[str, FeatureValue]:
    """(kind, values) of the Feature message at ``buf[start:end]``; the last oneof member present wins."""
    fast = _decode_feature_canonical(buf, start, end)
    return fast if fast is not None else _decode_feature_general(buf, start, end)


def _decode_feature_general(buf: bytes, start: int, end: int) -> tuple[str, FeatureValue]:
    kind = "empty"
    rng = (start, start)
    for number, wire, s, e in _fields(buf, start, end):
        if wire == _WIRE_LEN and number in (1, 2, 3):
            kind = ("bytes", "float", "int64")[number - 1]
            rng = (s, e)
    s, e = rng
    if kind == "bytes":
        return kind, [bytes(buf[s2:e2]) for n, w, s2, e2 in _fields(buf, s, e) if n == 1 and w == _WIRE_LEN]
    if kind == "float":
        parts = []
        for n, w, s2, e2 in _fields(buf, s, e):
            if n != 1:
                continue
            if w == _WIRE_LEN:
                if (e2 - s2) % 4:
                    raise WireError("packed float list length is not a multiple of 4")
                parts.append(np.frombuffer(buf, "<f4", (e2 - s2) // 4, s2))
            elif w == _WIRE_I32:
                parts.append(np.frombuffer(buf, "<f4", 1, s2))
        if not parts:
            return kind, np.zeros(0, np.float32)
        return kind, np.concatenate(parts).astype(np.float32)
    if kind == "int64":
        values: list[int] = []
        for n, w, s2, e2 in _fields(buf, s, e):
            if n != 1:
                continue
            if w == _WIRE_LEN:
                pos = s2
                while pos < e2:
                    b = buf[pos]
                    if b < 0x80:
                        values.append(b)
                        pos += 1
                    else:
                        v, pos = _varint(buf, pos, e2)
                        values.append(v - (1 << 64) if v >= 1 << 63 else v)
            elif w == _WIRE_VARINT:
                values.append(s2 - (1 << 64) if s2 >= 1 << 63 else s2)
        return kind, values
    return kind, []


def _decode_feature_canonical(buf: bytes, start: int, end: int) -> tuple[str, FeatureValue] | None:
    """One byte string (``0a L 0a K value``) or a packed int64 list (``1a L 0a K varints``), else None."""
    if end - start < 2:
        return None
    tag = buf[start]
    if tag not in (0x0A, 0x1A) or buf[start + 1] >= 0x80 or start + 2 + buf[start + 1] != end:
        return None
    if start + 2 == end:
        return ("bytes", []) if tag == 0x0A else ("int64", [])
    if buf[start + 2] != 0x0A or buf[start + 3] >= 0x80 or start + 4 + buf[start + 3] != end:
        return None
    if tag == 0x0A:
        return "bytes", [bytes(buf[start + 4 : end])]
    values = []
    pos = start + 4
    while pos < end:
        b = buf[pos]
        if b < 0x80:
            values.append(b)
            pos += 1
        else:
            v, pos = _varint(buf, pos, end)
            values.append(v - (1 << 64) if v >= 1 << 63 else v)
    return "int64", values


def _frame_header(size: int) -> bytes:
    """The 9+ bytes a canonical encoder writes before each frame's ``size`` raw bytes in a FeatureList."""
    inner = b"\x0a" + encode_varint(size)
    bytes_list = inner + b"\x00" * size
    feature = b"\x0a" + encode_varint(len(bytes_list))
    entry_len = len(feature) + len(bytes_list)
    return b"\x0a" + encode_varint(entry_len) + feature + inner


_HEADERS: dict[int, bytes] = {}


def decode_frames(buf: bytes, start: int, end: int, size: int) -> np.ndarray:
    """All frames of the FeatureList at ``buf[start:end]`` as uint8 ``[n, size]``.

    Every frame must be a ``bytes_list`` with exactly one value of ``size`` bytes (what TensorFlow's
    ``FixedLenSequenceFeature([], tf.string)`` + ``decode_raw`` demands); otherwise :class:`WireError` says
    how the frame differs. The result is a read-only view of ``buf`` when the layout is canonical.
    """
    header = _HEADERS.get(size)
    if header is None:
        header = _HEADERS[size] = _frame_header(size)
    hlen = len(header)
    stride = hlen + size
    total = end - start
    if total == 0:
        return np.zeros((0, size), np.uint8)
    if total % stride == 0:
        n = total // stride
        rows = np.frombuffer(buf, np.uint8, total, start).reshape(n, stride)
        if rows[:, :hlen].tobytes() == header * n:  # every frame's header, gathered and compared at C speed
            return rows[:, hlen:]
    return _decode_frames_general(buf, start, end, size)


def _float_frame_header(size: int) -> bytes:
    """The bytes a canonical encoder writes before each frame's ``size`` packed floats in a FeatureList."""
    inner = b"\x0a" + encode_varint(4 * size)
    float_list_len = len(inner) + 4 * size
    feature = b"\x12" + encode_varint(float_list_len)
    return b"\x0a" + encode_varint(len(feature) + float_list_len) + feature + inner


_FLOAT_HEADERS: dict[int, bytes] = {}


def decode_frame_values(buf: bytes, start: int, end: int, size: int, dtype: str = "auto") -> np.ndarray:
    """All frames of the FeatureList at ``buf[start:end]``: uint8 ``[n, size]`` or float32 ``[n, size]``.

    Frames are either one ``bytes_list`` value of ``size`` bytes (quantized, the YouTube-8M releases) or a
    ``float_list`` of ``size`` values (MediaPipe's ``*/feature/floats``, unquantized exports). ``dtype``
    ``"uint8"`` or ``"float32"`` demands one kind; ``"auto"`` takes what the frames are (all frames of a list
    must be of one kind). Float results may be unaligned read-only views of ``buf``: copy them to keep.
    """
    bytes_error = None
    if dtype == "uint8":
        return decode_frames(buf, start, end, size)
    if dtype != "float32":
        try:
            return decode_frames(buf, start, end, size)
        except WireError as exc:
            bytes_error = exc
    if end == start:
        return np.zeros((0, size), np.uint8 if dtype == "auto" else np.float32)
    header = _FLOAT_HEADERS.get(size)
    if header is None:
        header = _FLOAT_HEADERS[size] = _float_frame_header(size)
    hlen = len(header)
    stride = hlen + 4 * size
    total = end - start
    if total % stride == 0:
        n = total // stride
        rows = np.frombuffer(buf, np.uint8, total, start).reshape(n, stride)
        if rows[:, :hlen].tobytes() == header * n:
            return np.ndarray((n, size), "<f4", buf, start + hlen, (stride, 4))
    return _decode_float_frames_general(buf, start, end, size, bytes_error)


def _decode_float_frames_general(
    buf: bytes, start: int, end: int, size: int, bytes_error: WireError | None
) -> np.ndarray:
    frames: list[np.ndarray] = []
    for number, wire, s, e in _fields(buf, start, end):
        if number != 1 or wire != _WIRE_LEN:
            continue
        kind, values = decode_feature(buf, s, e)
        index = len(frames)
        if kind != "float":
            if kind == "bytes" and bytes_error is not None:
                raise bytes_error  # quantized frames: what is wrong with them
            expected = "float" if bytes_error is None else "bytes or float"
            raise WireError(f"frame {index} is a {kind} feature, expected {expected}")
        if len(values) != size:
            raise WireError(f"frame {index} has {len(values)} values, expected {size}")
        frames.append(values)  # type: ignore[arg-type]
    if not frames:
        return np.zeros((0, size), np.float32)
    return np.stack(frames).astype(np.float32, copy=False)


def _decode_frames_general(buf: bytes, start: int, end: int, size: int) -> np.ndarray:
    frames: list[bytes] = []
    for number, wire, s, e in _fields(buf, start, end):
        if number != 1 or wire != _WIRE_LEN:
            continue
        kind, values = decode_feature(buf, s, e)
        index = len(frames)
        if kind != "bytes":
            raise WireError(f"frame {index} is a {kind} feature, expected bytes")
        if len(values) != 1:
            raise WireError(f"frame {index} has {len(values)} byte strings, expected exactly 1")
        value = values[0]
        if len(value) != size:
            raise WireError(f"frame {index} has {len(value)} values, expected {size}")
        frames.append(value)
    if not frames:
        return np.zeros((0, size), np.uint8)
    return np.frombuffer(b"".join(frames), np.uint8).reshape(len(frames), size)


# ---------------------------------------------------------------------------------------------------------
# Encoding (canonical, deterministic: map keys sorted)


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | _WIRE_LEN) + encode_varint(len(payload)) + payload


def encode_feature(value: FeatureValue | Sequence[float] | bytes) -> bytes:
    """A Feature message: bytes/list of bytes -> bytes_list, float array -> float_list, ints -> int64_list."""
    if isinstance(value, bytes):
        value = [value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return _len_field(2, _len_field(1, value.astype("<f4").tobytes()) if value.size else b"")
        value = [int(v) for v in value.ravel()]
    items = list(value)
    if items and isinstance(items[0], (bytes, bytearray)):
        return _len_field(1, b"".join(_len_field(1, bytes(v)) for v in items))
    if items and isinstance(items[0], float):
        return encode_feature(np.asarray(items, np.float32))
    packed = b"".join(encode_varint(int(v)) for v in items)
    return _len_field(3, _len_field(1, packed) if packed else b"")


def _features(features: dict[str, bytes]) -> bytes:
    """A Features/FeatureLists map from already encoded values."""
    return b"".join(
        _len_field(1, _len_field(1, key.encode("utf-8")) + _len_field(2, value))
        for key, value in sorted(features.items())
    )


def encode_example(features: dict[str, FeatureValue | bytes]) -> bytes:
    """A serialized ``tf.train.Example``."""
    return _len_field(1, _features({k: encode_feature(v) for k, v in features.items()}))


def encode_frames(frames: np.ndarray) -> bytes:
    """A FeatureList of one bytes feature per row of the uint8 ``frames [n, size]``."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    n, size = frames.shape
    header = _frame_header(size)
    if n == 0:
        return b""
    rows = np.empty((n, len(header) + size), np.uint8)
    rows[:, : len(header)] = np.frombuffer(header, np.uint8)
    rows[:, len(header) :] = frames
    return rows.tobytes()


def encode_float_frames(frames: np.ndarray) -> bytes:
    """A FeatureList of one packed float feature per row of the float ``frames [n, size]``."""
    frames = np.ascontiguousarray(frames, dtype="<f4")
    n, size = frames.shape
    if n == 0:
        return b""
    header = np.frombuffer(_float_frame_header(size), np.uint8)
    rows = np.empty((n, len(header) + 4 * size), np.uint8)
    rows[:, : len(header)] = header
    rows[:, len(header) :] = frames.view(np.uint8).reshape(n, 4 * size)
    return rows.tobytes()


def encode_sequence_example(
    context: dict[str, FeatureValue | bytes], feature_lists: dict[str, np.ndarray]
) -> bytes:
    """A serialized ``tf.train.SequenceExample``: uint8 frames as one bytes feature per frame, float frames
    as one float list per frame."""
    ctx = _features({k: encode_feature(v) for k, v in context.items()})
    lists = _features(
        {
            k: encode_frames(v) if np.asarray(v).dtype == np.uint8 else encode_float_frames(v)
            for k, v in feature_lists.items()
        }
    )
    return _len_field(1, ctx) + _len_field(2, lists)
