"""zoo bench: device-count parsing, the GPU checks, and a real run on 1 and 2 CPU processes (tiny data)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.cli import main
from zoo.engine.bench import parse_counts
from zoo.errors import UsageError

ZOO = str(Path(sys.executable).with_name("zoo"))


def test_a_device_count_means_powers_of_two_up_to_it_and_a_list_means_itself():
    assert parse_counts("4", "--gpus") == [1, 2, 4]
    assert parse_counts("3", "--gpus") == [1, 2, 3]
    assert parse_counts("1", "--gpus") == [1]
    assert parse_counts("2,1", "--cpu-procs") == [1, 2]
    for bad in ("0", "two", ""):
        with pytest.raises(UsageError):
            parse_counts(bad, "--gpus")


def test_gpus_on_a_cpu_only_paddle_fail_at_once(capsys, tmp_path):
    code = main(["bench", "mean-pool", "--gpus", "4", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "--gpus 4" in err and "no CUDA support" in err
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_is_a_usage_error(capsys, tmp_path):
    assert main(["bench", "no-such-model", "--output", str(tmp_path)]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_cpu_processes_1_and_2_write_the_table_csv_json_and_plot(tmp_path):
    from zoo_yt8m_data.synth import SynthSpec, generate

    data = tmp_path / "data"
    generate(
        data,
        SynthSpec(
            train_videos=32,
            valid_videos=16,
            test_videos=8,
            classes=10,
            min_frames=2,
            max_frames=5,
            train_shards=2,
            valid_shards=1,
            test_shards=1,
            seed=2,
        ),
    )
    out = tmp_path / "results"
    args = [
        ZOO,
        "bench",
        "mean-pool",
        "--cpu-procs",
        "1,2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--data",
        str(data),
        "-o",
        "dataset.num_classes=10",
        "-o",
        "data.num_workers=0",
        "-o",
        "train.batch_size=8",
        "-o",
        "eval.batch_size=8",
        "--output",
        str(out),
        "--name",
        "tiny",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train videos/s" in done.stdout and "CPU proc x2" in done.stdout  # the printed table
    md = (out / "tiny.md").read_text()
    assert "zoo bench mean-pool --cpu-procs 1,2 --steps 2 --warmup 1" in md
    assert "| mean-pool | CPU proc x1" in md and "| mean-pool | CPU proc x2" in md
    rows = list(csv.DictReader((out / "tiny.csv").open()))
    assert [int(r["devices"]) for r in rows] == [1, 2]
    report = json.loads((out / "tiny.json").read_text())
    assert report["meta"]["device"] == "cpu"
    first, second = report["rows"]
    assert first["scaling_efficiency"] == 1.0 and second["scaling_efficiency"] > 0
    for row in report["rows"]:
        assert row["error"] == ""
        assert row["steps"] == 3 and row["global_batch"] == 8 and row["eval_videos"] == 16
        assert row["train_videos_per_s"] > 0 and row["infer_videos_per_s"] > 0 and row["peak_memory_mib"] > 0
        assert 0 <= row["gap"] <= 1 and 0 <= row["hit_at_1"] <= 1 and 0 <= row["perr"] <= 1
        assert row["parameters"] == (1024 + 128) * 10 + 10
    assert (out / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
