"""Run directories (issue 16): locks, resume with a changed config, checkpoint checksums, disk full, runs that
would do nothing, where data comes from, portable configs, duplicate ids and orphaned workers."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_engine import run_cli, tiny_config, weights_of

from zoo.config import load_config
from zoo.dirlock import DirectoryLock, DirectoryLocked, NoSpaceLeft
from zoo.engine.runs import checkpoint
from zoo.engine.train.trainer import Trainer
from zoo.errors import ConfigError, DataError, UsageError, ZooError


def _flip_byte(path: Path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------------------------------------
# resume with a changed config; history after resume


@pytest.mark.integration
def test_resume_refuses_changes_that_break_exactness_and_records_accepted_ones(tiny_data, tmp_path, paddle):
    straight = tmp_path / "straight"
    Trainer(tiny_config(tiny_data, straight, "train.epoch=1"), progress=False).fit()
    run = tmp_path / "run"
    Trainer(tiny_config(tiny_data, run, "train.epoch=1", "train.max_iter=3"), progress=False).fit()
    saved = (run / "config.json").read_bytes()
    with pytest.raises(UsageError) as refused:
        Trainer(
            tiny_config(
                tiny_data, run, "train.epoch=1", "train.max_iter=3", "train.batch_size=4", "train.seed=7"
            ),
            progress=False,
        ).fit(resume=True)
    message = str(refused.value)
    assert "train.batch_size: 8 in the run, 4 now" in message and "train.seed: 0 in the run, 7 now" in message
    assert (run / "config.json").read_bytes() == saved  # not overwritten
    with pytest.raises(UsageError, match="--allow-change train.max_iter"):
        Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False).fit(resume=True)
    with pytest.raises(UsageError, match="--allow-change train.batch_size: only"):
        Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False).fit(
            resume=True, allow_changes=("train.batch_size",)
        )
    logs: list[str] = []
    Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False, log=logs.append).fit(
        resume=True, allow_changes=("train.max_iter",)
    )
    assert any("config changes accepted: train.max_iter 3 -> 700000" in m for m in logs)
    record = json.loads((run / "resumes.jsonl").read_text().splitlines()[-1])
    assert record["checkpoint"] == "step-00000003" and record["allowed"] == ["train.max_iter"]
    assert record["changes"] == {"train.max_iter": {"run": 3, "now": 700000}}
    assert json.loads((run / "config.json").read_text())["train"]["max_iter"] == 700000
    # exact: same weights as the uninterrupted run, and the epoch's train_loss covers all its steps
    a, b = weights_of(straight), weights_of(run)
    # to float32's rounding, not bit for bit: without AVX-512 the fused kernel rounds some multiply-adds once
    # more than paddle's portable adam kernel (tests/test_optim.py; an AMD EPYC: 5e-7 relative after the
    # resume); a resume that lost or misplaced the optimizer's state is off by orders of magnitude more
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    loss_straight = json.loads((straight / "history.jsonl").read_text().splitlines()[-1])["train_loss"]
    loss_resumed = json.loads((run / "history.jsonl").read_text().splitlines()[-1])["train_loss"]
    assert loss_resumed == pytest.approx(loss_straight, rel=1e-6)
    # the run is finished: resuming it again trains nothing, says so and (re)writes the final weights
    logs = []
    Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False, log=logs.append).fit(resume=True)
    assert any("nothing is left to train" in m for m in logs)
    for key, value in weights_of(run).items():
        np.testing.assert_array_equal(value, b[key], err_msg=key)


# ----------------------------------------------------------------------------------------------------------
# locks

HOLD = textwrap.dedent(
    """
    import sys, time
    from zoo.dirlock import DirectoryLock
    DirectoryLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.integration
def test_a_resume_may_switch_the_fused_update_when_allowed(tiny_data, tmp_path, paddle):
    """``train.fused_update`` changes which kernels compute the same Adam update: a resume refuses the change
    unless allowed, then ends where an uninterrupted run does (opting in, here)."""
    straight = tmp_path / "straight"
    Trainer(tiny_config(tiny_data, straight, "train.epoch=1"), progress=False).fit()
    run = tmp_path / "run"
    Trainer(tiny_config(tiny_data, run, "train.epoch=1", "train.max_iter=3"), progress=False).fit()
    changed = tiny_config(tiny_data, run, "train.epoch=1", "train.fused_update=true")
    with pytest.raises(UsageError, match="--allow-change train.fused_update"):
        Trainer(changed, progress=False).fit(resume=True, allow_changes=("train.max_iter",))
    Trainer(changed, progress=False).fit(resume=True, allow_changes=("train.max_iter", "train.fused_update"))
    a, b = weights_of(straight), weights_of(run)
    # to float32's rounding, not bit for bit: without AVX-512 the fused kernel rounds some multiply-adds once
    # more than paddle's portable adam kernel (tests/test_optim.py; an AMD EPYC: 5e-7 relative after the
    # resume); a resume that lost or misplaced the optimizer's state is off by orders of magnitude more
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.integration
def test_a_second_writer_is_refused_and_a_killed_ones_lock_is_taken_over(tiny_data, tmp_path, paddle):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run / "run.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryLocked) as refused:
            Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False).fit()
        assert f"process {holder.pid} on this host" in str(refused.value)
        assert not (run / "config.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    logs: list[str] = []
    Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False, log=logs.append).fit()
    assert any(f"process {holder.pid} that locked it is gone" in m for m in logs)
    assert not (run / "run.lock.owner").exists()  # released at the end
    DirectoryLock(run / "run.lock").acquire().release()


HOLD_AND_REPORT = textwrap.dedent(
    """
    import sys
    from zoo.dirlock import DirectoryLock, DirectoryLocked
    try:
        DirectoryLock(sys.argv[1]).acquire()
    except DirectoryLocked as exc:
        print(exc)
    """
)


@pytest.mark.integration
def test_the_refusal_names_the_holder_and_a_note_without_a_lock_is_not_a_holder(tmp_path):
    """The lock is the OS's (flock): the holder's note alone (here one naming a process on another host)
    holds nothing; while a process holds the lock, another process is refused with the holder's pid, host and
    command; within one process, taking the lock again succeeds (an earlier run in it failed)."""
    lock = tmp_path / "run.lock"
    note = {
        "pid": 4242,
        "host": "elsewhere.example",
        "since": "2026-01-01 00:00:00",
        "command": "zoo train x",
    }
    (tmp_path / "run.lock.owner").write_text(json.dumps(note))
    logs: list[str] = []
    held = DirectoryLock(lock).acquire(logs.append)
    assert logs and "process 4242 on host elsewhere.example that locked it is gone (zoo train x)" in logs[0]
    assert DirectoryLock(lock).acquire().held
    refused = subprocess.run(
        [sys.executable, "-c", HOLD_AND_REPORT, str(lock)], capture_output=True, text=True, check=True
    ).stdout
    assert f"process {os.getpid()} on this host" in refused and sys.argv[0] in refused
    held.release()
    assert not (tmp_path / "run.lock.owner").exists()
    again = subprocess.run(
        [sys.executable, "-c", HOLD_AND_REPORT, str(lock)], capture_output=True, text=True, check=True
    )
    assert again.stdout == ""


# ----------------------------------------------------------------------------------------------------------
# checkpoint integrity and disk full


@pytest.mark.integration
def test_a_damaged_checkpoint_is_named_and_the_newest_intact_one_used(tiny_data, tmp_path, paddle):
    straight = tmp_path / "straight"
    Trainer(tiny_config(tiny_data, straight, "train.epoch=1"), progress=False).fit()
    run = tmp_path / "run"
    Trainer(
        tiny_config(tiny_data, run, "train.epoch=1", "train.max_iter=4", "train.checkpoint_steps=2"),
        progress=False,
    ).fit()
    latest, older = run / "checkpoints" / "step-00000004", run / "checkpoints" / "step-00000002"
    assert checkpoint.damage(latest) == [] and (latest / "SHA256SUMS").is_file()
    _flip_byte(latest / "model.safetensors")
    assert checkpoint.damage(latest) == ["model.safetensors does not match its SHA-256 in SHA256SUMS"]
    # eval / export read weights through read_weights: the damaged file is named, the intact one offered
    from zoo.engine.runs.weights import read_weights

    with pytest.raises(ZooError, match=f"damaged weights: .*step-00000004.*use --weights {older}"):
        read_weights(str(latest))
    logs: list[str] = []
    Trainer(
        tiny_config(tiny_data, run, "train.epoch=1", "train.checkpoint_steps=2"),
        progress=False,
        log=logs.append,
    ).fit(resume=True, allow_changes=("train.max_iter",))
    assert any(f"{latest} is damaged" in m and f"resuming from {older}" in m for m in logs)
    a, b = weights_of(straight), weights_of(run)
    # to float32's rounding, not bit for bit: without AVX-512 the fused kernel rounds some multiply-adds once
    # more than paddle's portable adam kernel (tests/test_optim.py; an AMD EPYC: 5e-7 relative after the
    # resume); a resume that lost or misplaced the optimizer's state is off by orders of magnitude more
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    _flip_byte(run / "model.safetensors")
    with pytest.raises(ZooError, match="model.safetensors does not match its SHA-256"):
        read_weights(str(run))


@pytest.mark.integration
def test_disk_full_while_checkpointing_names_the_path_and_keeps_the_previous(
    tiny_data, tmp_path, paddle, monkeypatch
):
    import safetensors.numpy

    real = safetensors.numpy.save_file
    calls = {"n": 0}

    def full_disk(arrays, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:  # the first checkpoint (weights + optimizer) fits, the second does not
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(arrays, path, *args, **kwargs)

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    run = tmp_path / "run"
    with pytest.raises(NoSpaceLeft) as full:
        Trainer(
            tiny_config(tiny_data, run, "train.epoch=1", "train.checkpoint_steps=2"), progress=False
        ).fit()
    message = str(full.value)
    assert str(run / "checkpoints" / "step-00000004") in message and "MB" in message
    assert "the previous checkpoint" in message and "step-00000002 is intact" in message
    assert checkpoint.latest_checkpoint(run).name == "step-00000002"
    assert checkpoint.damage(run / "checkpoints" / "step-00000002") == []
    assert not list((run / "checkpoints").glob(".*partial"))


def test_disk_full_while_packing_names_the_shard(tmp_path, monkeypatch):
    from zoo_yt8m_data import packed
    from zoo_yt8m_data.packing import pack
    from zoo_yt8m_data.synth import SynthSpec, generate

    generate(
        tmp_path / "d", SynthSpec(train_videos=8, valid_videos=2, test_videos=2, classes=5, train_shards=1)
    )
    source = next((tmp_path / "d" / "train").iterdir())

    def full_disk(self, frames):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(packed._ChecksummedFile, "write", full_disk)
    with pytest.raises(NoSpaceLeft, match=f"the shard of {source}.*needs about"):
        pack([str(source)], tmp_path / "out", jobs=1, progress=False)
    assert not list((tmp_path / "out").glob(".*.partial"))
    (tmp_path / "out" / ".train0000.abc.partial").mkdir()  # as a kill -9 would leave it
    monkeypatch.undo()
    pack([str(source)], tmp_path / "out", jobs=1, progress=False)
    assert (
        not list((tmp_path / "out").glob(".*.partial"))
        and not (tmp_path / "out" / ".pack.lock.owner").exists()
    )


# ----------------------------------------------------------------------------------------------------------
# runs that would do nothing; where the data comes from; portable run directories


def test_empty_training_data_and_zero_epochs_are_errors(tiny_data, tmp_path, paddle):
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"holds no videos: {empty} is empty"):
        Trainer(
            tiny_config(tiny_data, tmp_path / "run", f"data.train={json.dumps(str(empty))}"), progress=False
        ).fit()
    with pytest.raises(ConfigError, match="train.epoch"):
        load_config(None, ["dataset.preset=yt8m", "train.epoch=0"], model="nextvlad")


@pytest.mark.timeout(900)
@pytest.mark.integration
def test_data_dir_and_data_override_together_are_refused(tiny_data, tmp_path):
    out = run_cli("train", "nextvlad", "--data", str(tiny_data), "-o", "data.train=/x", cwd=tmp_path)
    assert out.returncode == 2 and "--data" in out.stderr and "-o data.train=/x" in out.stderr


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_run_dirs_are_portable_and_eval_data_says_which_split(tiny_data, tmp_path, paddle, monkeypatch):
    monkeypatch.chdir(tiny_data)
    run = tmp_path / "run"
    cfg = load_config(
        None,
        [
            "dataset.preset=yt8m",
            "dataset.num_classes=12",
            "data.train=train",
            "data.valid=validate",
            "data.num_workers=0",
            "train.batch_size=8",
            "train.epoch=1",
            "train.num_gpus=1",
            f"train.save_dir={json.dumps(str(run))}",
            "model.cluster_size=4",
            "model.groups=2",
            "model.hidden_size=16",
        ],
        model="nextvlad",
    )
    Trainer(cfg, progress=False).fit()
    saved = json.loads((run / "config.json").read_text())["data"]
    assert saved["train"] == [str(tiny_data / "train")] and saved["valid"] == [str(tiny_data / "validate")]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_cli("eval", "--weights", str(run), "--output", str(elsewhere / "e"), cwd=elsewhere)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"evaluating data.valid (data.test is not set): {tiny_data / 'validate'}" in out.stderr
    # --data DIR holding only validate/: that split, not one saved in the run
    only_valid = tmp_path / "only-valid"
    only_valid.mkdir()
    (only_valid / "validate").symlink_to(tiny_data / "test")
    out = run_cli(
        "eval",
        "--weights",
        str(run),
        "--data",
        str(only_valid),
        "--output",
        str(elsewhere / "f"),
        cwd=elsewhere,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"evaluating data.valid (data.test is not set): {only_valid / 'validate'}" in out.stderr


# ----------------------------------------------------------------------------------------------------------
# duplicate ids


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_duplicate_ids_are_reported_with_both_files(tiny_data, tmp_path, paddle):
    from zoo_yt8m_data.inspection import inspect_sources

    test_file = next((tiny_data / "test").iterdir())
    copy = tmp_path / "copy.tfrecord"
    copy.write_bytes(test_file.read_bytes())
    report = inspect_sources([str(test_file), str(copy)])
    assert report["duplicate_ids"]["count"] == 24
    assert f"in {test_file} and {copy}" in report["duplicate_ids"]["examples"][0]
    run = tmp_path / "run"
    Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False).fit()
    both = json.dumps([str(test_file), str(copy)])
    out = run_cli(
        "eval",
        "--weights",
        str(run),
        "-o",
        f"data.test={both}",
        "--output",
        str(tmp_path / "e"),
        cwd=tmp_path,
    )
    assert (
        out.returncode == 1 and f"in {test_file} and {copy}" in out.stderr and "24 video id(s)" in out.stderr
    )
    out = run_cli(
        "predict",
        "--weights",
        str(run),
        "--filelist",
        str(test_file),
        str(copy),
        "--output",
        str(tmp_path / "p"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "kept the first prediction of each video; 24 video id(s)" in out.stderr
    assert len((tmp_path / "p" / "predictions.jsonl").read_text().splitlines()) == 24


# ----------------------------------------------------------------------------------------------------------
# orphans after kill -9 of the parent

POOL_PARENT = textwrap.dedent(
    """
    import time
    from zoo_yt8m_data.packing import worker_pool
    pool = worker_pool(2)
    futures = [pool.submit(time.sleep, 300) for _ in range(2)]
    time.sleep(3)
    print("ready", flush=True)
    time.sleep(300)
    """
)

LOADER_PARENT = textwrap.dedent(
    """
    import sys, time
    from zoo.config import load_config
    from zoo.engine.runtime import init_paddle
    from zoo.engine.build import build_reader
    from zoo.engine.feed import batches_for
    init_paddle("cpu")
    root = sys.argv[1]
    cfg = load_config(None, ["dataset.preset=yt8m", "dataset.num_classes=12", f"data.train={root}/train", "data.num_workers=2",
                             "data.shuffle_buffer=4"], model="nextvlad")
    it = iter(batches_for(build_reader(cfg, "train"), cfg, batch_size=2, shuffle=False))
    next(it)
    print("ready", flush=True)
    time.sleep(300)
    """
)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.mark.integration
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses ps --ppid and /proc")
@pytest.mark.parametrize("script", ["pack-pool", "dataloader"])
def test_workers_exit_when_their_parent_is_killed(tiny_data, script):
    code = POOL_PARENT if script == "pack-pool" else LOADER_PARENT
    parent = subprocess.Popen([sys.executable, "-c", code, str(tiny_data)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        workers = [p for p in _children(parent.pid) if "python" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) >= 2, workers
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"
