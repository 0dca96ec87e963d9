"""zoo bench: device-count parsing, the GPU checks, and a real run on 1 and 2 CPU processes (tiny data)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.cli import main
from zoo.engine.bench import BenchRow, parse_counts
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


@pytest.mark.integration
@pytest.mark.timeout(900)
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


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_segment_metric_on_segment_mode_data_is_the_headline(tmp_path):
    """eval.metric: yt8m-segment with data.segments: true (issue 12): the engine's generic evaluation feeds the
    metric the batches' label_mask, and segment_map ranks the row."""
    import numpy as np
    from zoo_yt8m_data.segment_synth import SegmentSynthSpec, generate_segments

    import zoo
    from zoo.config import DatasetSpec

    data = tmp_path / "seg"
    generate_segments(
        data,
        SegmentSynthSpec(
            valid_videos=24,
            test_videos=2,
            classes=10,
            min_frames=10,
            max_frames=20,
            valid_shards=1,
            test_shards=1,
        ),
    )
    spec = DatasetSpec(num_classes=10, features={"rgb": 1024, "audio": 128})
    videos = list(zoo.build_reader("yt8m-segment", paths=[str(data / "validate")], spec=spec))
    pairs = sum(len(v["segment_labels"]) for v in videos)
    segments = sum(len(np.unique(v["segment_start_times"])) for v in videos)
    out = tmp_path / "results"
    args = [ZOO, "bench", "mean-pool", "--steps", "3", "--warmup", "0", "--data", str(data)]
    for override in (
        f"data.train={data / 'validate'}",  # the segment data has no train/: fine-tune on the rated videos
        "data.segments=true",
        "eval.metric=yt8m-segment",
        "dataset.num_classes=10",
        "data.num_workers=0",
        "train.batch_size=8",
        "eval.batch_size=8",
    ):
        args += ["-o", override]
    args += ["--output", str(out), "--name", "seg"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "segment_map" in done.stdout
    (row,) = json.loads((out / "seg.json").read_text())["rows"]
    assert row["error"] == "" and row["headline"] == "segment_map" and row["display"][0] == "segment_map"
    assert 0 < row["segment_map"] <= 1
    assert row["rated_pairs"] == row["rated_pairs_scored"] == pairs  # every rated pair scored, once
    assert row["eval_videos"] == segments  # one example per rated segment
    header = next(line for line in (out / "seg.md").read_text().splitlines() if line.startswith("| model"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[columns.index("infer videos/s") + 1] == "segment_map"  # the first metric column


@pytest.mark.timeout(600)
@pytest.mark.integration
def test_segment_inference_benchmark_runs_small(tmp_path):
    """benchmarks/bench_segments.py: model time, selection time and memory on a tiny set."""
    out = tmp_path / "seg.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_segments.py"
    args = ["--videos", "60", "--segments", "12", "--classes", "50", "--top", "100", "--model-videos", "2"]
    subprocess.run([sys.executable, str(script), *args, "--json", str(out)], check=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["segments"] == 720 and result["model"]["segments"] == 24
    assert result["selection"]["entries"] == 50 * 100
    assert result["model_full_s"] > 0 and result["selection"]["peak_mb"] < 1024


def _gpu_row(model: str, devices: int, train: float, infer: float, **kw) -> BenchRow:
    return BenchRow(
        model=model,
        device="gpu",
        devices=devices,
        global_batch=160,
        train_videos_per_s=train,
        infer_videos_per_s=infer,
        frames=300,
        feature_values=1152,
        reader_processes=4,
        data_format="tfrecord",
        file_bytes_per_video=351_000.0,
        **kw,
    )


def test_measured_gpu_rows_have_the_computed_plans_columns_and_per_gpu_rates():
    from zoo.engine.bench import GPU_PLAN_COLUMNS, gpu_plan_table, measured_gpu_rows

    rows = [
        _gpu_row("nextvlad", 1, 1500.0, 3600.0),
        _gpu_row("nextvlad", 2, 2800.0, 7000.0),
        _gpu_row("nextvlad", 4, float("nan"), float("nan"), error="out of memory"),
    ]
    plan = measured_gpu_rows(rows, "NVIDIA A100-SXM4-80GB")
    assert len(plan) == 2  # the failed configuration is left out
    one, two = plan
    assert one["peak_tflops"] == 19.5 and one["precision"] == "fp32"
    assert (one["train_videos_per_s"], two["train_videos_per_s"]) == (1500, 1400)  # per GPU
    assert two["inference_videos_per_s"] == 3500
    # 300 frames x (1152 + 4) bytes as uint8, x (4 x 1152 + 4) as float32, at 1500 videos/s
    assert one["pcie_gb_s_uint8"] == round(1500 * 300 * 1156 / 1e9, 2)
    assert one["pcie_gb_s_float"] == round(1500 * 300 * 4612 / 1e9, 2)
    assert one["disk_mb_s_tfrecord"] == round(1500 * 351_000 / 1e6)
    assert one["reader_processes_tfrecord_uint8"] == 4 and one["reader_processes_packed_uint8"] is None
    text = gpu_plan_table(plan)
    header, rule, *body = text.splitlines()
    assert header == "| " + " | ".join(GPU_PLAN_COLUMNS) + " |"
    assert len(body) == 2 and all(line.count("|") == len(GPU_PLAN_COLUMNS) + 1 for line in body)
    assert "| 0.52 / 2.08 | 526 | 4 / - |" in body[0]
    # an unknown GPU has no published peak: a dash, not a made-up number
    (other,) = measured_gpu_rows(rows[:1], "Some GPU")
    assert other["peak_tflops"] is None and "| fp32 | - | 1,500 |" in gpu_plan_table([other])


def test_the_docs_computed_gpu_plan_has_the_same_header():
    from zoo.engine.bench import GPU_PLAN_COLUMNS

    docs = (Path(__file__).resolve().parent.parent / "docs" / "bench.md").read_text()
    assert "| " + " | ".join(GPU_PLAN_COLUMNS) + " |" in docs.splitlines()


def test_a_gpu_benchmarks_markdown_holds_the_measured_plan():
    from zoo.engine.bench import markdown

    meta = {
        "date": "now",
        "command": "zoo bench nextvlad --gpus 1",
        "yt8m_zoo": "0",
        "paddle": "3.3",
        "python": "3.11",
        "cpu": "cpu",
        "cpu_cores": 2,
        "gpu": "NVIDIA H100 80GB HBM3",
        "data": "d",
        "training": "t",
        "warmup_steps": 5,
        "seconds": 1.0,
        "device": "gpu",
    }
    text = markdown([_gpu_row("nextvlad", 1, 5000.0, 12000.0, parameters=89_000_000)], meta)
    assert "GPU plan, measured" in text
    assert "| NVIDIA H100 80GB HBM3 (nextvlad, 1 GPU: per GPU) | fp32 | 67 | 5,000 | 12,000 |" in text
    assert "GPU plan" not in markdown([_gpu_row("nextvlad", 1, 1.0, 1.0, error="boom")], meta)


def test_data_facts_count_the_training_files_bytes_per_video(tmp_path):
    from zoo.data.pipeline import count_records
    from zoo.engine.bench import DATA_FACTS_FILES, BenchSettings, data_facts, resolve_config
    from zoo.engine.build import build_reader

    cfg = resolve_config("mean-pool", BenchSettings(models=["mean-pool"]), 1, tmp_path / "run")
    fmt, per_video = data_facts(cfg)
    reader = build_reader(cfg, "train")
    assert len(reader.sources()) <= DATA_FACTS_FILES  # the sample data: every file counted
    size = sum(Path(s).stat().st_size for s in reader.sources())
    assert fmt == "tfrecord"
    assert per_video == pytest.approx(size / count_records(reader))
