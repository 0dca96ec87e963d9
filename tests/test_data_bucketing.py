"""Length-bucketed batches: less padding, and everything else as without buckets (every video once per
epoch across ranks and workers, seeded, exact resume)."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest
from zoo_yt8m_data.synth import SynthSpec, generate

import zoo
from zoo import DatasetSpec
from zoo.config import bundled_config, load_config
from zoo.data import batches, plan_epoch
from zoo.data.pipeline import _part_records, _stable_seed, padding_fraction

YT8M_FEATURES = {"rgb": 1024, "audio": 128}

SPEC = DatasetSpec(num_classes=20, features=YT8M_FEATURES)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """8 train files (240 videos of 1-60 frames), 20 classes."""
    root = tmp_path_factory.mktemp("bucket")
    generate(
        root,
        SynthSpec(
            train_videos=240,
            valid_videos=0,
            test_videos=0,
            classes=20,
            min_frames=1,
            max_frames=60,
            train_shards=8,
            seed=3,
        ),
    )
    return root


def _reader(data, files=8):
    paths = sorted(str(p) for p in (data / "train").iterdir())[:files]
    return zoo.build_reader("yt8m-frame", paths=paths, spec=SPEC)


def _run(reader, **kw):
    options = dict(spec=SPEC, batch_size=8, shuffle=True, seed=4, shuffle_buffer=44, bucket_by_length=True)
    options.update(kw)
    return list(batches(reader, **options))


def _ids(got):
    return [b["ids"] for b in got]


@pytest.mark.integration
@pytest.mark.parametrize("files", [8, 1])
def test_every_video_once_per_epoch_across_ranks_and_workers(data, files):
    reader = _reader(data, files)
    records = {r["id"]: r for r in reader}
    for world_size, workers in [(1, 0), (2, 0), (2, 2)]:
        seen = collections.Counter()
        for rank in range(world_size):
            got = _run(reader, rank=rank, world_size=world_size, num_workers=workers)
            plain = _run(
                reader, rank=rank, world_size=world_size, num_workers=workers, bucket_by_length=False
            )
            assert len(got) == len(plain)  # the same batch count: what the resume arithmetic relies on
            for b in got:
                seen.update(b["ids"])
                for i, vid in enumerate(b["ids"]):  # the frames follow their video into its bucket
                    n = records[vid]["num_frames"]
                    assert b["num_frames"][i] == n
                    np.testing.assert_array_equal(b["rgb"][i, :n], records[vid]["rgb"])
        assert seen == collections.Counter(records.keys()), (world_size, workers)


def test_seeded_reproducible_and_batch_order_shuffled(data):
    reader = _reader(data)
    first = _run(reader)
    assert _ids(first) == _ids(_run(reader))
    assert _ids(first) != _ids(_run(reader, epoch=1))
    assert _ids(first) != _ids(_run(reader, seed=5))
    longest = [int(b["num_frames"].max()) for b in first]
    window = 44 // 8  # whole batches that fit the buffer
    # within each window of 5 batches the lengths are bucketed, but the batches are not emitted in length order
    assert any(longest[i : i + window] != sorted(longest[i : i + window]) for i in range(0, 30, window))
    assert longest != sorted(longest)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_gives_the_rest_of_the_uninterrupted_epoch(data, workers):
    reader = _reader(data)
    whole = _ids(_run(reader, num_workers=workers))
    for skip in (1, 7, len(whole) - 1):
        assert _ids(_run(reader, num_workers=workers, skip_batches=skip)) == whole[skip:]
    assert _run(reader, num_workers=workers, skip_batches=len(whole) + 3) == []


def test_drop_last_drops_the_same_videos_as_without_buckets(data):
    reader = _reader(data, files=1)  # 30 videos: 3 full batches of 8, 6 dropped
    kept = {v for b in _run(reader, drop_last=True) for v in b["ids"]}
    plain = {v for b in _run(reader, drop_last=True, bucket_by_length=False) for v in b["ids"]}
    assert kept == plain and len(kept) == 24
    assert all(len(b["ids"]) == 8 for b in _run(reader, drop_last=True))


def test_padding_is_lower_than_without_buckets(data):
    reader = _reader(data)

    def padding(got):
        slots = sum(b["mask"].size for b in got)
        return 1.0 - sum(float(b["mask"].sum()) for b in got) / slots

    bucketed, plain = padding(_run(reader)), padding(_run(reader, bucket_by_length=False))
    assert bucketed < 0.5 * plain, (bucketed, plain)
    lengths = [int(n) for b in _run(reader) for n in b["num_frames"]]
    assert padding_fraction(lengths, [len(b["ids"]) for b in _run(reader)]) == pytest.approx(bucketed)


def test_off_gives_the_batches_of_the_plain_shuffle_buffer(data):
    """Without buckets a part's batches are its shuffle buffer's output cut in order (as before buckets)."""
    reader = _reader(data)
    plan = plan_epoch(reader.sources(), parts=1, shuffle=True, seed=4, epoch=0)
    rng = random.Random(_stable_seed(4, 0, "buffer", 0))
    order = [r["id"] for r in _part_records(reader, plan.part_tasks(0), 44, rng)]
    expected = [order[i : i + 8] for i in range(0, len(order), 8)]
    off = _run(reader, bucket_by_length=False)
    assert _ids(off) == expected
    default = list(batches(reader, spec=SPEC, batch_size=8, shuffle=True, seed=4, shuffle_buffer=44))
    assert _ids(default) == expected  # the pipeline's own default stays off
    for a, b in zip(off, default):
        np.testing.assert_array_equal(a["rgb"], b["rgb"])
        np.testing.assert_array_equal(a["mask"], b["mask"])


def test_config_buckets_training_only(data):
    from zoo.engine.feed import batches_for

    reader = _reader(data)
    cfg = load_config(
        bundled_config("nextvlad"),
        ["dataset.num_classes=20", "data.num_workers=0", "data.shuffle_buffer=44", "train.seed=4"],
    )
    assert cfg.data.bucket_by_length is True
    assert _ids(batches_for(reader, cfg, batch_size=8, shuffle=True)) == _ids(_run(reader))
    unshuffled = batches(reader, spec=SPEC, batch_size=8)
    assert _ids(batches_for(reader, cfg, batch_size=8, shuffle=False)) == _ids(unshuffled)
    cfg = load_config(bundled_config("nextvlad"), ["dataset.num_classes=20", "data.bucket_by_length=false"])
    assert batches_for(reader, cfg, batch_size=8, shuffle=True).bucket_by_length is False
