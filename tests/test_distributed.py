"""Multi-process training through paddle.distributed.launch on CPU processes (gloo).

Tolerance of "the same loss curve": with a global batch that holds the whole (tiny) training set, every
step sees the same videos whether one process or two compute it, so the curves must agree to float32
rounding: relative 1e-5 per step (the validation loss to 1e-4). Weights agree within 1e-3 after 4 Adam steps of learning rate 0.01 (Adam
divides by the gradient's RMS, so coordinates whose gradient is almost zero amplify rounding differences).
Processes are tiny (a linear model, 32 videos) and nothing here measures time; the timeouts only stop a
hung test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo.cli import main
from zoo.config import bundled_config, load_config
from zoo.engine.build import build_model, build_reader
from zoo.engine.distributed import launch, watch
from zoo.engine.infer.loops import evaluate
from zoo.engine.runs.weights import apply_weights, read_weights
from zoo.engine.train.trainer import Trainer
from zoo.errors import UsageError

ZOO = str(Path(sys.executable).with_name("zoo"))
TIMEOUT = 600  # seconds; generous: two shared cores, other jobs running


def _generate(root: Path, videos: int, shards: int) -> Path:
    from zoo_yt8m_data.synth import SynthSpec, generate

    generate(
        root,
        SynthSpec(
            train_videos=videos,
            valid_videos=16,
            test_videos=8,
            classes=10,
            min_frames=2,
            max_frames=6,
            train_shards=shards,
            valid_shards=1,
            test_shards=1,
            seed=5,
        ),
    )
    return root


@pytest.fixture(scope="module")
def even_data(tmp_path_factory):
    """2 shards of 16 videos: each of 2 ranks reads one whole shard."""
    return _generate(tmp_path_factory.mktemp("even"), 32, 2)


@pytest.fixture(scope="module")
def uneven_data(tmp_path_factory):
    """31 videos in 3 shards: 2 ranks get 16 and 15 videos, so different numbers of batches."""
    return _generate(tmp_path_factory.mktemp("uneven"), 31, 3)


def overrides(data: Path, *extra: str, batch: int = 32, epochs: int = 4) -> list[str]:
    return [
        "dataset.preset=yt8m",
        "dataset.num_classes=10",
        f"data.train={data / 'train'}",
        f"data.valid={data / 'validate'}",
        f"data.test={data / 'test'}",
        "data.num_workers=0",
        "data.shuffle_buffer=1",
        f"train.batch_size={batch}",
        f"train.epoch={epochs}",
        "train.learning_rate=0.01",
        "train.log_interval=1",
        "eval.batch_size=16",
        "train.num_gpus=1",
        *extra,
    ]


def cli(
    run_dir: Path, data: Path, *flags: str, extra: tuple[str, ...] = (), batch: int = 32, epochs: int = 4
) -> list[str]:
    args = [ZOO, "train", "mean-pool", "--save_dir", str(run_dir), *flags]
    for text in overrides(data, *extra, batch=batch, epochs=epochs):
        args += ["-o", text]
    return args


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, start_new_session=True)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def weights(run_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run_dir / "model.safetensors"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# Checks that start no process


def test_gpus_on_a_cpu_only_paddle_fail_at_once(capsys, tmp_path):
    code = main(["train", "mean-pool", "--gpus", "4", "--save_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--gpus 4" in err and "no CUDA support" in err and "--cpu-procs" in err
    assert not (tmp_path / "run").exists()


def test_multi_node_flags_are_checked_and_passed_to_launch(tmp_path):
    with pytest.raises(UsageError, match="--master HOST:PORT"):
        launch.check_master(None, 2, 0)
    with pytest.raises(UsageError, match="--node-rank"):
        launch.check_master("127.0.0.1:6000", 2, None)
    plan = launch.LaunchPlan("cpu", 2, nnodes=2, master="127.0.0.1:6000", node_rank=1, log_dir=tmp_path)
    cmd = launch.launch_command(plan, tmp_path / "zoo_worker.py", ["train", "--config", "c.json"])
    assert cmd[1:3] == ["-m", "paddle.distributed.launch"]
    joined = " ".join(cmd)
    assert "--nproc_per_node 2" in joined and "--nnodes 2" in joined and "--master 127.0.0.1:6000" in joined
    assert "--rank 1" in joined and joined.endswith("zoo_worker.py train --config c.json")
    assert plan.world_size == 4


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_the_first_real_failure_is_blamed_not_the_ranks_that_lost_their_peer(tmp_path):
    records = [
        {
            "rank": 1,
            "world_size": 2,
            "time": 100.0,
            "type": "DataError",
            "message": "x.tfrecord: record 3: bad",
            "log": "workerlog.1",
        },
        {
            "rank": 0,
            "world_size": 2,
            "time": 99.0,
            "type": "RuntimeError",
            "message": "[gloo/transport/tcp/pair.cc:584] TIMEOUT self_rank = 0",
            "log": "workerlog.0",
        },
    ]
    for r in records:
        (tmp_path / f"failure.rank{r['rank']}.json").write_text(json.dumps(r))
    message = watch.failure_message(
        tmp_path, 0.0, 1, __import__("collections").deque(), launch.LaunchPlan(), False, None
    )
    assert message.startswith("rank 1 of 2 failed: DataError: x.tfrecord: record 3: bad")


def test_a_rank_killed_without_a_word_is_named_from_the_exit_records(tmp_path):
    """Each rank writes exit.rank<N>.json when zoo returns (130: stopped because another failed); a rank
    killed by a signal writes none and is the one blamed, with the tail of its own log."""
    plan = launch.LaunchPlan("cpu", 3, log_dir=tmp_path)
    for rank, code in ((0, 130), (2, 130)):
        record = {"rank": rank, "local_rank": rank, "code": code, "time": 100.0}
        (tmp_path / f"exit.rank{rank}.json").write_text(json.dumps({**record, "log": f"workerlog.{rank}"}))
    (tmp_path / "workerlog.1").write_text("step 7\nallocating 40 GB\n")
    deque = __import__("collections").deque
    message = watch.failure_message(tmp_path, 0.0, 1, deque(), plan, False, None)
    assert message.startswith("rank 1 ended without an exit record (killed by a signal)"), message
    assert "allocating 40 GB" in message and str(tmp_path / "workerlog.1") in message
    (tmp_path / "exit.rank1.json").write_text(
        json.dumps({"rank": 1, "local_rank": 1, "code": 3, "time": 100.0, "log": "workerlog.1"})
    )
    message = watch.failure_message(tmp_path, 0.0, 1, deque(), plan, False, None)
    assert message.startswith("rank 1 exited with code 3 without reporting an error"), message


# ---------------------------------------------------------------------------------------------------------
# Real multi-process runs


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_two_processes_follow_the_loss_curve_of_one(even_data, tmp_path, paddle):
    one = tmp_path / "one"
    Trainer(
        load_config(bundled_config("mean-pool"), overrides(even_data, f"train.save_dir={one}")),
        progress=False,
    ).fit()
    two = tmp_path / "two"
    done = run(cli(two, even_data, "--cpu-procs", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 CPU processes" in done.stderr
    a, b = jsonl(one / "steps.jsonl"), jsonl(two / "steps.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    assert [r["examples"] for r in b] == [32, 64, 96, 128]  # global examples drive the schedule
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5)
    wa, wb = weights(one), weights(two)
    for key in wa:
        np.testing.assert_allclose(wb[key], wa[key], rtol=0, atol=1e-3, err_msg=key)
    ha, hb = jsonl(one / "history.jsonl"), jsonl(two / "history.jsonl")
    assert hb[-1]["valid_loss"] == pytest.approx(ha[-1]["valid_loss"], rel=1e-4)
    # validation is one global GAP over both ranks' predictions: what one process computes for the same
    # weights on the whole validation set (an average of per-rank GAPs would differ)
    cfg = load_config(bundled_config("mean-pool"), overrides(even_data))
    model = build_model(cfg)
    apply_weights(model, read_weights(str(two)), strict=True)
    metrics, _ = evaluate(model, build_reader(cfg, "valid"), cfg, progress=False)
    assert hb[-1]["valid_num_videos"] == metrics["num_videos"] == 16
    for key in ("gap", "hit_at_1", "perr", "map"):
        assert hb[-1][f"valid_{key}"] == pytest.approx(metrics[key], abs=1e-6), key
    assert (two / "logs" / "workerlog.1").is_file()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_two_nodes_on_loopback_use_every_record_once_per_epoch(uneven_data, tmp_path):
    run_dir = tmp_path / "run"
    port = free_port()
    nodes = [
        subprocess.Popen(
            cli(
                run_dir,
                uneven_data,
                "--cpu-procs",
                "1",
                "--nnodes",
                "2",
                "--master",
                f"127.0.0.1:{port}",
                "--node-rank",
                str(k),
                batch=10,
                epochs=2,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for k in (0, 1)
    ]
    try:
        outputs = [p.communicate(timeout=TIMEOUT) for p in nodes]
    finally:
        for p in nodes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    for p, (_, err) in zip(nodes, outputs):
        assert p.returncode == 0, err[-3000:]
    # rank 0 has 16 videos (batches 5, 5, 5, 1), rank 1 has 15 (5, 5, 5): the 4th step is 1 video
    steps = jsonl(run_dir / "steps.jsonl")
    assert [r["step"] for r in steps] == list(range(1, 9))  # written once (rank 0 only), no duplicates
    assert [r["examples"] for r in steps] == [10, 20, 30, 31, 41, 51, 61, 62]
    assert [r["examples"] for r in jsonl(run_dir / "history.jsonl")] == [31, 62]
    assert (run_dir / "logs" / "node0" / "workerlog.0").is_file()
    assert (run_dir / "logs" / "node1" / "workerlog.0").is_file()


def _corrupt_record(path: Path, index: int) -> bytes:
    """Flip a payload byte of record ``index`` (its checksum then fails); returns the original bytes."""
    original = path.read_bytes()
    data = bytearray(original)
    offset = 0
    for _ in range(index):
        offset += 12 + struct.unpack_from("<Q", data, offset)[0] + 4
    length = struct.unpack_from("<Q", data, offset)[0]
    data[offset + 12 + length // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return original


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_failing_rank_stops_the_job_naming_it_and_resume_recovers(even_data, tmp_path):
    import shutil

    import zoo
    from zoo.data.pipeline import plan_epoch

    data = tmp_path / "data"
    shutil.copytree(even_data, data)
    reader = zoo.build_reader("yt8m-frame", preset="yt8m", num_classes=10, paths=[str(data / "train")])
    plan = plan_epoch(reader.sources(), parts=2, shuffle=True, seed=0, epoch=0)
    rank1_file = Path(plan.part_tasks(1)[0][0])
    original = _corrupt_record(rank1_file, 12)  # rank 1 fails reading its 4th batch of 4
    run_dir = tmp_path / "run"
    args = cli(run_dir, data, "--cpu-procs", "2", extra=("train.checkpoint_steps=2",), batch=8, epochs=2)
    failed = run(args)
    assert failed.returncode == 1, failed.stderr[-3000:]
    err = failed.stderr
    assert "rank 1 of 2 failed" in err and "record 12" in err and rank1_file.name in err, err[-3000:]
    assert "The last checkpoint is step 2" in err and "--resume" in err
    assert "Traceback" not in err

    rank1_file.write_bytes(original)  # the user fixes the data, then resumes
    resumed = run([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    steps = jsonl(run_dir / "steps.jsonl")
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert steps[-1]["examples"] == 64
    assert [r["epoch"] for r in jsonl(run_dir / "history.jsonl")] == [1, 2]
