"""TFRecord framing and protobuf decoding without TensorFlow: checksums, damage, odd but valid encodings."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from zoo_yt8m_data import wire
from zoo_yt8m_data.tfrecord import RecordError, count_records, frame, masked_crc, read_records, write_tfrecord

import zoo


def test_masked_crc_matches_the_tfrecord_definition():
    # crc32c("123456789") = 0xE3069283 (the standard check value); masked as TFRecord does.
    crc = 0xE3069283
    expected = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc(b"123456789") == expected


def test_framing_roundtrip_and_count(tmp_path):
    payloads = [b"", b"a", b"x" * 100_000, bytes(range(256))]
    path = tmp_path / "f.tfrecord"
    write_tfrecord(path, payloads)
    assert [p for _, p in read_records(str(path))] == payloads
    assert count_records(str(path)) == 4
    # reading every second record seeks over the others
    got = [(i, p) for i, p in read_records(str(path), select=lambda i: i % 2 == 1)]
    assert got == [(0, None), (1, b"a"), (2, None), (3, bytes(range(256)))]


def _damaged(tmp_path, payloads, *, flip_at=None, cut=None):
    data = bytearray(b"".join(frame(p) for p in payloads))
    if flip_at is not None:
        data[flip_at] ^= 0xFF
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(bytes(data))
    return str(path)


def test_payload_crc_mismatch_names_file_and_record(tmp_path):
    payloads = [b"first", b"second", b"third"]
    offset = len(frame(b"first")) + 12 + 2  # inside the payload of record 1
    path = _damaged(tmp_path, payloads, flip_at=offset)
    with pytest.raises(RecordError) as info:
        list(read_records(path))
    assert info.value.index == 1 and info.value.recoverable
    assert path in str(info.value) and "record 1" in str(info.value) and "checksum" in str(info.value)
    # unchecked, the damaged payload comes through; with a handler, reading goes on past it
    assert len(list(read_records(path, verify_crc=False))) == 3
    seen = []
    good = [p for _, p in read_records(path, on_corrupt=seen.append)]
    assert good == [b"first", b"third"] and [e.index for e in seen] == [1]


def test_truncated_file_is_an_error_that_ends_the_file(tmp_path):
    payloads = [b"a" * 50, b"b" * 50]
    path = _damaged(tmp_path, payloads, cut=len(frame(payloads[0])) + 30)
    with pytest.raises(RecordError, match=r"record 1 .*truncated"):
        list(read_records(path))
    seen = []
    assert [p for _, p in read_records(path, on_corrupt=seen.append)] == [b"a" * 50]
    assert not seen[0].recoverable


def test_length_crc_mismatch_is_detected(tmp_path):
    path = _damaged(tmp_path, [b"abc"], flip_at=0)
    with pytest.raises(RecordError, match="length checksum"):
        list(read_records(path))


def test_gzip_file_gets_a_clear_message(tmp_path):
    path = tmp_path / "x.tfrecord"
    path.write_bytes(gzip.compress(frame(b"abc") * 3))
    with pytest.raises(zoo.DataError, match="gzip"):
        list(read_records(str(path)))


def test_missing_file(tmp_path):
    with pytest.raises(zoo.DataError, match="not found"):
        list(read_records(str(tmp_path / "nope.tfrecord")))


# --- protobuf -----------------------------------------------------------------------------------------


def _varint(v):
    return wire.encode_varint(v)


def _ld(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_sequence_example_roundtrip_fast_path():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (7, 128), dtype=np.uint8)
    buf = wire.encode_sequence_example({"id": b"abcd", "labels": [3, 0, 3861]}, {"rgb": rgb, "audio": audio})
    context, lists = wire.parse_sequence_example(buf)
    assert wire.decode_feature(buf, *context["id"]) == ("bytes", [b"abcd"])
    assert wire.decode_feature(buf, *context["labels"]) == ("int64", [3, 0, 3861])
    got = wire.decode_frames(buf, *lists["rgb"], 1024)
    assert got.base is not None  # a view: the fast path took all frames at once
    np.testing.assert_array_equal(got, rgb)
    np.testing.assert_array_equal(wire.decode_frames(buf, *lists["audio"], 128), audio)


def test_non_canonical_encodings_decode_through_the_general_parser():
    rgb = np.arange(6, dtype=np.uint8).reshape(2, 3)
    # frames with an unknown extra field inside each Feature, a non-packed int64 list, negative label,
    # context after feature_lists, map entry with value before key
    frame_feature = _ld(1, _ld(1, rgb[0].tobytes())) + _varint(99 << 3 | 0) + _varint(5)
    frame_feature2 = _ld(1, _ld(1, rgb[1].tobytes()))
    feature_list = _ld(1, frame_feature) + _ld(1, frame_feature2)
    lists = _ld(1, _ld(2, feature_list) + _ld(1, b"rgb"))
    labels_feature = _ld(3, _varint(1 << 3 | 0) + _varint(7) + _varint(1 << 3 | 0) + _varint(-1))
    context = _ld(1, _ld(1, b"labels") + _ld(2, labels_feature)) + _ld(
        1, _ld(1, b"id") + _ld(2, _ld(1, _ld(1, b"v1")))
    )
    buf = _ld(2, lists) + _ld(1, context)
    ctx, fl = wire.parse_sequence_example(buf)
    assert wire.decode_feature(buf, *ctx["labels"]) == ("int64", [7, -1])
    np.testing.assert_array_equal(wire.decode_frames(buf, *fl["rgb"], 3), rgb)


def test_wrong_frame_size_is_reported():
    buf = wire.encode_sequence_example({"id": b"v"}, {"rgb": np.zeros((3, 512), np.uint8)})
    _, lists = wire.parse_sequence_example(buf)
    with pytest.raises(wire.WireError, match="frame 0 has 512 values, expected 1024"):
        wire.decode_frames(buf, *lists["rgb"], 1024)


def test_float_lists_packed_and_unpacked():
    values = np.array([0.5, -1.25, 3.0], np.float32)
    buf = wire.encode_example({"mean_rgb": values, "id": b"x"})
    features = wire.parse_example(buf)
    kind, got = wire.decode_feature(buf, *features["mean_rgb"])
    assert kind == "float"
    np.testing.assert_array_equal(got, values)
    unpacked = _ld(2, b"".join(_varint(1 << 3 | 5) + struct.pack("<f", v) for v in values))
    kind, got = wire.decode_feature(unpacked, 0, len(unpacked))
    np.testing.assert_array_equal(got, values)


def test_truncated_message_raises_wire_error():
    buf = wire.encode_sequence_example({"id": b"abcd"}, {"rgb": np.zeros((2, 4), np.uint8)})
    with pytest.raises(wire.WireError):
        wire.parse_sequence_example(buf[:-3] + b"\x0a\xff")


def test_fast_paths_agree_with_the_general_parser():
    rng = np.random.default_rng(5)
    for i in range(30):
        n = int(rng.integers(0, 5))
        labels = rng.integers(0, 5000, int(rng.integers(0, 6))).tolist() + ([-3] if i % 7 == 0 else [])
        context = {
            "id": f"vid{i}".encode() * int(rng.integers(1, 60)),
            "labels": labels,
            "segment_scores": rng.random(3).astype(np.float32),
        }
        buf = wire.encode_sequence_example(
            context,
            {
                "rgb": rng.integers(0, 256, (n, 16), dtype=np.uint8),
                "a" * int(rng.integers(1, 200)): np.zeros((n, 3), np.uint8),
            },
        )
        fast = wire.parse_sequence_example(buf)
        assert fast == wire._parse_sequence_example_general(buf)
        for rng_ in fast[0].values():
            general = wire._decode_feature_general(buf, *rng_)
            kind, values = wire.decode_feature(buf, *rng_)
            assert kind == general[0] and np.array_equal(np.asarray(values), np.asarray(general[1]))
        assert wire.decode_feature(buf, *fast[0]["labels"])[1] == labels
