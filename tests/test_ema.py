"""train.ema_decay (the weight average) and `zoo average` (issue 13)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import tiny_run_overrides
from safetensors import safe_open
from safetensors.numpy import load_file

from zoo.config import load_config
from zoo.engine.train.trainer import Trainer
from zoo.errors import ConfigError

ZOO = str(Path(sys.executable).with_name("zoo"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ZOO, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def tiny_config(data: Path, run_dir: Path, *extra: str):
    return load_config(None, tiny_run_overrides(data, run_dir, *extra), model="nextvlad")


def test_weight_average_follows_its_formula_and_swaps_back_exactly(paddle):
    import paddle

    from zoo.engine.train.ema import WeightAverage

    paddle.seed(0)
    layer = paddle.nn.Linear(3, 2)
    ema = WeightAverage(layer, 0.9)
    expected = layer.weight.numpy().copy()
    for step in range(4):
        layer.weight.set_value(layer.weight.numpy() + 1.0)
        ema.update(layer)
        d = np.float32(min(0.9, (1 + step + 1) / (10 + step + 1)))
        expected = expected * d + layer.weight.numpy() * (np.float32(1) - d)
    np.testing.assert_allclose(ema.shadow["weight"].numpy(), expected, rtol=1e-6)
    live = layer.weight.numpy().copy()
    with ema.applied(layer):
        np.testing.assert_array_equal(layer.weight.numpy(), ema.shadow["weight"].numpy())
    np.testing.assert_array_equal(layer.weight.numpy(), live)


def test_ema_decay_of_one_or_more_is_a_config_error():
    with pytest.raises(ConfigError, match="train.ema_decay"):
        load_config(None, ["dataset.preset=yt8m", "train.ema_decay=1.0"], model="nextvlad")


@pytest.fixture(scope="module")
def ema_run(tiny_data, tmp_path_factory, paddle):
    run = tmp_path_factory.mktemp("ema-run") / "straight"
    Trainer(tiny_config(tiny_data, run, "train.ema_decay=0.9"), progress=False).fit()
    return run


@pytest.mark.integration
def test_resume_with_ema_is_bitwise_and_the_final_weights_are_the_average(
    ema_run, tiny_data, tmp_path, paddle
):
    straight, split = ema_run, tmp_path / "split"
    Trainer(tiny_config(tiny_data, split, "train.ema_decay=0.9", "train.max_iter=11"), progress=False).fit()
    mid = split / "checkpoints" / (split / "latest").read_text().strip()
    assert (mid / "ema.safetensors").is_file() and "ema.safetensors" in (mid / "SHA256SUMS").read_text()
    assert json.loads((mid / "state.json").read_text())["ema_updates"] == 11
    Trainer(tiny_config(tiny_data, split, "train.ema_decay=0.9"), progress=False).fit(
        resume=True, allow_changes=("train.max_iter",)
    )
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(split / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # the run's weights are the average saved with the last checkpoint, not the trained weights
    last = straight / "checkpoints" / (straight / "latest").read_text().strip()
    ema, trained = load_file(str(last / "ema.safetensors")), load_file(str(last / "model.safetensors"))
    assert all(np.array_equal(a[k], ema[k]) for k in a)
    assert any(not np.array_equal(a[k], trained[k]) for k in a)
    with safe_open(str(straight / "model.safetensors"), "np") as f:
        assert f.metadata()["weights"] == "ema"


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_zoo_average_of_two_checkpoints_is_their_mean_and_evaluates(ema_run, tmp_path):
    first, second = sorted((ema_run / "checkpoints").iterdir())
    out = tmp_path / "averaged"
    done = run_cli("average", str(first), str(second), "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    mean = load_file(str(out / "model.safetensors"))
    for key in a:
        expected = ((a[key].astype(np.float64) + b[key]) / 2).astype(a[key].dtype)
        np.testing.assert_array_equal(mean[key], expected, err_msg=key)
    assert json.loads((out / "average.json").read_text())["count"] == 2
    evaluated = run_cli("eval", "--weights", str(out), "--device", "cpu", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "gap" in evaluated.stdout.lower()
    again = run_cli("average", str(first), str(second), "--output", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.timeout(900)
@pytest.mark.integration
def test_zoo_average_refuses_another_shape_naming_the_tensor(ema_run, tmp_path):
    from safetensors.numpy import save_file

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((ema_run / "config.json").read_text())
    arrays = load_file(str(ema_run / "model.safetensors"))
    name = sorted(k for k in arrays if arrays[k].ndim == 2)[0]
    arrays[name] = np.zeros((arrays[name].shape[0] + 1, arrays[name].shape[1]), arrays[name].dtype)
    save_file(arrays, str(other / "model.safetensors"))
    done = run_cli("average", str(ema_run), str(other), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert name in done.stderr and "shape" in done.stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()
