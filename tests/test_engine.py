"""The train / eval / predict engine on real TFRecords written by the sample-data generator."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import pytest

from zoo import hookimpl
from zoo.config import load_config
from zoo.engine.runs.weights import apply_weights, load_pickled_arrays, read_weights
from zoo.engine.train.trainer import Trainer, TrainingDiverged
from zoo.errors import ZooError
from zoo.plugins import get_plugins

ZOO = str(Path(sys.executable).with_name("zoo"))
NEXTVLAD_TINY = [
    "model.cluster_size=4",
    "model.groups=2",
    "model.hidden_size=16",
    "model.gating_reduction=4",
    "model.dropout=0.3",
]


def tiny_config(data: Path, run_dir: Path, *extra: str, model: str = "nextvlad"):
    overrides = [
        "dataset.preset=yt8m",
        "dataset.num_classes=12",
        f"data.train={json.dumps(str(data / 'train'))}",
        f"data.valid={json.dumps(str(data / 'validate'))}",
        f"data.test={json.dumps(str(data / 'test'))}",
        "data.num_workers=0",
        "data.shuffle_buffer=16",
        "train.batch_size=8",
        "train.epoch=2",
        "train.learning_rate=0.003",
        "train.log_interval=2",
        f"train.save_dir={json.dumps(str(run_dir))}",
        "eval.batch_size=16",
        "predict.batch_size=16",
        "train.num_gpus=1",
    ]
    if model == "nextvlad":
        overrides = NEXTVLAD_TINY + overrides
    return load_config(None, overrides + list(extra), model=model)


def weights_of(run_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run_dir / "model.safetensors"))


@pytest.mark.integration
def test_training_writes_a_complete_run_directory(tiny_data, tmp_path, paddle):
    run = tmp_path / "run"
    result = Trainer(tiny_config(tiny_data, run), progress=False).fit()
    assert result.steps == 2 * 8 and result.epochs == 2  # 60 videos / batch 8 -> 8 steps per epoch
    for name in (
        "config.json",
        "model.safetensors",
        "latest",
        "history.jsonl",
        "history.csv",
        "history.png",
        "steps.jsonl",
    ):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0.0 <= r["valid_gap"] <= 1.0 and np.isfinite(r["valid_loss"]) for r in rows)
    assert (run / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] * 1.5
    # a second run into the same folder must not silently mix with the first
    with pytest.raises(ZooError, match="--resume"):
        Trainer(tiny_config(tiny_data, run), progress=False).fit()


@pytest.mark.integration
def test_resume_mid_epoch_matches_an_uninterrupted_run(tiny_data, tmp_path, paddle):
    straight = tmp_path / "straight"
    Trainer(tiny_config(tiny_data, straight), progress=False).fit()
    split = tmp_path / "split"
    # stop after 11 steps (in the middle of epoch 2), then resume to the end
    Trainer(tiny_config(tiny_data, split, "train.max_iter=11"), progress=False).fit()
    state = json.loads(
        (split / "checkpoints" / (split / "latest").read_text().strip() / "state.json").read_text()
    )
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (11, 1, 3)
    Trainer(tiny_config(tiny_data, split), progress=False).fit(resume=True, allow_changes=("train.max_iter",))
    a, b = weights_of(straight), weights_of(split)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.integration
def test_dequantizing_on_the_device_trains_exactly_as_on_the_host(tiny_data, tmp_path, paddle):
    """data.dequantize_on_device (the GPU default) feeds the model the same values: the same weights, validation
    GAP and training loss, with the quantized batches coming through a DataLoader worker."""
    host, device = tmp_path / "host", tmp_path / "device"
    Trainer(
        tiny_config(tiny_data, host, "train.epoch=1", "data.dequantize_on_device=false"), progress=False
    ).fit()
    Trainer(
        tiny_config(
            tiny_data,
            device,
            "train.epoch=1",
            "data.dequantize_on_device=true",
            "data.num_workers=1",
            "data.collate_threads=0",
        ),
        progress=False,
    ).fit()
    a, b = weights_of(host), weights_of(device)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    rows = [json.loads((run / "history.jsonl").read_text().splitlines()[-1]) for run in (host, device)]
    assert rows[0]["valid_gap"] == rows[1]["valid_gap"] and rows[0]["train_loss"] == rows[1]["train_loss"]


@dataclass
class _NanConfig:
    after: int = 3
    """Steps before the loss turns NaN."""


class NanAfter(paddle.nn.Layer):
    """Mean-pool classifier whose training outputs turn NaN after ``config.after`` steps."""

    name = "nan-after"
    Config = _NanConfig

    def __init__(self, config: _NanConfig, spec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.fc = paddle.nn.Linear(sum(spec.features.values()), spec.num_classes)
        self.calls = 0

    def forward(self, batch):
        from zoo.nn import masked_mean

        self.calls += int(self.training)
        frames = paddle.concat([batch[name] for name in self.spec.features], axis=-1)
        out = self.fc(masked_mean(frames, batch["mask"]))
        return out * float("nan") if self.training and self.calls > self.config.after else out


class _NanPlugin:
    @staticmethod
    @hookimpl
    def zoo_register_models(register):
        register(NanAfter)


@pytest.mark.integration
def test_nan_loss_stops_with_the_last_good_checkpoint_intact(tiny_data, tmp_path, paddle):
    get_plugins().add_plugin(_NanPlugin, name="nan-plugin", distribution="tests")
    try:
        run = tmp_path / "nan"
        cfg = tiny_config(tiny_data, run, "model.after=10", model="nan-after")
        with pytest.raises(TrainingDiverged) as exc:
            Trainer(cfg, progress=False).fit()
        assert "step 11" in str(exc.value) and "step-00000008" in str(exc.value)
        before = weights_of_checkpoint(run / "checkpoints" / "step-00000008")
        assert all(np.isfinite(v).all() for v in before.values())
        assert (run / "latest").read_text().strip() == "step-00000008"
    finally:
        get_plugins().remove_plugin("nan-plugin")


def weights_of_checkpoint(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.integration
def test_pretrain_loads_what_fits_and_reports_the_rest(tiny_data, tmp_path, paddle):
    run = tmp_path / "base"
    Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False).fit()
    from zoo.engine.build import build_model

    other = tiny_config(tiny_data, tmp_path / "other", "dataset.num_classes=20")
    model = build_model(other)
    report = apply_weights(model, read_weights(str(run)), strict=False)
    skipped = {name for name, _, _ in report.mismatched}
    assert skipped and all("head" in n or "logistic" in n or "classifier" in n or "fc" in n for n in skipped)
    assert len(report.loaded) > len(skipped)
    with pytest.raises(ZooError, match="do not fit"):
        apply_weights(build_model(other), read_weights(str(run)), strict=True)


def test_crafted_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pdparams"
    bad.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ZooError, match="nothing from the file was executed"):
        load_pickled_arrays(bad)
    assert not marker.exists()
    good = tmp_path / "good.pdparams"
    good.write_bytes(pickle.dumps({"w": np.ones((2, 3), np.float32)}, protocol=2))
    assert load_pickled_arrays(good)["w"].shape == (2, 3)


class _Server:
    """A real HTTP server on 127.0.0.1 serving a folder, in a thread."""

    def __init__(self, root: Path):
        import functools
        import http.server
        import threading

        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        handler.log_message = lambda *a, **k: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = _Server(root)
    try:
        yield root, server.url
    finally:
        server.close()


@pytest.mark.integration
def test_weights_url_is_downloaded_once_and_checksum_verified(
    tiny_data, tmp_path, served, paddle, monkeypatch
):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    root, url = served
    run = tmp_path / "run"
    Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False).fit()
    data = (run / "model.safetensors").read_bytes()
    (root / "w.safetensors").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    loaded = read_weights(f"{url}/w.safetensors#sha256={digest}")
    assert set(loaded.state) == set(weights_of(run))
    with pytest.raises(ZooError, match="does not match the expected"):
        read_weights(
            f"{url}/w.safetensors#sha256={'0' * 64}",
        )
    (root / "w.safetensors").write_bytes(data[:-10] + b"corrupted!")  # the server now serves damaged bytes
    again = read_weights(f"{url}/w.safetensors#sha256={digest}")  # the verified cached copy is reused
    assert set(again.state) == set(loaded.state)
    with pytest.raises(ZooError):
        read_weights(f"{url}/missing.safetensors")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ZOO, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_eval_and_predict_commands_use_the_saved_config(tiny_data, tmp_path, paddle):
    run = tmp_path / "run"
    Trainer(
        tiny_config(tiny_data, run, "train.epoch=1", "predict.formats=[jsonl, kaggle-csv]"), progress=False
    ).fit()
    out = run_cli("eval", "--weights", str(run), "--output", str(tmp_path / "eval"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "gap" in out.stdout and "hit_at_1" in out.stdout
    results = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert results["metrics"]["num_videos"] == 24
    out = run_cli(
        "predict",
        "--weights",
        str(run),
        "--filelist",
        str(tiny_data / "test"),
        "--top_k",
        "5",
        "--vocabulary",
        str(tiny_data / "vocabulary.csv"),
        "--output",
        str(tmp_path / "pred"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs" and len(lines) == 25
    assert len(lines[1].split(",")[1].split()) == 10  # 5 (label, score) pairs
    first = json.loads((tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()[0])
    assert len(first["classes"]) == 5 and "names" in json.dumps(first)
    missing = run_cli("eval", "nextvlad", "--weights", str(tmp_path / "nothing"), cwd=tmp_path)
    assert missing.returncode == 1 and "do not exist" in missing.stderr


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_eval_without_weights_uses_the_released_paddlevideo_archive(tiny_data, tmp_path, served, paddle):
    """The seed's fallback: no --weights -> the released PaddleVideo 1.x NeXtVLAD archive, fetched and converted.

    The archive is built here in PaddleVideo's layout (a tar.gz holding NEXTVLAD_final.pdparams, a protocol-2
    pickle of arrays keyed by the 1.x names) from a trained model, and served on 127.0.0.1.
    """
    import tarfile

    root, url = served
    run = tmp_path / "run"
    Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False).fit()
    from zoo.engine.build import build_model

    cfg = tiny_config(tiny_data, run)
    model = build_model(cfg)
    apply_weights(model, read_weights(str(run)), strict=True)
    pdparams = tmp_path / "NEXTVLAD_final.pdparams"
    pdparams.write_bytes(pickle.dumps(model.to_paddlevideo(), protocol=2))
    with tarfile.open(root / "nextvlad_youtube8m.tar.gz", "w:gz") as tar:
        tar.add(pdparams, arcname="nextvlad_youtube8m/NEXTVLAD_final.pdparams")

    common = [
        "eval",
        "nextvlad",
        *[a for o in NEXTVLAD_TINY for a in ("-o", o)],
        "-o",
        "dataset.num_classes=12",
        "-o",
        f"data.test={json.dumps(str(tiny_data / 'test'))}",
    ]
    env = {
        **os.environ,
        "ZOO_RELEASED_WEIGHTS_URL": f"{url}/nextvlad_youtube8m.tar.gz",
        "ZOO_CACHE_DIR": str(tmp_path / "cache"),
    }
    released = subprocess.run(
        [ZOO, *common, "--output", str(tmp_path / "released")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert released.returncode == 0, released.stderr[-2000:]
    assert "paddlevideo-1.x" in released.stderr
    ours = subprocess.run(
        [ZOO, *common, "--weights", str(run), "--output", str(tmp_path / "ours")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert ours.returncode == 0, ours.stderr[-2000:]
    a = json.loads((tmp_path / "released" / "eval_results.json").read_text())["metrics"]
    b = json.loads((tmp_path / "ours" / "eval_results.json").read_text())["metrics"]
    for key in ("gap", "hit_at_1", "perr", "map"):
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
