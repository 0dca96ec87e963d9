"""The built-in sample data: deterministic, YouTube-8M-like statistics, learnable, made once and reused."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from zoo_yt8m_data.synth import SynthSpec, generate

import zoo
from zoo import DatasetSpec
from zoo.cli import main

YT8M_FEATURES = {"rgb": 1024, "audio": 128}


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthSpec(train_videos=1200, valid_videos=300, test_videos=0, classes=40, seed=11))
    return root


def _read(root, split, classes=40):
    reader = zoo.build_reader(
        "yt8m-frame", paths=[str(root / split)], spec=DatasetSpec(num_classes=classes, features=YT8M_FEATURES)
    )
    return list(reader)


def test_same_arguments_same_bytes_other_seed_other_bytes(tmp_path):
    spec = SynthSpec(
        train_videos=30,
        valid_videos=10,
        test_videos=10,
        classes=12,
        train_shards=2,
        valid_shards=1,
        test_shards=1,
    )
    a = generate(tmp_path / "a", spec)
    b = generate(tmp_path / "b", spec)
    c = generate(tmp_path / "c", SynthSpec(**{**spec.__dict__, "seed": 1}))
    assert a["files"] == b["files"]
    assert {k: v["md5"] for k, v in a["files"].items()} != {k: v["md5"] for k, v in c["files"].items()}
    assert sorted(a["files"]) == [
        "test/test0000.tfrecord",
        "train/train0000.tfrecord",
        "train/train0001.tfrecord",
        "validate/validate0000.tfrecord",
    ]


def test_statistics_look_like_youtube8m(medium):
    videos = _read(medium, "train")
    assert len(videos) == 1200 and len({v["id"] for v in videos}) == 1200
    per_video = [len(v["labels"]) for v in videos]
    assert 2.5 <= np.mean(per_video) <= 3.5 and min(per_video) >= 1
    counts = np.bincount([c for v in videos for c in v["labels"]], minlength=40)
    ranked = np.sort(counts)[::-1]
    assert ranked[0] > 5 * np.median(ranked) and ranked[0] > 10 * ranked[-1]  # a long tail
    lengths = [v["num_frames"] for v in videos]
    assert min(lengths) == 10 and max(lengths) == 60 and len(set(lengths)) > 40
    v = videos[0]
    assert v["rgb"].std() > 0.3 and v["audio"].std() > 0.3  # both modalities carry data


def test_labels_are_learnable_from_the_frames(medium):
    """A ridge classifier on mean-pooled frames beats always answering the most frequent class by far."""
    train, valid = _read(medium, "train"), _read(medium, "validate")

    def xy(videos):
        x = np.stack([np.concatenate([v["rgb"].mean(0), v["audio"].mean(0)]) for v in videos])
        y = np.zeros((len(videos), 40), np.float32)
        for i, v in enumerate(videos):
            y[i, v["labels"]] = 1
        return x, y

    (xt, yt), (xv, yv) = xy(train), xy(valid)
    mu = xt.mean(0)
    w = np.linalg.solve((xt - mu).T @ (xt - mu) + 30.0 * np.eye(xt.shape[1]), (xt - mu).T @ yt)
    hit1 = yv[np.arange(len(yv)), ((xv - mu) @ w).argmax(1)].mean()
    prior = yv[:, yt.sum(0).argmax()].mean()
    assert hit1 > prior + 0.2, (hit1, prior)


def test_sample_data_is_made_once_and_reused():
    """What `zoo run` calls: the default dataset under the cache directory."""
    from zoo.paths import cache_dir

    cls = zoo.plugin_class("reader", "yt8m-frame")
    root = cache_dir("sample-v1")
    first = cls.sample_data(root)
    assert first["num_classes"] == 200
    counts = {}
    for split in ("train", "valid", "test"):
        assert first[split] and all(p.endswith(".tfrecord") for p in first[split])
        counts[split] = zoo.data.count_records(
            zoo.build_reader("yt8m-frame", paths=first[split], num_classes=200)
        )
    assert counts == {"train": 4000, "valid": 1000, "test": 1000}
    with open(first["vocabulary"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200 and {"Index", "TrainVideoCount", "KnowledgeGraphId", "Name", "Vertical1"} <= set(
        rows[0]
    )
    assert int(rows[0]["TrainVideoCount"]) > int(rows[-1]["TrainVideoCount"])
    manifest = root / "yt8m-sample" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert cls.sample_data(root) == first and manifest.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert json.loads(manifest.read_text())["spec"]["classes"] == 200


def test_zoo_data_synth_command(tmp_path, capsys):
    out = tmp_path / "mini"
    code = main(
        [
            "data",
            "synth",
            "--output",
            str(out),
            "--train-videos",
            "20",
            "--valid-videos",
            "5",
            "--test-videos",
            "0",
            "--classes",
            "7",
            "--train-shards",
            "2",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    assert "train: 20 videos in 2 files" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == ["train0000.tfrecord", "train0001.tfrecord"]
    assert main(["data", "synth", "--output", str(out), "--classes", "1"]) == 2
    assert "--classes must be at least 2" in capsys.readouterr().err


def test_sizes_that_cannot_fit_are_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "big"
    argv = ["data", "synth", "--output", str(out)]
    assert main([*argv, "--train-videos", str(10**12)]) == 2
    err = capsys.readouterr().err
    assert "GB on disk" in err and "nothing was written" in err
    assert main([*argv, "--train-videos", "10", "--classes", str(10**9)]) == 2
    assert "of memory" in capsys.readouterr().err
    assert main([*argv, "--segments", "--valid-videos", str(10**12)]) == 2
    assert not out.exists()
