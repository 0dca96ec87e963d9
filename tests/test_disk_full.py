"""Disk full, for real: every writer runs in a child process whose file-size limit (RLIMIT_FSIZE) is lowered
below what it writes, so the write fails in the kernel (EFBIG) exactly as on a full disk (ENOSPC), through
whatever library writes (Python, safetensors' Rust, paddle's C++, the C prediction formatter). Each must end
in the one documented message (the path, the space needed and free), keep the previous state and leave no
partial file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    r"""
    import hashlib, io, json, resource, sys, tarfile, traceback
    from pathlib import Path

    import numpy as np

    root = Path(sys.argv[1])
    sys.path.insert(0, sys.argv[2])  # tests/, for the helpers
    HARD = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    results = {}

    def limited(name, limit, action):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, HARD))
        try:
            action()
            results[name] = {"type": None, "message": ""}
        except BaseException as exc:  # what the user would see
            results[name] = {"type": type(exc).__name__, "message": str(exc), "tb": traceback.format_exc()}
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (HARD, HARD))

    def digest(path):
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    # final weights (safetensors' Rust writer): the previous file and its checksum stay
    from zoo.engine.runs.checkpoint import save_arrays
    weights = root / "w" / "model.safetensors"
    weights.parent.mkdir()
    save_arrays(weights, {"w": np.zeros(10, np.float32)})
    before = {p.name: digest(p) for p in weights.parent.iterdir()}
    limited("weights", 100_000, lambda: save_arrays(weights, {"w": np.ones(100_000, np.float32)}))
    results["weights"]["intact"] = before == {p.name: digest(p) for p in weights.parent.iterdir()}

    # a checkpoint (safetensors inside atomic_dir): the previous checkpoint stays the latest
    import paddle
    from zoo.engine.runs import checkpoint
    paddle.set_device("cpu")
    model = paddle.nn.Linear(200, 200)
    opt = paddle.optimizer.Adam(parameters=model.parameters())
    run = root / "run"
    checkpoint.save_checkpoint(run, model, opt, {"step": 1})
    limited("checkpoint", 100_000, lambda: checkpoint.save_checkpoint(run, model, opt, {"step": 2}))
    results["checkpoint"]["latest"] = checkpoint.latest_checkpoint(run).name

    # predictions in every format, written together (Python writers and the C formatter)
    from zoo.config import load_config
    from zoo.contracts import Prediction
    from zoo.engine.commands.workflow import write_predictions
    cfg = load_config(raw={"dataset": {"preset": "yt8m", "num_classes": 100}, "model": {"name": "mean-pool"},
                           "predict": {"formats": ["kaggle-csv", "jsonl"]}}, source="test")
    small = [Prediction("a", [1], [0.5])]
    big = [Prediction(f"video{i:05d}", list(range(20)), [0.5] * 20) for i in range(3000)]
    out = root / "pred"
    write_predictions(out, small, cfg)
    before = {p.name: digest(p) for p in out.iterdir()}
    limited("predictions", 60_000, lambda: write_predictions(out, big, cfg))
    results["predictions"]["intact"] = before == {p.name: digest(p) for p in out.iterdir()}
    from zoo_yt8m_metrics.kaggle import write_kaggle_columns
    from zoo.engine.infer.prediction_files import PredictionColumns
    cols = PredictionColumns(np.array([f"v{i:06d}".encode() for i in range(5000)]),
                             np.tile(np.arange(20, dtype=np.int32), (5000, 1)), np.full((5000, 20), 0.5, np.float32))
    limited("columns", 60_000, lambda: write_kaggle_columns(out / "predictions.csv", cols))
    results["columns"]["intact"] = before == {p.name: digest(p) for p in out.iterdir()}

    # zoo ensemble through the CLI: its files appear together or not at all
    from zoo.cli import main
    from zoo_yt8m_metrics.kaggle import write_kaggle_csv
    write_kaggle_csv(root / "a.csv", big)
    write_kaggle_csv(root / "b.csv", big)
    import contextlib
    err = io.StringIO()
    def ensemble():
        with contextlib.redirect_stderr(err):
            code = main(["ensemble", str(root / "a.csv"), str(root / "b.csv"), "--output", str(root / "ens")])
        raise SystemExit(code)
    limited("ensemble", 60_000, ensemble)
    results["ensemble"]["stderr"] = err.getvalue()
    results["ensemble"]["left"] = sorted(p.name for p in (root / "ens").iterdir()) if (root / "ens").exists() else []

    # packing
    from zoo_yt8m_data.synth import SynthSpec, generate
    from zoo_yt8m_data.packing import pack
    generate(root / "d", SynthSpec(train_videos=40, valid_videos=2, test_videos=2, classes=5, train_shards=1))
    source = next((root / "d" / "train").iterdir())
    limited("pack", 50_000, lambda: pack([str(source)], root / "packed", jobs=1, progress=False))
    results["pack"]["left"] = sorted(
        p.name for p in (root / "packed").iterdir() if p.name != "pack.json" and not p.name.startswith(".pack.lock")
    )

    # an append-only log (steps.jsonl): cut back to its previous length
    from zoo.atomic import append_text
    log = root / "steps.jsonl"
    log.write_text('{"step": 1}\n' * 100)
    limited("log", 1500, lambda: append_text(log, '{"step": 2}\n' * 100, what="the step log"))
    results["log"]["size"] = log.stat().st_size

    # an archive extracted into the cache
    import os
    os.environ["ZOO_CACHE_DIR"] = str(root / "cache")
    from zoo.engine.runs.weights import read_weights
    archive = root / "w.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("model/w.pdparams")
        payload = np.random.default_rng(0).bytes(300_000)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    limited("extraction", 100_000, lambda: read_weights(str(archive)))
    results["extraction"]["left"] = [str(p) for p in (root / "cache").rglob("*") if p.is_file()]

    # an export (paddle writes the program and the parameters)
    from export_helpers import tiny_config
    from zoo.engine.export.tracing import export_model
    limited("export", 2_000, lambda: export_model(tiny_config("nextvlad"), None, root / "export", allow_random=True, quiet=True))
    results["export"]["left"] = sorted(p.name for p in root.iterdir() if "export" in p.name)

    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    script = root / "child.py"
    script.write_text(CHILD)
    done = subprocess.run(
        [sys.executable, str(script), str(root), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads(done.stdout.strip().splitlines()[-1])


def _documented(result: dict, path_part: str) -> None:
    assert result["type"] == "NoSpaceLeft", result.get("tb", result)
    message = result["message"]
    assert message.startswith("no space left on the device while writing"), message
    assert path_part in message and "it needs" in message and "B free" in message, message
    assert "ulimit -f" in message and "Nothing was half-written" in message


pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("case", "path_part"),
    [
        ("weights", "the weights"),
        ("checkpoint", "the checkpoint"),
        ("predictions", "predictions."),
        ("columns", "predictions.csv"),
        ("pack", "the shard of"),
        ("log", "steps.jsonl"),
        ("extraction", "the contents of"),
        ("export", "the export"),
    ],
)
def test_every_writer_gives_the_one_message_when_the_disk_is_full(results, case, path_part):
    _documented(results[1][case], path_part)


def test_the_previous_state_is_intact_and_nothing_partial_is_left(results):
    root, r = results
    assert r["weights"]["intact"] and r["predictions"]["intact"] and r["columns"]["intact"]
    assert r["checkpoint"]["latest"] == "step-00000001"
    assert r["pack"]["left"] == [] and r["extraction"]["left"] == [] and r["export"]["left"] == []
    assert r["log"]["size"] == 1200
    assert not [p for p in root.rglob("*partial*")]
    assert r["ensemble"]["type"] == "SystemExit" and r["ensemble"]["message"] == "1"
    assert "no space left on the device while writing" in r["ensemble"]["stderr"]
    assert "Traceback" not in r["ensemble"]["stderr"] and r["ensemble"]["left"] == []


def test_files_of_a_group_appear_together_or_not_at_all(tmp_path):
    from zoo.atomic import atomic_group, atomic_write_text

    (tmp_path / "a").write_text("before")
    with pytest.raises(RuntimeError), atomic_group():
        atomic_write_text(tmp_path / "a", "new a")
        with atomic_group():  # a nested group joins the outer one
            atomic_write_text(tmp_path / "b", "b")
        assert not (tmp_path / "b").exists() and (tmp_path / "a").read_text() == "before"
        raise RuntimeError("the third file failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and (tmp_path / "a").read_text() == "before"
    with atomic_group():
        atomic_write_text(tmp_path / "a", "new a")
        atomic_write_text(tmp_path / "b", "b")
    assert (tmp_path / "a").read_text() == "new a" and (tmp_path / "b").read_text() == "b"
