"""ONNX exports: the checked Paddle program converted with paddle2onnx and run by ONNX Runtime.

An ONNX export directory holds ``model.onnx``, ``metadata.json`` (the Paddle export's, with ``"runtime":
"onnxruntime"``, the ONNX file's checksum and an ``onnx`` section naming the converter and opset) and,
optionally, ``vocabulary.csv``. The model has the same inputs and output as the Paddle program (see
:mod:`zoo.engine.export.tracing`), so :class:`OnnxModel` takes the same batches.

How it is made: :func:`zoo.engine.export.tracing.export_model` writes and checks the Paddle program (PIR ``.json``
+ ``.pdiparams``, what paddle 3.x writes) in a scratch directory; paddle2onnx converts it in a child process
(a program with an operator paddle2onnx lacks makes it abort the whole process before it names the
operator; after a failure the program's operators are compared with its list to name them); the ONNX model
is then compared with the
dygraph model through ONNX Runtime on the same probe batches and tolerance as the Paddle export, and the
directory appears only when that passes.

SEQUENCE_LENGTH_NOTE: paddle2onnx 2.1.0 converts paddle's ``rnn`` operator (``nn.LSTM``/``nn.GRU``) to ONNX
LSTM/GRU nodes without their ``sequence_lens`` input, so a recurrent model given ``sequence_length`` runs
over the padding in ONNX (the LSTM baselines came out wrong by 0.02-0.03 on padded batches). The converted
graph is repaired here: each recurrent node gets the (int32) tensor that fed the paddle operator's
``SequenceLength``, found in the Paddle program and named the way paddle2onnx names converted values.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_dir
from zoo.config import ZooConfig
from zoo.engine.export.predictor import ExportedModel
from zoo.errors import UsageError, ZooError

ONNX_FILE = "model.onnx"
RUNTIME = "onnxruntime"
OPSET = 17
"""ONNX opset the models are converted to (ONNX Runtime >= 1.14 runs it; paddle2onnx raises it if needed)."""

_INSTALL = "install the onnx extra: pip install 'yt8m-zoo[onnx]'"
_CONVERT_TIMEOUT = 600


def converter_versions() -> dict[str, str]:
    """Versions of the conversion and runtime packages (recorded in the metadata); UsageError if missing."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("paddle2onnx", "onnx", "onnxruntime"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            raise UsageError(f"ONNX export needs {name}, which is not installed; {_INSTALL}") from None
    return out


# ---------------------------------------------------------------------------------------------------------
# The Paddle program (PIR JSON, as paddle.jit.save writes it)


def _ops(node: Any) -> Iterator[dict[str, Any]]:
    """Every operation of a PIR JSON program in program order, including those in nested blocks."""
    if isinstance(node, dict):
        if "#" in node and "I" in node and "O" in node:
            yield node
        for key in ("program", "regions", "blocks", "ops"):
            if key in node:
                yield from _ops(node[key])
    elif isinstance(node, list):
        for item in node:
            yield from _ops(item)


def _attribute(op: dict[str, Any], name: str) -> Any:
    for attr in op.get("A") or []:
        if isinstance(attr, dict) and attr.get("N") == name:
            return (attr.get("AT") or {}).get("D")
    return None


# paddle2onnx lists the operators it converts under their pre-PIR names; these PIR names map onto them
_LEGACY_NAMES = {
    "add": "elementwise_add",
    "subtract": "elementwise_sub",
    "multiply": "elementwise_mul",
    "divide": "elementwise_div",
    "floor_divide": "elementwise_floordiv",
    "remainder": "elementwise_mod",
    "minimum": "elementwise_min",
    "maximum": "elementwise_max",
    "matmul": "matmul_v2",
    "unsqueeze": "unsqueeze2",
    "expand": "expand_v2",
    "flatten": "flatten_contiguous_range",
    "arange": "range",
    "argmax": "arg_max",
    "topk": "top_k_v2",
    "sum": "reduce_sum",
    "mean": "reduce_mean",
    "max": "reduce_max",
    "min": "reduce_min",
    "prod": "reduce_prod",
    "any": "reduce_any",
    "all": "reduce_all",
    "add_n": "sum",
    "numel": "size",
    "hardswish": "hard_swish",
    "hardsigmoid": "hard_sigmoid",
    "grid_sample": "grid_sampler",
    "nonzero": "where_index",
    "repeat_interleave_with_tensor_index": "repeat_interleave",
}
_STRUCTURAL = {"data", "fetch", "parameter", "if", "while", "yield", "has_elements", "select_input"}


def _operator_name(op: dict[str, Any]) -> str | None:
    """The PIR operator name of an operation (``1.cast`` -> ``cast``, ``0.combine`` -> ``builtin_combine``)."""
    dialect, _, name = op["#"].partition(".")
    if not name:
        return None  # "p": a parameter
    return name if dialect == "1" else f"builtin_{name}" if dialect == "0" else op["#"]


def unsupported_operators(program: dict[str, Any], supported: set[str]) -> list[str]:
    """The program's operators that paddle2onnx has no conversion for (``supported``: its list), sorted."""
    missing = set()
    for op in _ops(program):
        name = _operator_name(op)
        if name is None or name in _STRUCTURAL:
            continue
        candidates = {name, name.rstrip("_"), _LEGACY_NAMES.get(name.rstrip("_"), name)}
        if not candidates & supported:
            missing.add(name)
    return sorted(missing)


def _sequence_length_sources(program: dict[str, Any]) -> list[tuple[int, str | None]]:
    """For every ``rnn`` operation in order: (its layer count, the converted name of its SequenceLength)."""
    ops = list(_ops(program))
    producers: dict[int, str] = {}
    ordinal: dict[str, int] = {}
    for op in ops:
        name = _operator_name(op)
        if name is None:
            continue
        k = ordinal.get(name, 0)
        ordinal[name] = k + 1
        for j, out in enumerate(op.get("O") or []):
            if not isinstance(out, dict) or "%" not in out:
                continue
            producers[out["%"]] = (
                str(_attribute(op, "name")) if name == "data" else f"p2o.pd_op.{name}.{k}.{j}"
            )
    out = []
    for op in ops:
        if op["#"] != "1.rnn":
            continue
        inputs = op.get("I") or []
        value = inputs[3].get("%") if len(inputs) > 3 and isinstance(inputs[3], dict) else None
        layers = int(_attribute(op, "num_layers") or 1)
        out.append((layers, producers.get(value) if value else None))
    return out


def restore_sequence_lengths(model: Any, program: dict[str, Any]) -> int:
    """Give the converted LSTM/GRU nodes the sequence lengths paddle2onnx dropped (SEQUENCE_LENGTH_NOTE).

    Returns how many nodes were changed. A length tensor that cannot be found in the ONNX graph is a
    ZooError: the model would silently run over the padding.
    """
    import onnx

    sources = _sequence_length_sources(program)
    graph = model.graph
    nodes = [n for n in graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    if sum(layers for layers, _ in sources) != len(nodes):
        if any(source for _, source in sources):
            raise ZooError(
                f"the Paddle program has {len(sources)} rnn operation(s) with "
                f"{sum(layers for layers, _ in sources)} layers, the ONNX graph {len(nodes)} recurrent "
                f"nodes: the sequence lengths cannot be restored (see SEQUENCE_LENGTH_NOTE in {__name__})"
            )
        return 0
    known = {name for node in graph.node for name in node.output} | {i.name for i in graph.input}
    changed = 0
    position = 0
    for layers, source in sources:
        group, position = nodes[position : position + layers], position + layers
        if source is None:
            continue
        if source not in known:
            raise ZooError(
                f"the sequence lengths of a recurrent layer come from {source!r}, which the ONNX graph "
                f"paddle2onnx wrote does not contain; the layer cannot be converted faithfully (see "
                f"SEQUENCE_LENGTH_NOTE in {__name__})"
            )
        lengths = f"{source}.sequence_lens.int32"
        if lengths not in known:
            graph.node.append(
                onnx.helper.make_node("Cast", [source], [lengths], to=onnx.TensorProto.INT32, name=lengths)
            )
            known.add(lengths)
        for node in group:
            inputs = list(node.input) + [""] * max(0, 5 - len(node.input))
            inputs[4] = lengths
            del node.input[:]
            node.input.extend(inputs)
            changed += 1
    if changed:
        _sort_topologically(graph)
    return changed


def _sort_topologically(graph: Any) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (ONNX requires it)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ZooError("the converted ONNX graph has a cycle or an input nothing produces")
        pending = rest
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


# ---------------------------------------------------------------------------------------------------------
# Conversion (in a child process: paddle2onnx aborts the process on some programs)


def _convert_child(program: str, params: str, output: str, opset: str) -> int:
    """Child process: convert without paddle2onnx's post-processing (its default, polygraphy, pip-installs
    packages at run time), write the bytes; exit status 0 only when the file was written."""
    import paddle2onnx

    data = paddle2onnx.export(program, params, None, opset_version=int(opset), enable_onnx_checker=True)
    if not data:
        print("paddle2onnx returned no model", file=sys.stderr)
        return 1
    Path(output).write_bytes(data)
    return 0


def convert(paddle_dir: Path, output: Path, opset: int = OPSET) -> dict[str, Any]:
    """Convert the Paddle export in ``paddle_dir`` to ``output`` (ONNX); returns conversion facts.

    A program with operators paddle2onnx has no conversion for is a ZooError naming them.
    """
    import onnx

    from zoo.engine.export.metadata import PARAMS_FILE, PROGRAM_FILE

    converter_versions()
    program_path = paddle_dir / PROGRAM_FILE
    program = json.loads(program_path.read_text(encoding="utf-8"))
    code = "import sys; from zoo.engine.export.onnx import _convert_child; sys.exit(_convert_child(*sys.argv[1:]))"
    args = [str(program_path), str(paddle_dir / PARAMS_FILE), str(output), str(opset)]
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_CONVERT_TIMEOUT,
            env={**os.environ, "POLYGRAPHY_AUTOINSTALL_DEPS": "0"},
        )
    except subprocess.TimeoutExpired:
        raise ZooError(
            f"paddle2onnx did not finish converting {program_path} in {_CONVERT_TIMEOUT} s"
        ) from None
    if done.returncode != 0 or not output.is_file():
        # paddle2onnx aborts on an operator it lacks before its message reaches the pipe: name them here
        from paddle2onnx.paddle2onnx_cpp2py_export import get_all_supported_operators_pir

        version = converter_versions()["paddle2onnx"]
        missing = unsupported_operators(program, set(get_all_supported_operators_pir()))
        if missing:
            raise ZooError(
                f"the model cannot be expressed in ONNX: paddle2onnx {version} has no conversion for the "
                f"Paddle operator(s) {', '.join(missing)} (in {program_path.name}); export for Paddle "
                f"Inference instead (zoo export --format paddle) or change the model to avoid them"
            )
        raise ZooError(
            f"paddle2onnx {version} could not convert {program_path.name} (exit status {done.returncode}): "
            f"{_converter_error(done.stdout + done.stderr)}"
        )
    model = onnx.load(str(output))
    repaired = restore_sequence_lengths(model, program)
    if repaired:
        onnx.checker.check_model(model)
        onnx.save(model, str(output))
    return {
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "rnn_fixed": repaired,
    }


def _converter_error(text: str) -> str:
    """The informative lines of paddle2onnx's output (it logs errors, then fails in its own cleanup)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keep = [
        line
        for line in lines
        if any(word in line for word in ("ERROR", "Error", "error", "not supported", "Failed"))
        and "Warning" not in line
    ]
    return " | ".join((keep or lines[-3:])[-4:])[:800] or "no message"


# ---------------------------------------------------------------------------------------------------------
# Export


def _dygraph_model(
    cfg: ZooConfig, weights: str | None, weights_sha256: str | None, allow_random: bool
) -> tuple[Any, dict[str, Any]]:
    """The model to export and compare with (its random initialisation when ``weights`` is None), and
    the ``weights`` record of the metadata."""
    from zoo.engine.export.tracing import dygraph_model

    if weights is None and not allow_random:
        raise UsageError(
            f"exporting {cfg.model_name} without --weights would export untrained random weights; give "
            f"--weights or pass --allow-random if that is what you want"
        )
    return dygraph_model(cfg, weights, weights_sha256)


def check_against(model: Any, directory: Path, metadata: dict[str, Any]) -> float:
    """Max |difference| between ONNX Runtime's CPU predictions and the dygraph model's on the probe batches."""
    from zoo.engine.export.checks import max_difference

    return max_difference(OnnxModel(directory, metadata).predict, model, metadata, "the ONNX model")


def export_onnx(
    cfg: ZooConfig,
    weights: str | None,
    output: str | os.PathLike,
    *,
    vocabulary: str | os.PathLike | None = None,
    allow_random: bool = False,
    weights_sha256: str | None = None,
    frames: str = "auto",
    opset: int = OPSET,
    quiet: bool = True,
) -> Path:
    """Like :func:`zoo.engine.export.tracing.export_model`, but writes ``model.onnx`` for ONNX Runtime.

    The Paddle program is exported and checked first, converted, and the ONNX model is checked against the
    dygraph model with the same probe batches and tolerance; ``output`` appears only when all that passed.
    """
    from zoo.engine.export.checks import CHECK_TOLERANCE, probe_batches
    from zoo.engine.export.metadata import METADATA_FILE, VOCABULARY_FILE, check_output_dir, file_record
    from zoo.engine.export.tracing import export_model
    from zoo.engine.runs.checkpoint import save_weights

    output = Path(output)
    check_output_dir(output)
    versions = converter_versions()
    with tempfile.TemporaryDirectory(prefix="zoo-onnx-") as scratch:
        # one model for the Paddle export and both checks (a random initialisation is made only once)
        model, weights_info = _dygraph_model(cfg, weights, weights_sha256, allow_random)
        save_weights(Path(scratch) / "weights.safetensors", model)
        paddle_dir = export_model(
            cfg,
            str(Path(scratch) / "weights.safetensors"),
            Path(scratch) / "paddle",
            vocabulary=vocabulary,
            frames=frames,  # type: ignore[arg-type]
            quiet=True,
        )
        if not quiet and weights_info["source"]:
            print(f"weights: {weights_info['source']} ({weights_info['format']})", file=sys.stderr)
        metadata = json.loads((paddle_dir / METADATA_FILE).read_text(encoding="utf-8"))
        metadata["weights"] = weights_info
        with atomic_dir(output, what="the ONNX export") as tmp:
            t0 = time.perf_counter()
            facts = convert(paddle_dir, tmp / ONNX_FILE, opset)
            metadata["runtime"] = RUNTIME
            metadata["files"] = {ONNX_FILE: file_record(tmp / ONNX_FILE)}
            metadata["onnx"] = {
                "opset": facts["opset"],
                "converter": f"paddle2onnx {versions['paddle2onnx']}",
                "onnx": versions["onnx"],
                "onnxruntime": versions["onnxruntime"],
                "sequence_lengths_restored": facts["rnn_fixed"],
                "convert_seconds": round(time.perf_counter() - t0, 1),
            }
            paddle_check = metadata.pop("check")
            diff = check_against(model, tmp, metadata)
            if not diff <= CHECK_TOLERANCE:
                raise ZooError(
                    f"model {cfg.model_name!r}: the ONNX model's predictions differ from the model's by up to "
                    f"{diff:.3g} (tolerance {CHECK_TOLERANCE:g}) although the Paddle program matched "
                    f"({paddle_check['max_abs_diff']:.2g}): paddle2onnx {versions['paddle2onnx']} converts "
                    f"one of its operators differently; export for Paddle Inference instead. Nothing was "
                    f"written to {output}"
                )
            metadata["check"] = {
                "max_abs_diff": diff,
                "tolerance": CHECK_TOLERANCE,
                "precision": "fp32",
                "runtime": f"onnxruntime {versions['onnxruntime']} CPUExecutionProvider",
                "batches": [
                    list(map(int, b["num_frames"]))
                    for b in probe_batches(cfg.dataset.features, cfg.dataset.max_frames)
                ],
                "paddle_max_abs_diff": paddle_check["max_abs_diff"],
            }
            if (paddle_dir / VOCABULARY_FILE).is_file():
                shutil.copyfile(paddle_dir / VOCABULARY_FILE, tmp / VOCABULARY_FILE)
            (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n")
    return output


# ---------------------------------------------------------------------------------------------------------
# Prediction


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    kind, _, _ = device.partition(":")
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind != "gpu":
        raise UsageError(f"--device {device!r}: expected cpu, gpu or gpu:N")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise UsageError(
            "this onnxruntime has no CUDA provider: install onnxruntime-gpu, or predict with --device cpu"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxModel(ExportedModel):
    """An ONNX export run by ONNX Runtime; takes the same batches as :class:`ExportedModel`."""

    model_file = ONNX_FILE

    def __init__(
        self,
        root: Path,
        metadata: dict[str, Any],
        *,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError(
                f"{root} is an ONNX export and onnxruntime is not installed; {_INSTALL}"
            ) from None
        from zoo.engine.runtime import cpu_count

        if precision != "fp32":
            raise UsageError(f"--precision {precision}: ONNX exports run in fp32 only; use --precision fp32")
        self.root = Path(root)
        self.metadata = metadata
        self.device = device
        self.precision = precision
        self.features = dict(metadata["features"])
        self.num_classes = metadata["num_classes"]
        self.max_frames = metadata["max_frames"]
        self.static_frames = metadata["frames"] == "static"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_count()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # no warnings about unused initializers paddle2onnx leaves behind
        path = self.root / ONNX_FILE
        try:
            self._session = ort.InferenceSession(str(path), options, providers=_providers(device))
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ZooError(
                f"{path}: ONNX Runtime cannot load the model ({str(exc).splitlines()[0][:300]}); the export is "
                f"damaged or needs a newer onnxruntime; re-export it with `zoo export --format onnx`"
            ) from None
        names = [i.name for i in self._session.get_inputs()]
        if sorted(names) != sorted(metadata["inputs"]):
            raise ZooError(
                f"{path} takes inputs {names} but {self.root / 'metadata.json'} lists {metadata['inputs']}: "
                f"the files come from different exports; re-export with `zoo export --format onnx`"
            )
        self._output = self._session.get_outputs()[0].name

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        (out,) = self._session.run([self._output], dict(zip(self.metadata["inputs"], arrays)))
        return out

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.root)!r}, model={self.metadata['model']!r}, device={self.device!r})"


def load(
    root: Path, meta: dict[str, Any], *, device: str, precision: str, threads: int | None, verify: bool
) -> OnnxModel:
    """What :func:`zoo.engine.export.predictor.load_exported` calls for an export whose runtime is onnxruntime."""
    check_files(root, meta, verify_checksums=verify)
    return OnnxModel(root, meta, device=device, precision=precision, threads=threads)


def check_files(root: Path, meta: dict[str, Any], *, verify_checksums: bool) -> None:
    """``model.onnx`` exists with the size (and SHA-256) recorded in the metadata."""
    from zoo.engine.export.metadata import check_file_records

    redo = "re-export it with `zoo export --format onnx`"
    check_file_records(root, meta, (ONNX_FILE,), redo, verify_checksums)
