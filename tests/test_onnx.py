"""zoo export --format onnx: every registered model converts and matches dygraph on ONNX Runtime.

Models are exported in tiny configurations with trained-looking weights (as in test_export.py); the ONNX
predictions are compared with the dygraph model's on batches with padding and varying lengths.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from export_helpers import FEATURES, make_batch, tiny_config, trained_weights

import zoo
from zoo.errors import UsageError, ZooError
from zoo.plugins import get_plugins
from zoo.testing import trained_model

pytest.importorskip("paddle2onnx")
pytest.importorskip("onnxruntime")

MODELS = get_plugins().registry("model").names()
pytestmark = pytest.mark.integration  # every test here exports (or reads an export)
RECURRENT = {"lstm": 2, "attention-lstm": 2}  # LSTM nodes whose sequence lengths the export restores


def save(model, path: Path) -> Path:
    from zoo.engine.runs.checkpoint import save_weights

    save_weights(path, model)
    return path


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_dygraph(name, paddle, tmp_path):
    from zoo.engine.export.onnx import ONNX_FILE, OnnxModel, export_onnx
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.infer.loops import dygraph_scorer

    if name not in get_plugins().registry("model"):
        pytest.skip(f"model {name!r} was uninstalled while the tests ran")
    cfg = tiny_config(name)
    model = trained_model(cfg)
    weights = save(model, tmp_path / "model.safetensors")
    out = export_onnx(cfg, str(weights), tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", ONNX_FILE]
    exported = load_exported(out)
    assert isinstance(exported, OnnxModel)
    meta = exported.metadata
    assert meta["runtime"] == "onnxruntime" and meta["weights"]["random_init"] is False
    assert meta["check"]["max_abs_diff"] <= 1e-5 and list(meta["files"]) == [ONNX_FILE]
    assert meta["onnx"]["sequence_lengths_restored"] == RECURRENT.get(name, 0)
    reference = dygraph_scorer(model, cfg.dataset.features)
    for lengths in ([7, 2, 12, 1, 5], [3], [4, 4]):  # padding, one video, T below max_frames
        batch = make_batch(lengths, seed=len(lengths))
        got = exported.predict(batch)
        assert got.shape == (len(lengths), 11) and got.dtype == np.float32
        np.testing.assert_allclose(got, reference(batch), rtol=0, atol=1e-5, err_msg=f"{name} {lengths}")


def test_restoring_sequence_lengths_is_what_makes_lstms_match(paddle, tmp_path):
    """Without the repair (SEQUENCE_LENGTH_NOTE) paddle2onnx's LSTM runs over the padding and differs."""
    import onnx
    import onnxruntime as ort

    from zoo.engine.export.onnx import convert
    from zoo.engine.export.tracing import export_model
    from zoo.engine.infer.loops import dygraph_scorer

    cfg = tiny_config("lstm")
    model = trained_model(cfg)
    paddle_dir = export_model(cfg, str(save(model, tmp_path / "w.safetensors")), tmp_path / "paddle")
    facts = convert(paddle_dir, tmp_path / "fixed.onnx")
    assert facts["rnn_fixed"] == 2
    broken = onnx.load(str(tmp_path / "fixed.onnx"))
    for node in broken.graph.node:
        if node.op_type == "LSTM":
            node.input[4] = ""  # what paddle2onnx 2.1.0 writes
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    batch = make_batch([7, 2, 12, 1, 5])
    feed = {k: batch[k] for k in [*FEATURES, "mask", "num_frames"]}
    expected = dygraph_scorer(model, cfg.dataset.features)(batch)
    fixed = ort.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    unfixed = ort.InferenceSession(str(tmp_path / "broken.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(fixed.run(None, feed)[0], expected, atol=1e-5)
    assert np.abs(unfixed.run(None, feed)[0] - expected).max() > 1e-3


# ---------------------------------------------------------------------------------------------------------
# A model paddle2onnx cannot express


@dataclasses.dataclass
class CumulativeConfig:
    """No options."""


def cumulative_model_class() -> type:
    """Test model: a log-cumulative-sum over frames (paddle2onnx 2.1.0 has no conversion for it)."""
    import paddle

    class Cumulative(paddle.nn.Layer):
        name = "onnx-cumulative-test"
        Config = CumulativeConfig

        def __init__(self, config, spec) -> None:
            super().__init__()
            self.features = dict(spec.features)
            self.fc = paddle.nn.Linear(sum(spec.features.values()), spec.num_classes)

        def forward(self, batch):
            x = paddle.concat([batch[n] for n in self.features], axis=-1) * batch["mask"].unsqueeze(-1)
            return self.fc(paddle.logcumsumexp(x, axis=1).mean(axis=1))

    return Cumulative


class _CumulativePlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(cumulative_model_class())


@pytest.fixture
def cumulative_model():
    plugins = get_plugins()
    plugins.add_plugin(_CumulativePlugin(), name="onnx-test-plugin", distribution="tests")
    try:
        yield "onnx-cumulative-test"
    finally:
        plugins.remove_plugin("onnx-test-plugin")


def test_unsupported_operator_is_named(cumulative_model, paddle, tmp_path):
    from zoo.engine.export.onnx import export_onnx

    cfg = tiny_config(cumulative_model)
    with pytest.raises(ZooError, match="no conversion for the Paddle operator.*logcumsumexp") as info:
        export_onnx(cfg, None, tmp_path / "out", allow_random=True)
    assert "--format paddle" in str(info.value) and not (tmp_path / "out").exists()


def test_no_builtin_operator_is_reported_unsupported(paddle, tmp_path):
    """The diagnosis maps PIR names onto paddle2onnx's list; a false alarm would blame a working operator."""
    from paddle2onnx.paddle2onnx_cpp2py_export import get_all_supported_operators_pir

    from zoo.engine.export.metadata import PROGRAM_FILE
    from zoo.engine.export.onnx import unsupported_operators
    from zoo.engine.export.tracing import export_model

    supported = set(get_all_supported_operators_pir())
    for name in ("nextvlad", "attention-lstm", "dbof"):
        cfg = tiny_config(name)
        out = export_model(cfg, None, tmp_path / name, allow_random=True)
        program = json.loads((out / PROGRAM_FILE).read_text())
        assert unsupported_operators(program, supported) == [], name
    assert unsupported_operators({"ops": [{"#": "1.eigvalsh", "I": [], "O": []}]}, supported) == ["eigvalsh"]


# ---------------------------------------------------------------------------------------------------------
# Loading


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory):
    from zoo.engine.export.onnx import export_onnx
    from zoo.engine.runtime import init_paddle

    init_paddle("cpu")
    root = tmp_path_factory.mktemp("onnx")
    return export_onnx(tiny_config("mean-pool"), None, root / "export", allow_random=True)


def test_damaged_onnx_file_is_named(onnx_export, tmp_path):
    import shutil

    from zoo.engine.export.predictor import load_exported

    copy = tmp_path / "copy"
    shutil.copytree(onnx_export, copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ZooError, match=r"model\.onnx has \d+ bytes"):
        load_exported(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(ZooError, match=r"model\.onnx is missing"):
        load_exported(copy)


def test_onnx_export_runs_fp32_only(onnx_export):
    from zoo.engine.export.predictor import load_exported

    with pytest.raises(UsageError, match="fp32 only"):
        load_exported(onnx_export, precision="bf16")


def test_cli_export_onnx_then_predict_matches_predict_with_weights(paddle, tmp_path, capsys):
    from zoo.cli import main
    from zoo.engine.runs.checkpoint import WEIGHTS_FILE

    data = tmp_path / "data"
    synth = ["data", "synth", "--output", str(data), "--train-videos", "0", "--valid-videos", "0"]
    synth += ["--test-videos", "10", "--classes", "11", "--min-frames", "2", "--max-frames", "14"]
    assert main(synth) == 0
    run = tmp_path / "run"  # a run directory as `zoo train` leaves it: config.json + model.safetensors
    run.mkdir()
    cfg = tiny_config(
        "lstm",
        {"rgb": 1024, "audio": 128},
        data={"test": [str(data / "test")]},
        predict={"batch_size": 4, "top_k": 5},
    )
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    trained_weights(cfg, run / WEIGHTS_FILE)
    export = tmp_path / "export"
    args = ["export", "--format", "onnx", "--weights", str(run), "--output", str(export)]
    assert main([*args, "--vocabulary", str(data / "vocabulary.csv")]) == 0
    assert "onnxruntime" in capsys.readouterr().out
    assert main(["predict", "--weights", str(run), "--output", str(tmp_path / "dygraph")]) == 0
    assert main(["predict", "--model", str(export), "--output", str(tmp_path / "onnx")]) == 0
    a = [json.loads(line) for line in (tmp_path / "dygraph" / "predictions.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "onnx" / "predictions.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 10
    for x, y in zip(a, b):
        assert x["id"] == y["id"] and x["classes"] == y["classes"], x["id"]
        np.testing.assert_allclose(x["scores"], y["scores"], rtol=0, atol=1e-5)
    assert b[0]["names"] and all(b[0]["names"])  # the vocabulary shipped with the ONNX export
    assert main(["predict", "--model", str(export), "--precision", "bf16"]) == 2


def test_export_for_an_unknown_runtime_is_refused(onnx_export, tmp_path):
    import shutil

    from zoo.engine.export.predictor import load_exported

    copy = tmp_path / "copy"
    shutil.copytree(onnx_export, copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["runtime"] = "tensorrt-llm"
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ZooError, match="runtime 'tensorrt-llm' is not one this yt8m-zoo runs"):
        load_exported(copy)
