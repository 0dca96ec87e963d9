"""The yt8m readers without TensorFlow: values, sources, bad input, skip_corrupt, pickles."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from zoo_yt8m_data.readers import QUANT_BIAS, QUANT_SCALE, dequantize
from zoo_yt8m_data.tfrecord import frame
from zoo_yt8m_data.wire import encode_example, encode_sequence_example

import zoo
from zoo import DatasetSpec

YT8M_FEATURES = {"rgb": 1024, "audio": 128}


def video(vid: str, labels, n: int, seed: int = 0, rgb_size: int = 1024, audio_size: int = 128):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, rgb_size), dtype=np.uint8)
    audio = rng.integers(0, 256, (n, audio_size), dtype=np.uint8)
    payload = encode_sequence_example(
        {"id": vid.encode(), "labels": list(labels)}, {"rgb": rgb, "audio": audio}
    )
    return payload, rgb, audio


def write(path, payloads):
    path.write_bytes(b"".join(frame(p) for p in payloads))
    return str(path)


def test_frame_reader_decodes_dequantizes_and_truncates(tmp_path):
    items = [video("a", [1, 5], 3, 0), video("b", [], 1, 1), video("c", [3861], 310, 2)]
    path = write(tmp_path / "x.tfrecord", [p for p, _, _ in items])
    got = list(zoo.build_reader("yt8m-frame", paths=[path]))
    assert [g["id"] for g in got] == ["a", "b", "c"]
    assert [g["labels"] for g in got] == [[1, 5], [], [3861]]
    assert [g["num_frames"] for g in got] == [3, 1, 300]
    for g, (_, rgb, audio) in zip(got, items):
        n = g["num_frames"]
        assert g["rgb"].shape == (n, 1024) and g["audio"].shape == (n, 128)
        expected = rgb[:n].astype(np.float32) * np.float32(4 / 255) + np.float32(4 / 512 - 2)
        np.testing.assert_array_equal(g["rgb"], expected)
        np.testing.assert_array_equal(g["audio"], dequantize(audio[:n]))


def test_dequantization_range_matches_the_starter_code():
    values = dequantize(np.array([0, 127, 128, 255], np.uint8))
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, np.array([0, 127, 128, 255]) * 4 / 255 + 4 / 512 - 2, atol=1e-6)
    assert values[0] == np.float32(-2 + 4 / 512) and values[-1] == np.float32(2 + 4 / 512)
    assert QUANT_SCALE == np.float32(4 / 255) and QUANT_BIAS == np.float32(-1.9921875)


def test_sources_lists_dirs_globs_and_their_errors(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    a = write(data / "train0000.tfrecord", [video("a", [0], 2)[0]])
    b = write(data / "train0001.tfrecord", [video("b", [0], 2)[0]])
    (data / ".train0002.tfrecord.partial").write_bytes(b"half")  # a download in progress never counts
    (data / "notes.txt").write_text("x")
    listing = tmp_path / "train.list"
    listing.write_text(f"# the seed's list format\n{b}\n\ndata/train0000.tfrecord\n")
    build = lambda paths: zoo.build_reader("yt8m-frame", paths=paths)  # noqa: E731
    assert build([str(data)]).sources() == [a, b]
    assert build([str(data / "train*.tfrecord")]).sources() == [a, b]
    assert build([str(listing)]).sources() == [b, os.path.join(str(tmp_path), "data/train0000.tfrecord")]
    assert [r["id"] for r in build([str(listing)])] == ["b", "a"]
    with pytest.raises(zoo.DataError, match="no yt8m-frame files given"):
        build([]).sources()
    with pytest.raises(zoo.DataError, match=r"missing\.tfrecord: no such file"):
        build([str(tmp_path / "missing.tfrecord")]).sources()
    with pytest.raises(zoo.DataError, match="matches no file"):
        build([str(tmp_path / "nothing*.tfrecord")]).sources()
    empty = tmp_path / "empty.list"
    empty.write_text("\n# nothing\n")
    with pytest.raises(zoo.DataError, match="empty.list is empty"):
        build([str(empty)]).sources()
    with pytest.raises(zoo.DataError, match="named twice"):
        build([str(data), a]).sources()
    bad_list = tmp_path / "bad.list"
    bad_list.write_text(str(tmp_path / "gone.tfrecord") + "\n")
    with pytest.raises(zoo.DataError, match=r"gone\.tfrecord: no such file .*bad\.list"):
        build([str(bad_list)]).sources()


def test_wrong_feature_size_names_file_record_and_feature(tmp_path):
    good = video("ok", [1], 2)[0]
    bad = video("small", [1], 2, rgb_size=512)[0]
    path = write(tmp_path / "f.tfrecord", [good, bad, good])
    with pytest.raises(zoo.DataError) as info:
        list(zoo.build_reader("yt8m-frame", paths=[path]))
    message = str(info.value)
    assert path in message and "record 1" in message and "'small'" in message and "'rgb'" in message
    assert "512 values, expected 1024" in message


def test_label_outside_range_is_an_error_unless_skipped(tmp_path, capsys):
    items = [video("a", [1], 2)[0], video("b", [10], 2)[0], video("c", [-1], 2)[0], video("d", [9], 2)[0]]
    path = write(tmp_path / "l.tfrecord", items)
    with pytest.raises(zoo.DataError, match=r"record 1: video 'b': label 10 is outside \[0, 10\)"):
        list(zoo.build_reader("yt8m-frame", paths=[path], num_classes=10))
    reader = zoo.build_reader("yt8m-frame", paths=[path], num_classes=10, skip_corrupt=True)
    assert [r["id"] for r in reader] == ["a", "d"]
    assert [(s.index, "outside" in s.problem) for s in reader.skipped] == [(1, True), (2, True)]
    err = capsys.readouterr().err
    assert "skipped 2 damaged record(s) in 1 file(s)" in err and "l.tfrecord record 2" in err


def test_skip_corrupt_goes_past_a_bad_checksum(tmp_path):
    items = [video(v, [0], 2, i)[0] for i, v in enumerate("abc")]
    data = bytearray(b"".join(frame(p) for p in items))
    data[len(frame(items[0])) + 12 + 1000] ^= 1  # a feature byte inside record 1
    path = tmp_path / "crc.tfrecord"
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.DataError, match="record 1 .*checksum"):
        list(zoo.build_reader("yt8m-frame", paths=[str(path)]))
    reader = zoo.build_reader("yt8m-frame", paths=[str(path)], skip_corrupt=True)
    assert [r["id"] for r in reader] == ["a", "c"]
    assert len(reader.skipped) == 1 and "skipped 1 damaged" in reader.skipped_report()
    # unchecked, the flipped byte is read as data: the reader still decodes three videos
    assert len(list(zoo.build_reader("yt8m-frame", paths=[str(path)], verify_crc=False))) == 3


def test_video_level_data_in_the_frame_reader_says_what_to_do(tmp_path):
    payload = encode_example(
        {
            "id": b"v",
            "labels": [1],
            "mean_rgb": np.zeros(1024, np.float32),
            "mean_audio": np.zeros(128, np.float32),
        }
    )
    path = write(tmp_path / "video.tfrecord", [payload])
    with pytest.raises(zoo.DataError, match="yt8m-video"):
        list(zoo.build_reader("yt8m-frame", paths=[path]))
    (got,) = list(zoo.build_reader("yt8m-video", paths=[path]))
    assert got["id"] == "v" and got["mean_rgb"].shape == (1024,) and got["mean_audio"].dtype == np.float32


def test_video_reader_feeds_batches_as_one_frame_videos(tmp_path):
    from zoo.data import batches

    rng = np.random.default_rng(0)
    payloads = [
        encode_example(
            {
                "id": f"v{i}".encode(),
                "labels": [i],
                "mean_rgb": rng.random(1024, np.float32),
                "mean_audio": rng.random(128, np.float32),
            }
        )
        for i in range(3)
    ]
    path = write(tmp_path / "video.tfrecord", payloads)
    spec = DatasetSpec(num_classes=5, features=YT8M_FEATURES)
    reader = zoo.build_reader("yt8m-video", paths=[path], spec=spec)
    (batch,) = list(batches(reader, spec=spec, batch_size=3))
    assert batch["rgb"].shape == (3, 1, 1024) and batch["num_frames"].tolist() == [1, 1, 1]
    np.testing.assert_array_equal(batch["rgb"][2, 0], next(iter(list(reader)[2:]))["mean_rgb"])


# --- PaddleVideo pickles ------------------------------------------------------------------------------


def _pickle_videos(n=3, frames=310):
    rng = np.random.default_rng(4)
    return [
        {
            "video": f"p{i}".encode(),
            "feature": rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
            "audio": rng.integers(0, 256, (frames, 128), dtype=np.uint8),
            "label": [i, 7],
            "nframes": np.int32(min(frames, 300)),
        }
        for i in range(n)
    ]


def test_pickle_reader_reads_tf2pkl_output(tmp_path):
    videos = _pickle_videos()
    path = tmp_path / "train0000.pkl"
    path.write_bytes(pickle.dumps(videos, protocol=2))  # what tf2pkl.py writes
    got = list(zoo.build_reader("paddlevideo-pkl", paths=[str(tmp_path)]))
    assert [g["id"] for g in got] == ["p0", "p1", "p2"] and got[1]["labels"] == [1, 7]
    assert got[0]["num_frames"] == 300
    np.testing.assert_array_equal(got[2]["rgb"], dequantize(videos[2]["feature"][:300]))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_crafted_pickle_is_refused_without_running_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([{"video": b"x", "feature": _Evil()}], protocol=2))
    with pytest.raises(zoo.DataError, match=r"refused .*posix\.system|refused .*os\.system"):
        list(zoo.build_reader("paddlevideo-pkl", paths=[str(path)]))
    assert not (tmp_path / "pwned").exists()
    # builtins too: eval/exec/getattr are never admitted
    buf = io.BytesIO()
    buf.write(b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R.")
    path.write_bytes(buf.getvalue())
    with pytest.raises(zoo.DataError, match="builtins.eval"):
        list(zoo.build_reader("paddlevideo-pkl", paths=[str(path)]))


def test_pickle_with_wrong_shapes_is_reported(tmp_path):
    videos = _pickle_videos(2, 5)
    videos[1]["feature"] = videos[1]["feature"][:, :100]
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(videos, protocol=2))
    with pytest.raises(zoo.DataError, match=r"x\.pkl: record 1: .*shape \(5, 100\)"):
        list(zoo.build_reader("paddlevideo-pkl", paths=[str(path)]))
    reader = zoo.build_reader("paddlevideo-pkl", paths=[str(path)], skip_corrupt=True)
    assert [r["id"] for r in reader] == ["p0"] and len(reader.skipped) == 1
    path.write_bytes(pickle.dumps(videos, protocol=2)[:100])
    with pytest.raises(zoo.DataError, match="truncated|not a readable"):
        list(zoo.build_reader("paddlevideo-pkl", paths=[str(path)]))


def _owned_bytes(array: np.ndarray) -> int:
    """Bytes kept alive by ``array``: the size of the buffer at the root of its view chain."""
    root = array
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    return len(root) if isinstance(root, (bytes, bytearray, memoryview)) else root.nbytes


def test_a_long_video_keeps_only_max_frames_from_decoding_on(tmp_path):
    """A 5000-frame video waiting in the shuffle buffer holds max_frames frames, not the whole record."""
    payload, rgb, _ = video("long", [1], 5000, 3)
    path = write(tmp_path / "long.tfrecord", [payload, video("short", [2], 20, 4)[0]])
    reader = zoo.build_reader("yt8m-frame", preset="yt8m", paths=[path])
    long, short = list(reader.read_part(path, 0, 1))  # the quantized records the data pipeline buffers
    assert long["rgb"].shape == (300, 1024) and long["num_frames"] == 300
    np.testing.assert_array_equal(long["rgb"], rgb[:300])
    for name in ("rgb", "audio"):
        assert _owned_bytes(long[name]) == long[name].nbytes  # bounded by max_frames
    assert short["rgb"].shape == (20, 1024)
