"""``zoo export --custom-ops``: NeXtVLAD's one-pass assignment kernel as a Paddle custom operator.

The operator is built with paddle's C++ extension builder on first use (into the test's private cache), so
these tests need a C++ compiler; they skip with that reason where there is none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from export_helpers import make_batch, tiny_config, trained_weights
from kernel_helpers import require_compiler

from zoo.errors import ConfigError, UsageError

pytestmark = [
    pytest.mark.integration,  # exports, builds the operator, loads it in a fresh process
    pytest.mark.timeout(600),  # the build, and a fresh process given 300 s
]


@pytest.fixture(autouse=True)
def _compiler() -> None:
    require_compiler("the custom operator")


@pytest.fixture(scope="module")
def custom_export(tmp_path_factory, paddle):
    """A tiny NeXtVLAD exported with and without the operator, from the same trained weights."""
    from zoo.engine.export.tracing import export_model

    root = tmp_path_factory.mktemp("custom-ops")
    cfg = tiny_config("nextvlad")
    weights = trained_weights(cfg, root / "model.safetensors")
    plain = export_model(cfg, str(weights), root / "plain")
    custom = export_model(cfg, str(weights), root / "custom", custom_ops=True)
    return cfg, weights, plain, custom


def test_custom_op_export_predicts_what_the_model_does(custom_export):
    from zoo.engine.export.metadata import read_metadata
    from zoo.engine.export.predictor import load_exported

    cfg, weights, plain, custom = custom_export
    meta = read_metadata(custom)
    assert meta["custom_ops"] is True and read_metadata(plain)["custom_ops"] is False
    assert meta["check"]["max_abs_diff"] <= 1e-5
    program = (custom / "inference.json").read_text()
    assert (
        "zoo_nextvlad_assign" in program
        and "zoo_nextvlad_assign" not in (plain / "inference.json").read_text()
    )
    with_op, without = load_exported(custom), load_exported(plain)
    for lengths in ([7, 2, 12, 1, 5], [3], [4, 4]):  # padded frames, one video, T below max_frames
        batch = make_batch(lengths, seed=len(lengths))
        np.testing.assert_allclose(with_op.predict(batch), without.predict(batch), rtol=0, atol=1e-6)


def test_mix_nextvlad_exports_with_the_operator(paddle, tmp_path):
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.export.tracing import export_model

    cfg = tiny_config("mix-nextvlad")
    weights = trained_weights(cfg, tmp_path / "model.safetensors")
    plain = load_exported(export_model(cfg, str(weights), tmp_path / "plain"))
    custom = export_model(cfg, str(weights), tmp_path / "custom", custom_ops=True)
    assert (custom / "inference.json").read_text().count("zoo_nextvlad_assign") >= 2  # every branch's layers
    batch = make_batch([7, 2, 12], seed=4)
    np.testing.assert_allclose(load_exported(custom).predict(batch), plain.predict(batch), rtol=0, atol=1e-6)


def test_a_fresh_process_registers_the_operator_before_loading(custom_export):
    """``load_exported`` registers the operator itself: a new process that never exported can predict."""
    _, _, plain, custom = custom_export
    script = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from export_helpers import make_batch\n"
        "from zoo.engine.export.predictor import load_exported\n"
        "batch = make_batch([5, 2], seed=9)\n"
        "a = load_exported(sys.argv[1]).predict(batch)\n"
        "b = load_exported(sys.argv[2]).predict(batch)\n"
        "print(json.dumps(float(abs(a - b).max())))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(custom), str(plain), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),  # the same private cache: the operator is loaded from it, not rebuilt
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) <= 1e-6


def test_the_operator_checks_its_inputs(paddle):
    from zoo_nextvlad.custom_op import load

    op = load().zoo_nextvlad_assign
    import paddle

    logits = paddle.randn([2, 3, 4 * 5 + 4])
    mask = paddle.to_tensor([[1, 1, 0], [1, 0, 0]], dtype="float32")
    bias = paddle.zeros([24])
    out = op(logits, mask, bias, 4, 5)
    assert out.shape == [2, 3, 20]
    assert not out.numpy()[0, 2].any() and not out.numpy()[1, 1:].any()  # padded frames: zeros
    # each frame's weights per group sum to its attention: softmax rows times sigmoid(attention logit)
    z = logits.numpy()[0, 0]
    attention = 1 / (1 + np.exp(-z[20:]))
    np.testing.assert_allclose(out.numpy()[0, 0].reshape(5, 4).sum(0), attention, rtol=1e-5)
    with pytest.raises(Exception, match="expected 24"):
        op(paddle.randn([2, 3, 23]), mask, bias, 4, 5)
    with pytest.raises(Exception, match="float32"):
        op(logits.astype("float64"), mask, bias, 4, 5)


def test_custom_ops_refusals(custom_export, tmp_path):
    from zoo.engine.export.tracing import export_model

    _, weights, _, custom = custom_export
    with pytest.raises(UsageError, match="has no custom operators"):
        export_model(tiny_config("mean-pool"), None, tmp_path / "m", allow_random=True, custom_ops=True)
    expanded = tiny_config("nextvlad")
    expanded.model["formulation"] = "expanded"
    with pytest.raises(ConfigError, match="factored formulation only"):
        export_model(expanded, str(weights), tmp_path / "e", custom_ops=True)
    assert not (tmp_path / "e").exists()  # nothing written
    from zoo.engine.export.metadata import read_metadata
    from zoo.engine.export.predictor import ExportedModel

    with pytest.raises(UsageError, match="custom CPU operators"):  # (on a GPU machine; here paddle has none)
        ExportedModel(custom, read_metadata(custom), device="gpu")


def test_cli_custom_ops_with_onnx_is_a_usage_error(tmp_path, capsys):
    from zoo.cli import main

    args = ["export", "nextvlad", "--allow-random", "--format", "onnx", "--custom-ops"]
    code = main([*args, "--output", str(tmp_path / "o")])
    assert code == 2
    assert "ONNX exports use standard operators only" in capsys.readouterr().err


def test_a_failed_build_says_what_to_do(monkeypatch, paddle):
    import paddle.utils.cpp_extension as builder
    from zoo_nextvlad import custom_op

    from zoo.errors import ZooError

    def broken(**_):
        raise RuntimeError("command 'c++' failed: No such file or directory")

    monkeypatch.setattr(custom_op, "_loaded", None)
    monkeypatch.setattr(builder, "load", broken)
    with pytest.raises(
        ZooError, match="could not build NeXtVLAD's custom operator .*export without --custom-ops"
    ):
        custom_op.load()


def test_an_interrupted_build_is_started_again(monkeypatch, paddle):
    """A build directory without the completion marker (a build killed halfway) is cleared and built again;
    a completed one is reused as it is."""
    import types

    import paddle.utils.cpp_extension as builder
    from zoo_nextvlad import custom_op

    directory = custom_op.build_directory()
    seen = []

    def fake(*, build_directory, **_):
        seen.append(sorted(p.name for p in Path(build_directory).iterdir()))
        (Path(build_directory) / "zoo_nextvlad_ops.so").write_bytes(b"built")
        return types.SimpleNamespace(zoo_nextvlad_assign=None)

    monkeypatch.setattr(builder, "load", fake)
    monkeypatch.setattr(custom_op, "build_directory", lambda: directory.with_name("interrupted-test"))
    target = directory.with_name("interrupted-test")
    target.mkdir(parents=True, exist_ok=True)
    (target / "half-written.o").write_bytes(b"\0" * 10)
    monkeypatch.setattr(custom_op, "_loaded", None)
    custom_op.load()
    assert seen == [[]]  # the leftovers were removed before building
    assert (target / custom_op.COMPLETE).is_file()
    monkeypatch.setattr(custom_op, "_loaded", None)
    custom_op.load()
    assert seen[1] == [custom_op.COMPLETE, "zoo_nextvlad_ops.so"]  # kept: paddle's builder reuses it
