"""`zoo data pack` and `zoo data inspect`: packed data reads the same, resumes, verifies; reports are right."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from zoo_yt8m_data.packing import pack
from zoo_yt8m_data.synth import SynthSpec, generate

import zoo
from zoo import DatasetSpec
from zoo.cli import main
from zoo.data import batches, count_records

YT8M_FEATURES = {"rgb": 1024, "audio": 128}

SPEC = DatasetSpec(num_classes=15, features=YT8M_FEATURES)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("packsrc")
    generate(
        root,
        SynthSpec(
            train_videos=90,
            valid_videos=20,
            test_videos=0,
            classes=15,
            min_frames=3,
            max_frames=25,
            train_shards=3,
            valid_shards=1,
            seed=2,
        ),
    )
    return root


def _records(paths, spec=SPEC):
    return list(zoo.build_reader("yt8m-frame", paths=paths, spec=spec))


def test_packed_data_reads_exactly_like_the_tfrecords(synth, tmp_path):
    out = tmp_path / "packed"
    report = pack([str(synth / "train")], out, num_classes=15, jobs=2, progress=False)
    assert sorted(report.packed) == ["train0000", "train0001", "train0002"] and report.records == 90
    original = _records([str(synth / "train")])
    packed = _records([str(out)])
    assert [r["id"] for r in packed] == [r["id"] for r in original]
    for a, b in zip(original, packed):
        assert a["labels"] == b["labels"] and a["num_frames"] == b["num_frames"]
        np.testing.assert_array_equal(a["rgb"], b["rgb"])
        np.testing.assert_array_equal(a["audio"], b["audio"])
    reader = zoo.build_reader("yt8m-frame", paths=[str(out)], spec=SPEC)
    assert count_records(reader) == 90
    short = DatasetSpec(
        num_classes=15, max_frames=4, features=YT8M_FEATURES
    )  # packing keeps every frame; reading truncates
    assert max(r["num_frames"] for r in _records([str(out)], short)) == 4
    # the same batches, from two parts each (workers read packed data by index)
    plain = [
        b["ids"]
        for b in batches(
            zoo.build_reader("yt8m-frame", paths=[str(synth / "train")], spec=SPEC),
            spec=SPEC,
            batch_size=8,
            shuffle=True,
            seed=1,
            world_size=2,
            rank=1,
        )
    ]
    fast = [
        b["ids"] for b in batches(reader, spec=SPEC, batch_size=8, shuffle=True, seed=1, world_size=2, rank=1)
    ]
    assert plain == fast
    # no pickle anywhere: every array loads with allow_pickle=False, the rest is JSON or raw bytes
    index = json.loads((out / "index.json").read_text())
    assert index["records"] == 90 and [s["name"] for s in index["shards"]] == [
        "train0000",
        "train0001",
        "train0002",
    ]
    for name in ("offsets", "labels", "label_offsets", "ids"):
        np.load(out / "train0000" / f"{name}.npy", allow_pickle=False)


def test_pack_resumes_and_repacks_changed_sources(synth, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in (synth / "train").iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "packed"
    pack([str(src)], out, num_classes=15, jobs=1, progress=False)
    again = pack([str(src)], out, num_classes=15, jobs=1, progress=False)
    assert again.packed == [] and sorted(again.reused) == ["train0000", "train0001", "train0002"]
    changed = src / "train0001.tfrecord"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    third = pack([str(src)], out, num_classes=15, jobs=1, progress=False)
    assert third.packed == ["train0001"] and len(third.reused) == 2


def test_pack_stops_on_damage_and_keeps_nothing_half_done(synth, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    data = (synth / "validate" / "validate0000.tfrecord").read_bytes()
    (src / "cut.tfrecord").write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "packed"
    code = main(["data", "pack", str(src), "--output", str(out), "--num-classes", "15", "-j", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "cut.tfrecord: record" in err and "truncated" in err
    assert not (out / "cut").exists() and not (out / "index.json").exists()
    code = main(
        ["data", "pack", str(src), "--output", str(out), "--num-classes", "15", "-j", "1", "--skip-corrupt"]
    )
    assert code == 0
    assert "skipped 1 damaged record(s)" in capsys.readouterr().out
    assert 0 < json.loads((out / "index.json").read_text())["records"] < 20


def test_pack_paddlevideo_pickles(tmp_path):
    rng = np.random.default_rng(0)
    videos = [
        {
            "video": f"k{i}".encode(),
            "feature": rng.integers(0, 256, (6, 1024), dtype=np.uint8),
            "audio": rng.integers(0, 256, (6, 128), dtype=np.uint8),
            "label": [i],
            "nframes": np.int32(6),
        }
        for i in range(4)
    ]
    (tmp_path / "pkl").mkdir()
    (tmp_path / "pkl" / "train0000.pkl").write_bytes(pickle.dumps(videos, protocol=2))
    pack(
        [str(tmp_path / "pkl")],
        tmp_path / "packed",
        reader="paddlevideo-pkl",
        num_classes=15,
        jobs=1,
        progress=False,
    )
    got = _records([str(tmp_path / "packed")])
    assert [g["id"] for g in got] == ["k0", "k1", "k2", "k3"]
    np.testing.assert_array_equal(got[3]["rgb"], zoo_dequantize(videos[3]["feature"]))


def zoo_dequantize(x):
    return x.astype(np.float32) * np.float32(4 / 255) + np.float32(4 / 512 - 2)


def test_damaged_or_missing_shards_are_reported(synth, tmp_path, capsys):
    out = tmp_path / "packed"
    pack([str(synth / "validate")], out, num_classes=15, jobs=1, progress=False)
    rgb = out / "validate0000" / "rgb.u8"
    data = bytearray(rgb.read_bytes())
    data[5] ^= 0xFF
    rgb.write_bytes(bytes(data))
    assert main(["data", "inspect", str(out), "--num-classes", "15", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["files"][0]["checksums"] == "mismatch" and report["damaged_files"] == 1
    rgb.unlink()
    with pytest.raises(zoo.DataError, match="run `zoo data pack` again"):
        _records([str(out)])


def test_inspect_report(synth, tmp_path, capsys):
    assert main(["data", "inspect", str(synth / "train"), "--num-classes", "15", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 90 and report["damaged_files"] == 0 and len(report["files"]) == 3
    assert sum(report["frames"]["histogram"].values()) == 90
    assert all(f["checksums"] == "ok" for f in report["files"])
    labels = report["labels"]
    assert (
        2 <= labels["per_video_mean"] <= 4
        and labels["out_of_range"] == 0
        and labels["distinct_classes"] <= 15
    )
    # a class count below the labels present, and a damaged file: both reported, exit code 1
    bad = tmp_path / "bad.tfrecord"
    data = bytearray((synth / "validate" / "validate0000.tfrecord").read_bytes())
    data[500] ^= 0x01
    bad.write_bytes(bytes(data))
    assert main(["data", "inspect", str(bad), "--num-classes", "3"]) == 1
    text = capsys.readouterr().out
    assert "mismatch" in text and "outside [0, 3)" in text and "record 0: payload checksum mismatch" in text
