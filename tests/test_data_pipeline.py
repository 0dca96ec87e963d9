"""The batch pipeline: the batch contract, sharding over ranks and workers, determinism, resume."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
from kernel_helpers import kernel_missing, require_kernel
from zoo_yt8m_data.synth import SynthSpec, generate

import zoo
from zoo import DatasetSpec
from zoo.data import batches, collate, count_records, plan_epoch
from zoo.data.pipeline import round_robin

YT8M_FEATURES = {"rgb": 1024, "audio": 128}

SPEC = DatasetSpec(num_classes=20, features=YT8M_FEATURES)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """8 train files (180 videos of 1-40 frames), 2 validate files (40 videos), 20 classes."""
    root = tmp_path_factory.mktemp("pipe")
    generate(
        root,
        SynthSpec(
            train_videos=180,
            valid_videos=40,
            test_videos=0,
            classes=20,
            min_frames=1,
            max_frames=40,
            train_shards=8,
            valid_shards=2,
            seed=7,
        ),
    )
    return root


def _reader(small, split="train", **kw):
    return zoo.build_reader("yt8m-frame", paths=[str(small / split)], spec=SPEC, **kw)


def test_batch_contract(small):
    reader = _reader(small)
    records = {r["id"]: r for r in reader}
    got = list(batches(reader, spec=SPEC, batch_size=16))
    assert sum(len(b["ids"]) for b in got) == 180
    for b in got:
        n = len(b["ids"])
        t = b["rgb"].shape[1]
        assert b["rgb"].shape == (n, t, 1024) and b["audio"].shape == (n, t, 128)
        assert b["rgb"].dtype == b["audio"].dtype == b["mask"].dtype == b["labels"].dtype == np.float32
        assert b["num_frames"].dtype == np.int64 and t == max(1, b["num_frames"].max())
        assert b["labels"].shape == (n, 20)
        np.testing.assert_array_equal(b["mask"].sum(1), b["num_frames"])
        for i, vid in enumerate(b["ids"]):
            rec = records[vid]
            k = rec["num_frames"]
            np.testing.assert_array_equal(b["rgb"][i, :k], rec["rgb"])
            np.testing.assert_array_equal(b["audio"][i, :k], rec["audio"])
            assert not b["rgb"][i, k:].any() and not b["mask"][i, k:].any()
            assert sorted(np.flatnonzero(b["labels"][i])) == sorted(rec["labels"])
    assert (
        list(batches(reader, spec=SPEC, batch_size=16))[0]["ids"] == [r for r in records][:16]
    )  # file order


def test_max_frames_truncates(small):
    spec = DatasetSpec(num_classes=20, max_frames=5, features=YT8M_FEATURES)
    reader = zoo.build_reader("yt8m-frame", paths=[str(small / "train")], spec=spec)
    b = next(iter(batches(reader, spec=spec, batch_size=64)))
    assert b["rgb"].shape[1] == 5 and b["num_frames"].max() == 5


@pytest.mark.integration
@pytest.mark.parametrize("files", [8, 1])
def test_every_record_once_across_two_ranks_and_two_workers(small, files):
    """2 simulated ranks x 2 DataLoader workers; by file (8 files) and by record (1 file)."""
    paths = sorted(str(p) for p in (small / "train").iterdir())[:files]
    reader = zoo.build_reader("yt8m-frame", paths=paths, spec=SPEC)
    records = {r["id"]: r for r in reader}
    expected = collections.Counter(records.keys())
    seen = collections.Counter()
    per_rank = []
    for rank in range(2):
        ids = []
        for b in batches(
            reader,
            spec=SPEC,
            batch_size=8,
            shuffle=True,
            seed=1,
            epoch=0,
            rank=rank,
            world_size=2,
            num_workers=2,
            shuffle_buffer=16,
        ):
            ids.extend(b["ids"])
            for i, vid in enumerate(b["ids"]):  # the values survive the worker transfer intact
                n = records[vid]["num_frames"]
                np.testing.assert_array_equal(b["rgb"][i, :n], records[vid]["rgb"])
                np.testing.assert_array_equal(b["audio"][i, :n], records[vid]["audio"])
        per_rank.append(set(ids))
        seen.update(ids)
    assert seen == expected
    assert not per_rank[0] & per_rank[1]
    assert plan_epoch(paths, parts=4, shuffle=True, seed=1, epoch=0).by_file == (files == 8)


@pytest.mark.integration
def test_shuffle_is_seeded_per_epoch_and_resume_continues_exactly(small):
    reader = _reader(small)

    def run(workers, epoch=0, skip=0):
        return [
            b["ids"]
            for b in batches(
                reader,
                spec=SPEC,
                batch_size=12,
                shuffle=True,
                seed=5,
                epoch=epoch,
                num_workers=workers,
                shuffle_buffer=32,
                skip_batches=skip,
            )
        ]

    plain = run(0)
    assert plain == run(0)
    assert plain != run(0, epoch=1)
    assert sorted(v for b in plain for v in b) == sorted(r["id"] for r in reader)
    assert run(0, skip=4) == plain[4:]
    with_workers = run(2)
    assert sorted(v for b in with_workers for v in b) == sorted(v for b in plain for v in b)
    assert run(2, skip=5) == with_workers[5:]
    assert run(2, skip=len(with_workers) + 2) == []


def test_round_robin_simulation():
    assert round_robin([3, 1], 3) == ([2, 1], 1)
    assert round_robin([1, 3], 4) == ([1, 3], 0)
    assert round_robin([2, 2], 10) == ([2, 2], 0)


def test_count_records(small):
    assert count_records(_reader(small)) == 180


@pytest.mark.integration
def test_worker_error_keeps_its_type_and_message(small, tmp_path):
    bad = tmp_path / "bad.tfrecord"
    data = (small / "validate" / "validate0000.tfrecord").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    reader = zoo.build_reader(
        "yt8m-frame", paths=[str(bad), str(small / "validate" / "validate0001.tfrecord")], spec=SPEC
    )
    with pytest.raises(zoo.DataError, match=r"bad\.tfrecord: record \d+ .*truncated"):
        list(batches(reader, spec=SPEC, batch_size=4, num_workers=2))


@pytest.mark.integration
def test_skip_corrupt_counts_records_skipped_in_workers(small, tmp_path, capsys):
    bad = tmp_path / "bad.tfrecord"
    data = (small / "validate" / "validate0000.tfrecord").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    reader = zoo.build_reader(
        "yt8m-frame",
        paths=[str(bad), str(small / "validate" / "validate0001.tfrecord")],
        spec=SPEC,
        skip_corrupt=True,
    )
    ids = [v for b in batches(reader, spec=SPEC, batch_size=4, num_workers=2) for v in b["ids"]]
    assert 20 <= len(ids) < 40
    assert len(reader.skipped) == 1 and reader.skipped[0].path == str(bad)
    assert "skipped 1 damaged record" in capsys.readouterr().err


def test_collate_rejects_bad_records():
    good = {
        "id": "a",
        "labels": [1],
        "rgb": np.zeros((2, 1024), np.float32),
        "audio": np.zeros((2, 128), np.float32),
        "num_frames": 2,
    }
    with pytest.raises(zoo.DataError, match="label 20 is outside"):
        collate([dict(good, labels=[20])], SPEC)
    with pytest.raises(zoo.DataError, match=r"feature 'rgb' has shape \(2, 512\)"):
        collate([dict(good, rgb=np.zeros((2, 512), np.float32))], SPEC)
    empty = collate([dict(good, num_frames=0, rgb=np.zeros((0, 1024)), audio=np.zeros((0, 128)))], SPEC)
    assert empty["rgb"].shape == (1, 1, 1024) and empty["mask"].sum() == 0


def test_recycled_batch_memory_never_overwrites_a_batch_still_held(small):
    reader = _reader(small)
    kept, copies = [], []
    for k, b in enumerate(batches(reader, spec=SPEC, batch_size=8)):
        if k % 3 == 0:  # keep some batches, drop the others (their memory may be reused)
            kept.append(b)
            copies.append({name: b[name].copy() for name in ("rgb", "audio")})
    assert len(kept) >= 6
    for b, c in zip(kept, copies):
        np.testing.assert_array_equal(b["rgb"], c["rgb"])
        np.testing.assert_array_equal(b["audio"], c["audio"])


@pytest.fixture(scope="module")
def small_packed(small, tmp_path_factory):
    from zoo_yt8m_data.packing import pack

    out = tmp_path_factory.mktemp("pipe-packed") / "train"
    pack(sorted(str(p) for p in (small / "train").iterdir()), out, jobs=1, progress=False)
    return out


@pytest.mark.parametrize("source", ["tfrecord", "packed"])
def test_threads_change_nothing_but_speed(small, small_packed, source):
    path = str(small / "train") if source == "tfrecord" else str(small_packed)
    reader = zoo.build_reader("yt8m-frame", paths=[path], spec=SPEC)

    def run(threads, **kw):
        return list(
            batches(
                reader,
                spec=SPEC,
                batch_size=12,
                shuffle=True,
                seed=3,
                shuffle_buffer=32,
                threads=threads,
                **kw,
            )
        )

    plain = run(0)
    assert sum(len(b["ids"]) for b in plain) == 180
    for threads in (1, 3):
        got = run(threads)
        assert [b["ids"] for b in got] == [b["ids"] for b in plain]
        for b, p in zip(got, plain):
            for key in ("rgb", "audio", "mask", "num_frames", "labels"):
                assert b[key].dtype == p[key].dtype
                np.testing.assert_array_equal(b[key], p[key])
    assert [b["ids"] for b in run(1, skip_batches=4)] == [b["ids"] for b in plain[4:]]


def test_an_error_while_filling_in_a_thread_is_raised_in_the_reader(small):
    reader = zoo.build_reader("yt8m-frame", paths=[str(small / "train")], spec=SPEC)
    narrow = DatasetSpec(num_classes=20, features={"rgb": 1024, "audio": 64})
    with pytest.raises(zoo.DataError, match=r"feature 'audio' has shape \(\d+, 128\)"):
        list(batches(reader, spec=narrow, batch_size=8, threads=2))


@pytest.mark.parametrize("source", ["tfrecord", "packed"])
def test_quantized_batches_hold_the_same_values_as_uint8(small, small_packed, source):
    from zoo_yt8m_data.readers import dequantize

    from zoo.data.pipeline import dequantize_batch

    path = str(small / "train") if source == "tfrecord" else str(small_packed)
    reader = zoo.build_reader("yt8m-frame", paths=[path], spec=SPEC)
    floats = list(batches(reader, spec=SPEC, batch_size=16))
    quantized = list(batches(reader, spec=SPEC, batch_size=16, quantized=True))
    assert len(floats) == len(quantized)
    for f, q in zip(floats, quantized):
        assert q["rgb"].dtype == q["audio"].dtype == np.uint8 and q["ids"] == f["ids"]
        np.testing.assert_array_equal(q["dequantize"], dequantize(np.arange(256, dtype=np.uint8)))
        padding = ~q["mask"].astype(bool)
        assert not q["rgb"][padding].any()
        back = dequantize_batch(q, SPEC.features)
        assert "dequantize" not in back
        for name in ("rgb", "audio"):
            assert back[name].dtype == np.float32
            # bit for bit, +0.0 padding included
            np.testing.assert_array_equal(back[name].view(np.uint32), f[name].view(np.uint32))
        np.testing.assert_array_equal(q["labels"], f["labels"])
    assert dequantize_batch(floats[0], SPEC.features) is floats[0]


@pytest.mark.integration
def test_quantized_batches_survive_dataloader_workers(small):
    reader = _reader(small)
    ids = []
    for b in batches(reader, spec=SPEC, batch_size=8, num_workers=2, quantized=True):
        assert b["rgb"].dtype == np.uint8 and b["dequantize"].shape == (256,)
        ids.extend(b["ids"])
    assert sorted(ids) == sorted(r["id"] for r in reader)


def test_device_dequantization_equals_the_host_values(small, paddle):
    from zoo.engine.feed import to_tensors

    reader = _reader(small)
    f = next(iter(batches(reader, spec=SPEC, batch_size=16)))
    q = next(iter(batches(reader, spec=SPEC, batch_size=16, quantized=True)))
    on_host, on_device = to_tensors(f, SPEC.features), to_tensors(q, SPEC.features)
    for name in ("rgb", "audio", "mask", "num_frames"):
        a, b = on_host[name].numpy(), on_device[name].numpy()
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))  # bit for bit, no -0.0
    del q["dequantize"]
    with pytest.raises(zoo.DataError, match="no 'dequantize' table"):
        to_tensors(q, SPEC.features)


def test_the_c_kernel_is_built_where_a_compiler_is():
    import shutil

    from zoo.data import pipeline

    if os.environ.get("ZOO_FAST_FILL") == "0":
        pytest.skip("ZOO_FAST_FILL=0")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        kernel_missing("no C compiler: the pipeline runs on numpy")
    assert pipeline.FAST_FILL is not None, "pip install should have built zoo/data/_fastfill.c"
    from zoo_yt8m_data.readers import dequantize_into

    assert pipeline.Quantization(dequantize_into).affine  # YouTube-8M's form takes the vectorized path


@pytest.mark.parametrize("source", ["tfrecord", "packed"])
@pytest.mark.parametrize("quantized", [False, True])
def test_c_kernel_and_numpy_fill_the_same_bits(small, small_packed, source, quantized, monkeypatch):
    from zoo.data import pipeline

    require_kernel(pipeline.FAST_FILL, "zoo.data._fastfill (the C kernel) is not built")
    path = str(small / "train") if source == "tfrecord" else str(small_packed)
    reader = zoo.build_reader("yt8m-frame", paths=[path], spec=SPEC)
    fast = list(batches(reader, spec=SPEC, batch_size=16, quantized=quantized, threads=2))
    monkeypatch.setattr(pipeline, "FAST_FILL", None)
    slow = list(batches(reader, spec=SPEC, batch_size=16, quantized=quantized, threads=0))
    assert [b["ids"] for b in fast] == [b["ids"] for b in slow]
    for f, s in zip(fast, slow):
        for name in ("rgb", "audio"):
            assert f[name].dtype == s[name].dtype == (np.uint8 if quantized else np.float32)
            np.testing.assert_array_equal(f[name].view(np.uint8), s[name].view(np.uint8))


def _lut_dequantize(values, out):
    """A reader's own, non-affine quantization (a square law)."""
    np.take((np.arange(256, dtype=np.float32) / 255) ** 2, values, out=out)


def test_any_dequantization_is_reproduced_and_a_wrong_affine_claim_is_not_trusted():
    from zoo.data import pipeline

    rng = np.random.default_rng(0)
    records = [
        {
            "id": str(i),
            "labels": [1],
            "rgb": rng.integers(0, 256, (n, 1024), dtype=np.uint8),
            "audio": rng.integers(0, 256, (n, 128), dtype=np.uint8),
            "num_frames": n,
        }
        for i, n in enumerate([3, 7, 1])
    ]

    def lying(values, out):
        _lut_dequantize(values, out)

    lying.affine = (1 / 255, 0.0)  # not what it computes
    for fn in (_lut_dequantize, lying):
        batch = collate(records, SPEC, fn)
        for i, r in enumerate(records):
            expected = np.empty(r["rgb"].shape, np.float32)
            fn(r["rgb"], expected)
            np.testing.assert_array_equal(batch["rgb"][i, : r["num_frames"]], expected)
            assert not batch["rgb"][i, r["num_frames"] :].any()
        assert not pipeline.Quantization(fn).affine
