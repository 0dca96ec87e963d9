"""Inputs that used to reach a raw Python traceback: each now ends in one message naming the file and what
to do, with exit code 1 or 2."""

from __future__ import annotations

import numpy as np
import pytest
from zoo_yt8m_data.synth import SynthSpec, generate

from zoo.cli import main
from zoo.dirlock import DirectoryLock
from zoo.errors import DataError, ZooError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthSpec(train_videos=12, valid_videos=2, test_videos=2, classes=5, train_shards=2))
    return root


def _no_traceback(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", [["predict"], ["eval"], ["ensemble", "a.csv", "b.csv"]])
def test_an_output_naming_an_existing_file_is_a_usage_error(tmp_path, capsys, command):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert main([*command, "--output", str(taken / "sub")]) == 2
    assert f"{taken} is a file, not a folder" in _no_traceback(capsys)
    assert taken.read_text() == "mine"


def test_a_lock_that_is_a_folder_is_named(tmp_path, synth, capsys):
    (tmp_path / "run" / "run.lock").mkdir(parents=True)
    with pytest.raises(ZooError, match=r"run.lock is a folder, not the lock file of the run directory"):
        DirectoryLock(tmp_path / "run" / "run.lock").acquire()
    out = tmp_path / "packed"
    (out / ".pack.lock").mkdir(parents=True)
    assert main(["data", "pack", str(synth / "train"), "-o", str(out)]) == 1
    assert ".pack.lock is a folder, not the lock file of the pack output" in _no_traceback(capsys)
    blocked = tmp_path / "file"
    blocked.write_text("x")
    assert main(["data", "pack", str(synth / "train"), "-o", str(blocked)]) != 0
    assert "file" in _no_traceback(capsys)


def test_a_segment_start_beyond_any_video_is_named(tmp_path):
    from zoo_yt8m_metrics.segment_submission import iter_segment_submission

    path = tmp_path / "sub.csv"
    path.write_text("Class,Segments\n3,vid:" + "1" + "0" * 23 + "\n")
    with pytest.raises(DataError, match=rf"line 2: entry .*segment start {10**23} is beyond"):
        list(iter_segment_submission(path))


def test_a_packed_shard_with_a_corrupted_offsets_file_is_named(tmp_path, synth, capsys):
    from zoo_yt8m_data.packed import open_shard

    out = tmp_path / "packed"
    assert main(["data", "pack", str(synth / "train"), "-o", str(out), "-j", "1"]) == 0
    capsys.readouterr()
    shard = sorted(p for p in out.iterdir() if p.is_dir())[0]
    offsets = shard / "offsets.npy"
    original = np.load(offsets)
    damaged = original.copy()
    damaged[1], damaged[2] = damaged[2], damaged[1]  # same size, same last value: the order is broken
    np.save(offsets, damaged)
    features = {"rgb": 1024, "audio": 128}
    with pytest.raises(DataError, match="index arrays .* are damaged"):
        open_shard(str(shard), features)
    raw = bytearray(offsets.read_bytes())
    raw[10:20] = b"\xff" * 10  # a damaged header
    offsets.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="offsets.npy"):
        open_shard(str(shard), features)
    assert main(["data", "inspect", str(out)]) == 1
    assert "offsets.npy" in _no_traceback(capsys)


def test_pack_with_two_workers_names_the_damaged_record_as_one_worker_does(tmp_path, synth, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth / "train", data)
    first = sorted(data.iterdir())[0]
    raw = bytearray(first.read_bytes())
    raw[5000] ^= 0xFF
    first.write_bytes(bytes(raw))
    messages = []
    for jobs in ("1", "2"):
        assert main(["data", "pack", str(data), "-o", str(tmp_path / f"out{jobs}"), "-j", jobs]) == 1
        messages.append(_no_traceback(capsys).strip().splitlines()[-1])
    assert "BrokenProcessPool" not in messages[1]
    assert "payload checksum mismatch" in messages[1] and "--skip-corrupt" in messages[1]
    assert messages[0].split("error: ", 1)[1] == messages[1].split("error: ", 1)[1]
