"""zoo export --precision int8: quantized ONNX exports, their checks, their data and the plugins' policies.

Everything runs for real: tiny models exported through paddle2onnx, quantized by ONNX Runtime's tools and
checked on TFRecords written here; `zoo predict --model` reads the result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import TINY_CLASSES, tiny_dataset
from export_helpers import FEATURES, MAX_FRAMES, TINY, tiny_config, trained_weights

from zoo.config import load_config
from zoo.errors import DataError, UsageError

pytest.importorskip("paddle2onnx")
pytest.importorskip("onnxruntime.quantization")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("int8") / "data")


def nextvlad_config(data: Path, **extra):
    raw = {
        "dataset": {"preset": "yt8m", "num_classes": TINY_CLASSES, "max_frames": MAX_FRAMES},
        "model": {"name": "nextvlad", **TINY["nextvlad"]},
        "data": {"train": [str(data / "train")], "valid": [str(data / "validate")]},
        "eval": {"batch_size": 8},
        **extra,
    }
    return load_config(raw=raw, source="test")


def test_cli_int8_export_passes_its_checks_and_predicts(paddle, data, tmp_path, capsys):
    from zoo.cli import main
    from zoo.engine.export.onnx import OnnxModel
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.runs.checkpoint import WEIGHTS_FILE

    run = tmp_path / "run"  # a run directory as `zoo train` leaves it: its config names the data splits
    run.mkdir()
    cfg = nextvlad_config(data)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    trained_weights(cfg, run / WEIGHTS_FILE)
    export = tmp_path / "int8"
    assert main(["export", "--weights", str(run), "--precision", "int8", "--output", str(export)]) == 0
    out = capsys.readouterr().out
    assert "GAP int8 / fp32" in out and "dynamic: 12 of 16 products" in out

    meta = json.loads((export / "metadata.json").read_text())
    assert meta["precision"] == "int8" and meta["runtime"] == "onnxruntime"
    check = meta["check"]
    assert check["precision"] == "int8" and 0 < check["mean_abs_diff"] <= check["tolerance"]
    assert check["mean_abs_diff"] <= check["max_abs_diff"] < 1
    gap = check["gap"]
    assert gap["videos"] == 24 and "validate" in gap["data"]
    assert gap["fp32"] - gap["int8"] <= gap["max_drop"] and gap["difference"] == gap["int8"] - gap["fp32"]
    # NeXtVLAD's policy: the products after the pooling (named parameters) and the frame-level products
    # (matrices derived from the parameters: 4 per feature) are int8; dynamic quantization leaves the
    # products of two activations (the pooling by the assignments, 2 per feature) in fp32
    products = meta["quantization"]["products"]
    assert {p["parameter"] for p in products if p["kind"] == "parameter" and p["int8"]} == {
        "hidden.weight",
        "gating.squeeze.weight",
        "gating.excite.weight",
        "head.fc.weight",
    }
    kinds = {k: [p["int8"] for p in products if p["kind"] == k] for k in ("derived", "activations")}
    assert kinds == {"derived": [True] * 8, "activations": [False] * 4}
    assert meta["files"]["model.onnx"]["bytes"] < meta["quantization"]["fp32_bytes"]

    exported = load_exported(export)
    assert isinstance(exported, OnnxModel)
    assert (
        main(
            [
                "predict",
                "--model",
                str(export),
                "--filelist",
                str(data / "test"),
                "--output",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(len(r["classes"]) == len(r["scores"]) > 0 for r in rows)
    assert all(
        np.isfinite(r["scores"]).all() and 0 <= min(r["scores"]) <= max(r["scores"]) <= 1 for r in rows
    )


def test_static_int8_export_calibrates_on_training_batches(paddle, data, tmp_path):
    from zoo.engine.export.quantize import Int8Options, export_int8

    cfg = nextvlad_config(data)
    weights = trained_weights(cfg, tmp_path / "w.safetensors")
    out = export_int8(
        cfg, str(weights), tmp_path / "static", options=Int8Options(mode="static", calibration_batches=2)
    )
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["quantization"]["mode"] == "static"
    assert "calibrated on 2 batches of data.train" in meta["quantization"]["activations"]
    assert meta["check"]["mean_abs_diff"] <= meta["check"]["tolerance"]
    gap = meta["check"]["gap"]
    assert gap["fp32"] - gap["int8"] <= gap["max_drop"]
    # probabilities judged against the fp32 export on the GAP check's videos; the probes only recorded
    assert meta["check"]["compared_with"].startswith("the fp32 export")
    assert np.isfinite(meta["check"]["probe_max_abs_diff"])
    # static, NeXtVLAD's policy: the 12 products with constant matrices are int8, the 4 of two activations
    # (the pooling by the assignments) stay fp32
    products = meta["quantization"]["products"]
    chosen = {p["node"] for p in products if p["int8"]}
    assert len(products) == 16 and len(chosen) == 12
    assert all(p["kind"] == "activations" for p in products if not p["int8"])

    # in the graph (QDQ form): each chosen product reads two dequantized int8 tensors; the others read at
    # least one fp32 activation (the assignments; the frames they pool may be the chosen products'
    # dequantized input); no product's output is quantized again; BatchNorm and softmax stay fp32
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    made_by = {o: n for n in graph.node for o in n.output}
    matmuls = {n.name: n for n in graph.node if n.op_type == "MatMul"}
    assert set(matmuls) >= chosen
    for name, node in matmuls.items():
        dequantized = [i in made_by and made_by[i].op_type == "DequantizeLinear" for i in node.input[:2]]
        assert all(dequantized) if name in chosen else not all(dequantized), name
    consumers = {i: n.op_type for n in graph.node for i in n.input}
    assert all(consumers.get(n.output[0]) != "QuantizeLinear" for n in matmuls.values())
    assert {n.op_type for n in graph.node} >= {"Softmax", "BatchNormalization"}


def test_the_policy_chooses_products_by_kind(paddle, data, tmp_path):
    import onnx

    from zoo.contracts import Int8Policy
    from zoo.engine.export.onnx import ONNX_FILE, export_onnx
    from zoo.engine.export.quantize import Int8Options, _quantize, constants_to_initializers, select_products
    from zoo.testing import trained_model

    cfg = nextvlad_config(data)
    model = trained_model(cfg)
    weights = trained_weights(cfg, tmp_path / "w.safetensors")
    fp32 = onnx.load(str(export_onnx(cfg, str(weights), tmp_path / "fp32") / ONNX_FILE))
    graph = fp32.graph
    constants_to_initializers(graph)

    def count(policy: Int8Policy, mode: str) -> int:
        return sum(p["int8"] for p in select_products(graph, model, policy, mode))

    named = ("hidden.weight", "gating.squeeze.weight", "gating.excite.weight", "head.fc.weight")
    assert count(Int8Policy(quantize=named), "static") == 4  # the policy before the frame-level products
    assert count(Int8Policy(quantize=named, derived=True), "static") == 12
    assert count(Int8Policy(quantize=named, derived=True, activations=True), "dynamic") == 16
    assert count(Int8Policy(quantize=named, derived=True, activations=True), "static") == 16
    assert count(Int8Policy(), "static") == 12  # no policy: every product with a constant matrix
    assert count(model.int8_policy(), "static") == 12  # NeXtVLAD's own: the pooling stays fp32
    assert count(model.int8_policy(), "dynamic") == 12
    # dynamic, the pooling too: ONNX Runtime's quantizer takes the 12, the 4 of two activations are rewritten
    prepared = tmp_path / "prepared.onnx"
    onnx.save(fp32, str(prepared))
    every = Int8Policy(quantize=named, derived=True, activations=True)
    products = select_products(graph, model, every, "dynamic")
    _quantize(
        prepared,
        tmp_path / "int8.onnx",
        [p["node"] for p in products if p["int8"]],
        Int8Options(),
        None,
        activations=[p["node"] for p in products if p["kind"] == "activations"],
    )
    ops = [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    assert "MatMul" not in ops and ops.count("MatMulIntegerToFloat") >= 4


def write_float_videos(path: Path, videos: list[tuple[str, np.ndarray, np.ndarray]]) -> Path:
    """A TFRecord of SequenceExamples with float frame features (as unquantized exports store them)."""
    from zoo_yt8m_data.tfrecord import frame
    from zoo_yt8m_data.wire import encode_sequence_example

    path.parent.mkdir(parents=True, exist_ok=True)
    payloads = [
        encode_sequence_example({"id": vid.encode(), "labels": [1, 3]}, {"rgb": rgb, "audio": audio})
        for vid, rgb, audio in videos
    ]
    path.write_bytes(b"".join(frame(p) for p in payloads))
    return path


def small_config(tmp_path: Path, name: str = "mean-pool"):
    cfg = tiny_config(name)
    rng = np.random.default_rng(0)
    videos = [
        (
            f"v{i}",
            rng.normal(size=(5, FEATURES["rgb"])).astype(np.float32),
            rng.normal(size=(5, 8)).astype(np.float32),
        )
        for i in range(6)
    ]
    write_float_videos(tmp_path / "valid" / "a.tfrecord", videos)
    bad = [*videos[:3], ("broken", videos[3][1].copy(), videos[3][2])]
    bad[3][1][2, 4] = np.nan
    write_float_videos(tmp_path / "train_nan" / "a.tfrecord", bad)
    (tmp_path / "train_empty").mkdir()
    (tmp_path / "train_empty" / "a.tfrecord").write_bytes(b"")
    return cfg.with_overrides(
        {"data": {"valid": [str(tmp_path / "valid")]}, "eval": {"batch_size": 2}}, "test"
    )


def test_broken_calibration_data_is_a_clear_error(paddle, tmp_path):
    from zoo.engine.export.quantize import Int8Options, export_int8

    cfg = small_config(tmp_path)
    static = Int8Options(mode="static")
    with pytest.raises(
        DataError,
        match=r"int8 calibration: video 'broken' of data.train: .*train_nan has NaN or infinite values in feature 'rgb'",
    ):
        export_int8(
            cfg.with_overrides({"data": {"train": [str(tmp_path / "train_nan")]}}, "t"),
            None,
            tmp_path / "out",
            allow_random=True,
            options=static,
        )
    with pytest.raises(DataError, match=r"int8 calibration: data.train: .*train_empty holds no videos"):
        export_int8(
            cfg.with_overrides({"data": {"train": [str(tmp_path / "train_empty")]}}, "t"),
            None,
            tmp_path / "out",
            allow_random=True,
            options=static,
        )
    with pytest.raises(UsageError, match="int8 calibration needs the train split"):
        export_int8(cfg, None, tmp_path / "out", allow_random=True, options=static)
    # the GAP check's labelled data is read the same way
    with pytest.raises(DataError, match="the int8 GAP check: video 'broken'"):
        export_int8(
            cfg.with_overrides({"data": {"valid": [str(tmp_path / "train_nan")]}}, "t"),
            None,
            tmp_path / "out",
            allow_random=True,
        )
    assert not (tmp_path / "out").exists()


def test_a_model_whose_plugin_forbids_int8_is_refused(paddle, tmp_path, monkeypatch):
    import zoo
    from zoo.cli import main
    from zoo.contracts import Int8Policy
    from zoo.engine.export.quantize import export_int8

    cls = zoo.plugin_class("model", "mean-pool")
    monkeypatch.setattr(
        cls,
        "int8_policy",
        lambda self: Int8Policy(allowed=False, reason="its scores are calibrated"),
        raising=False,
    )
    cfg = small_config(tmp_path)
    with pytest.raises(
        UsageError, match="model 'mean-pool' does not allow int8 exports: its scores are calibrated"
    ):
        export_int8(cfg, None, tmp_path / "out", allow_random=True)
    code = main(
        ["export", "mean-pool", "--allow-random", "--precision", "int8", "--output", str(tmp_path / "cli")]
    )
    assert code == 2 and not (tmp_path / "out").exists() and not (tmp_path / "cli").exists()


def test_a_policy_that_selects_nothing_is_refused(paddle, tmp_path, monkeypatch):
    import zoo
    from zoo.contracts import Int8Policy
    from zoo.engine.export.quantize import export_int8

    cls = zoo.plugin_class("model", "mean-pool")
    monkeypatch.setattr(
        cls, "int8_policy", lambda self: Int8Policy(quantize=("no.such.weight",)), raising=False
    )
    with pytest.raises(UsageError, match="selects none of its"):
        export_int8(small_config(tmp_path), None, tmp_path / "out", allow_random=True)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("signed", [False, True])
def test_dynamic_products_of_two_activations_are_close_to_fp32(transposed, signed):
    """quantize_activation_products: a batched product of two activations in int8, against numpy in fp32;
    rows whose values differ by orders of magnitude keep their precision, and operands at the top of their
    range do not saturate (uint8 255 x int8 127 pairs would, on a CPU without VNNI)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from zoo.engine.export.quantize import quantize_activation_products

    rng = np.random.default_rng(0)
    b, m, k, n = 2, 16, 64, 24
    a = rng.uniform(0 if not signed else -1, 1, (b, m, k)).astype(np.float32)
    a *= np.logspace(-3, 0, m, dtype=np.float32)[None, :, None]  # rows of very different sizes
    a[:, 0, :] = 1.0  # the top of the range everywhere: saturates without the 7-bit first operand
    x = rng.uniform(-2, 2, (b, k, n)).astype(np.float32)
    x[:, :, 0] = 2.0
    a_in = np.ascontiguousarray(a.transpose(0, 2, 1)) if transposed else a
    nodes = [helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1], name="t")] if transposed else []
    nodes.append(helper.make_node("MatMul", ["at" if transposed else "a", "x"], ["y"], name="pool"))
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a_in.shape)),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, k, n]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, m, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert quantize_activation_products(model, ["pool"]) == ["pool"]
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    assert "MatMul" not in ops and "MatMulIntegerToFloat" in ops
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"a": a_in, "x": x})
    exact = a @ x
    assert abs(y[:, 0, 0] - exact[:, 0, 0]).max() < 0.01 * abs(exact[:, 0, 0]).max()  # no saturation
    # every row within a few percent of its own size, the smallest rows too
    err = np.abs(y - exact).max(axis=-1) / np.abs(exact).max(axis=-1)
    assert err.max() < 0.05, err.max()
