"""int8 exports: an ONNX export whose large matrix products run in int8 (``zoo export --precision int8``).

How it is made: the model is exported and checked in fp32 exactly as ``zoo export --format onnx`` does
(:func:`zoo.engine.export.onnx.export_onnx`); paddle2onnx writes every parameter as a ``Constant`` node, which
ONNX Runtime's quantizer does not touch, so those become initializers; then the products the model's plugin
chooses (:class:`zoo.contracts.Int8Quantizable`; without a policy: every ``MatMul``/``Gemm`` with a
constant matrix) are quantized by ONNX Runtime's quantization tools:

- ``dynamic`` (the default): int8 weights (per output channel), activations quantized per batch at run time
  (``DynamicQuantizeLinear`` + ``MatMulInteger``); needs no calibration data; products of two activations,
  when the policy asks for them, are rewritten here (:func:`quantize_activation_products`);
- ``static``: int8 weights and activations whose ranges come from calibration batches of the training
  split (QDQ format, min/max calibration).

Which parameter a product's matrix is, is found by its values (a SHA-256 of the array, and of its
transpose), since paddle2onnx names constants after paddle's tensor names, not the model's parameter names.
BatchNorm, softmax and every elementwise operation stay fp32.

The checks, before the directory appears, on labelled data (``data.valid``, or the built-in sample data's
validation split), scored by the fp32 export (itself checked against the model on probe batches) and the
int8 one: (1) their probabilities differ by at most :data:`INT8_TOLERANCE` on average (a bound that
separates int8 rounding from a graph that is wrong overall); (2) the int8 GAP is at most ``max_gap_drop``
below the fp32 GAP. Both GAPs, the data they came from and the difference are written into
``metadata.json`` (``check.gap``), with the mean and the largest probability difference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_dir
from zoo.config import ZooConfig
from zoo.contracts import Int8Policy, Int8Quantizable
from zoo.errors import DataError, UsageError, ZooError

INT8_TOLERANCE = 0.01
"""Largest mean |probability difference| between the int8 and the fp32 export on the GAP check's videos.

The mean, not the largest difference: with NeXtVLAD's frame-level products in int8, a few probabilities of
a few videos move by up to 0.2 (the soft assignments of some frames change) while the mean moves by 1e-3
and GAP by about as much (a reference-size NeXtVLAD trained on the sample data: mean 9.7e-4, largest 0.21,
GAP -0.0013); quality is judged by GAP (``max_gap_drop``), this bound catches a graph whose probabilities
are wrong overall. The largest difference is kept in the metadata. The random probe batches are not judged
(uniform features in [-2, 2]): their activations lie far outside the ranges static quantization calibrates
on real data and saturate (a trained NeXtVLAD moved by 0.6 there); their difference is kept too."""

MAX_GAP_DROP = 0.005
"""Default largest GAP loss of the int8 export against the fp32 export on the labelled data."""

EVAL_VIDEOS = 4096
"""Default number of labelled videos the GAP check reads (the first ones of the split, in order)."""

CALIBRATION_BATCHES = 16
"""Default number of training batches a static quantization calibrates on."""

WEIGHT_BITS = 7
"""Weights of the products with a constant matrix are int8 in 7 bits (-64..63, ONNX Runtime's
``reduce_range``): on an x86 CPU without VNNI its uint8 x int8 kernels add pairs of products in 16 bits
with saturation (``vpmaddubsw``), which 2 x 255 x 127 exceeds and 2 x 255 x 64 does not. An export may
run on another CPU than the one it was made on: with 8-bit weights a tiny NeXtVLAD's probabilities moved
by 0.011 on average on an AMD EPYC (AVX2), beyond INT8_TOLERANCE, and within it with 7 bits; on the reference-size
NeXtVLAD trained on the sample data, GAP -0.00182 against -0.00166 with 8 bits (docs/export.md)."""

MODES = ("dynamic", "static")
PRODUCTS = ("MatMul", "Gemm")


# ---------------------------------------------------------------------------------------------------------
# Policy: which products


def policy_of(model: Any, name: str) -> Int8Policy:
    """The model's :class:`Int8Policy` (every constant product without one); a UsageError if it refuses int8."""
    policy = model.int8_policy() if isinstance(model, Int8Quantizable) else Int8Policy()
    if not isinstance(policy, Int8Policy):
        raise ZooError(
            f"model {name!r}: int8_policy() returned {type(policy).__name__}, not a zoo.contracts.Int8Policy; "
            f"the model plugin is broken"
        )
    if not policy.allowed:
        why = f": {policy.reason}" if policy.reason else ""
        raise UsageError(
            f"model {name!r} does not allow int8 exports{why}; export it in fp32 (zoo export --format onnx)"
        )
    return policy


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array, np.float32)
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()


def _chosen(kind: str, parameter: str | None, policy: Int8Policy, mode: str) -> bool:
    if kind == "activations":  # only when asked (static: calibrated; dynamic: quantize_activation_products)
        return policy.activations
    if policy.quantize is None or (kind == "derived" and policy.derived):
        return True
    if parameter is None:
        return False
    return any(parameter == p or (p.endswith(".") and parameter.startswith(p)) for p in policy.quantize)


def constants_to_initializers(graph: Any) -> int:
    """Turn the graph's tensor ``Constant`` nodes into initializers (what the quantizer quantizes)."""
    import onnx

    keep, moved = [], 0
    for node in graph.node:
        attrs = list(node.attribute)
        if node.op_type == "Constant" and len(attrs) == 1 and attrs[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attrs[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    if moved:
        copies = [type(n)() for n in keep]
        for copy, node in zip(copies, keep):
            copy.CopyFrom(node)
        del graph.node[:]
        graph.node.extend(copies)
    return moved


def select_products(
    graph: Any, model: Any, policy: Int8Policy, mode: str = "dynamic"
) -> list[dict[str, Any]]:
    """Every ``MatMul``/``Gemm`` of the graph with a 2-D constant matrix or of two activations: its node name,
    its kind (``parameter``: the matrix is a model parameter as it stands; ``derived``: a constant the export
    derived from parameters; ``activations``: no constant operand), the parameter (None unless
    ``parameter``), the matrix shape (None for ``activations``), and whether the policy quantizes it in
    ``mode``."""
    from onnx import numpy_helper

    known: dict[str, str] = {}
    for name, param in model.named_parameters():
        array = param.numpy()
        if array.ndim == 2:
            known.setdefault(_digest(array), name)
            known.setdefault(_digest(array.T), name)
    initializers = {t.name: t for t in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type not in PRODUCTS or len(node.input) < 2:
            continue
        weight = initializers.get(node.input[1])
        if weight is None and node.op_type == "MatMul" and node.input[0] not in initializers:
            kind, parameter, shape = "activations", None, None
        elif weight is None or len(weight.dims) != 2:
            continue
        else:
            parameter = known.get(_digest(numpy_helper.to_array(weight)))
            kind = "parameter" if parameter is not None else "derived"
            shape = [int(d) for d in weight.dims]
        out.append(
            {
                "node": node.name,
                "kind": kind,
                "parameter": parameter,
                "shape": shape,
                "int8": _chosen(kind, parameter, policy, mode),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# Labelled and calibration data


def data_config(cfg: ZooConfig) -> ZooConfig:
    """``cfg`` itself when it names data, else ``cfg`` on the built-in sample data (which must fit the model)."""
    from zoo.engine.build import uses_sample_data, with_sample_data

    if not uses_sample_data(cfg):
        return cfg
    sample = with_sample_data(cfg, quiet=True)
    if sample.dataset.num_classes != cfg.dataset.num_classes:
        raise UsageError(
            f"the int8 checks need labelled data for model {cfg.model_name!r} ({cfg.dataset.num_classes} "
            f"classes, features {dict(cfg.dataset.features)}), and the config names none while the built-in "
            f"sample data has {sample.dataset.num_classes} classes; give the validation split "
            f"(-o data.valid=PATH, or export from a run directory whose config names it)"
        )
    return sample


def labelled_batches(
    cfg: ZooConfig, split: str, *, videos: int | None = None, batches: int | None = None, what: str
) -> tuple[list[dict[str, Any]], int]:
    """The first ``videos`` videos (or ``batches`` batches) of ``split``, in reading order, and the video
    count. No data, or a NaN/infinite feature value, is a DataError naming the split and the video."""
    from zoo.engine.build import build_reader, describe_split, split_paths
    from zoo.engine.feed import batches_for

    where = describe_split(cfg, split)
    if not split_paths(cfg, split):
        raise UsageError(
            f"{what} needs the {split} split, and the config names none ({where}); "
            f"set it with -o data.{split}=PATH"
        )
    reader = build_reader(cfg, split)
    out: list[dict[str, Any]] = []
    count = 0
    stream = iter(batches_for(reader, cfg, batch_size=cfg.eval.batch_size, shuffle=False))
    with contextlib.closing(stream):  # stops the reader's workers when enough was read
        for batch in stream:
            for name in cfg.dataset.features:
                values = batch[name]
                if values.dtype.kind != "f":
                    continue
                bad = ~np.isfinite(values).all(axis=(1, 2))
                if bad.any():
                    vid = batch["ids"][int(np.argmax(bad))]
                    raise DataError(
                        f"{what}: video {vid!r} of {where} has NaN or infinite values in feature {name!r}; "
                        f"the data is damaged: fix or remove that record (int8 ranges and GAP need finite "
                        f"features)"
                    )
            out.append(batch)
            count += len(batch["ids"])
            if (videos is not None and count >= videos) or (batches is not None and len(out) >= batches):
                break
    if not count:
        raise DataError(f"{what}: {where} holds no videos; give a split with labelled videos")
    return out, count


def _feeds(predictor: Any, batches: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """The ONNX model's input dicts for ``batches`` (as the predictor would feed them)."""
    from zoo.data.pipeline import dequantize_batch

    out = []
    for batch in batches:
        arrays, _ = predictor._arrays(dequantize_batch(batch, predictor.features))
        out.append(dict(zip(predictor.metadata["inputs"], arrays)))
    return out


def gap_of(probabilities: list[np.ndarray], batches: list[dict[str, Any]], cfg: ZooConfig) -> float:
    """The metric plugin's GAP of ``probabilities`` (one array per batch) on ``batches``."""
    from zoo.engine.build import build_metric

    metric = build_metric(cfg)
    for probs, batch in zip(probabilities, batches):
        metric.update(probs, batch["labels"], mask=batch.get("label_mask"))
    result = metric.compute()
    if "gap" not in result:
        raise UsageError(
            f"the int8 GAP check needs a metric that reports 'gap'; eval.metric {cfg.eval.metric!r} reports "
            f"{', '.join(result)}"
        )
    return float(result["gap"])


# ---------------------------------------------------------------------------------------------------------
# Export


@dataclasses.dataclass
class Int8Options:
    """How ``zoo export --precision int8`` quantizes and checks."""

    mode: str = "dynamic"
    """dynamic (activation ranges per batch at run time) or static (ranges calibrated on training batches)."""
    calibration_batches: int = CALIBRATION_BATCHES
    """static: training batches (eval.batch_size videos each) to calibrate on."""
    eval_videos: int = EVAL_VIDEOS
    """Labelled videos of the validation split the GAP check reads."""
    max_gap_drop: float = MAX_GAP_DROP
    """Largest accepted GAP loss against the fp32 export on those videos."""
    per_channel: bool = True
    """One weight scale per output channel (else one per matrix)."""


def _quantize(
    prepared: Path,
    output: Path,
    nodes: list[str],
    options: Int8Options,
    calibration: list[dict[str, np.ndarray]] | None,
    *,
    activations: list[str] | tuple[str, ...] = (),
) -> None:
    """Quantize ``nodes`` of the model at ``prepared`` into ``output``. ``activations``: those of ``nodes``
    that multiply two activations. Dynamic: ONNX Runtime's dynamic quantizer takes the products with a
    constant matrix, :func:`quantize_activation_products` the others. Static products keep fp32 outputs (no
    requantization of the result: ONNX Runtime then fuses each dequantize-product pair into one integer
    product with a float output: one rounding fewer than requantizing, and as fast, measured on NeXtVLAD)."""
    try:
        from onnxruntime import quantization as q
    except ImportError as exc:
        raise UsageError(
            f"int8 export needs onnxruntime's quantization tools ({exc}); install the onnx extra: "
            f"pip install 'yt8m-zoo[onnx]'"
        ) from None
    pairs = set(activations)
    common = dict(
        op_types_to_quantize=list(PRODUCTS),
        nodes_to_quantize=nodes if options.mode == "static" else [n for n in nodes if n not in pairs],
        per_channel=options.per_channel,
        weight_type=q.QuantType.QInt8,
        reduce_range=True,  # 7-bit weights: see WEIGHT_BITS
        extra_options={"MatMulConstBOnly": options.mode == "dynamic" or not pairs},
    )
    if options.mode == "static":
        common["extra_options"]["OpTypesToExcludeOutputQuantization"] = list(PRODUCTS)
    if options.mode == "dynamic":
        with _quiet_logging():
            if common["nodes_to_quantize"]:
                q.quantize_dynamic(str(prepared), str(output), **common)
            else:
                shutil.copyfile(prepared, output)
        if pairs:
            import onnx

            model = onnx.load(str(output))
            quantize_activation_products(model, [n for n in nodes if n in pairs])
            onnx.save(model, str(output))
        return

    class Calibration(q.CalibrationDataReader):
        def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with _quiet_logging():
        q.quantize_static(
            str(prepared),
            str(output),
            Calibration(calibration or []),
            quant_format=q.QuantFormat.QDQ,
            activation_type=q.QuantType.QUInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            **common,
        )


ACTIVATION_BITS = (7, 8)
"""Bits of the two operands of a dynamic int8 product of two activations (:func:`quantize_activation_products`):
uint8 0..127 times int8 -127..127. On an x86 CPU without VNNI, ONNX Runtime's uint8 x int8 kernels add pairs
of products in 16 bits with saturation (``vpmaddubsw``): 2 x 127 x 127 = 32,258 stays below 32,767, where
2 x 255 x 127 does not (on an AMD EPYC, 255 x 127 summed 64 times came out 1,048,544, not 2,072,640)."""


def quantize_activation_products(model: Any, nodes: list[str]) -> list[str]:
    """Rewrite the ``MatMul`` nodes named in ``nodes`` (products of two activations, which ONNX Runtime's
    dynamic quantizer leaves fp32) of ``model`` (an ``onnx.ModelProto``, changed in place) as dynamic int8
    products, ranges found per batch: each row of the first operand is divided by its largest absolute value
    (NeXtVLAD's soft assignments of most clusters are far below the largest one's: one range for all
    rows cost GAP, docs/export.md) and becomes uint8 (0..127; with a zero point when it has negative
    values), the second operand int8 (-127..127, one symmetric range), ``MatMulIntegerToFloat`` multiplies
    them and the rows are scaled back. A first operand made by a ``Transpose`` that only this product
    reads is quantized before it (the codes are transposed, a quarter of the bytes). Returns the names."""
    from onnx import helper, numpy_helper

    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    a_levels, b_levels = 2 ** ACTIVATION_BITS[0] - 1, 2 ** (ACTIVATION_BITS[1] - 1) - 1

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype), name))
        return name

    def reduce_max(x: str, out: str, axes: list[int] | None) -> Any:
        if axes is None:
            return helper.make_node("ReduceMax", [x], [out], keepdims=0)
        if opset >= 18:
            return helper.make_node("ReduceMax", [x, const(f"{out}_axes", axes, np.int64)], [out], keepdims=1)
        return helper.make_node("ReduceMax", [x], [out], keepdims=1, axes=axes)

    replaced: dict[str, list[Any]] = {}
    dropped: set[str] = set()
    for node in graph.node:
        if node.name not in nodes or node.op_type != "MatMul":
            continue
        p = f"{node.name}_int8"
        a, b = node.input[0], node.input[1]
        transpose = producers.get(a)
        perm = [list(x.ints) for x in transpose.attribute if x.name == "perm"] if transpose else []
        moved = transpose is not None and transpose.op_type == "Transpose" and perm and readers.get(a) == 1
        source = transpose.input[0] if moved else a
        axis = perm[0][-1] if moved else -1  # the first operand's rows run along this axis of source

        tiny, zero = const(f"{p}_tiny", 1e-30), const(f"{p}_zero", 0.0)
        new = [
            # rows of the first operand over [-1, 1]: divided by their largest |value| (kept for later)
            helper.make_node("Abs", [source], [f"{p}_abs"]),
            reduce_max(f"{p}_abs", f"{p}_row_max0", [axis]),
            helper.make_node("Max", [f"{p}_row_max0", tiny], [f"{p}_row_max"]),
            helper.make_node("Div", [source, f"{p}_row_max"], [f"{p}_rows"]),
            # uint8 0..127 over [0, 1], or over [-1, 1] (zero point 64) when some value is negative
            helper.make_node("ReduceMin", [source], [f"{p}_min"], keepdims=0),
            helper.make_node("Less", [f"{p}_min", zero], [f"{p}_signed0"]),
            helper.make_node("Cast", [f"{p}_signed0"], [f"{p}_signed"], to=1),
            helper.make_node("Add", [f"{p}_signed", const(f"{p}_one", 1.0)], [f"{p}_span"]),
            helper.make_node("Div", [f"{p}_span", const(f"{p}_a_levels", a_levels)], [f"{p}_a_scale"]),
            helper.make_node(
                "Mul", [f"{p}_signed", const(f"{p}_half", float((a_levels + 1) // 2))], [f"{p}_zp0"]
            ),
            helper.make_node("Cast", [f"{p}_zp0"], [f"{p}_a_zp"], to=2),  # uint8
            helper.make_node("QuantizeLinear", [f"{p}_rows", f"{p}_a_scale", f"{p}_a_zp"], [f"{p}_a_codes"]),
        ]
        row_scale, a_q = f"{p}_row_max", f"{p}_a_codes"
        if moved:
            new += [
                helper.make_node("Transpose", [a_q], [f"{p}_a_q"], perm=perm[0]),
                helper.make_node("Transpose", [row_scale], [f"{p}_row_scale"], perm=perm[0]),
            ]
            row_scale, a_q = f"{p}_row_scale", f"{p}_a_q"
            dropped.add(transpose.name)
        b_zero = const(f"{p}_b_zero", 0, np.int8)
        new += [
            # the second operand: int8 -127..127 over [-max|x|, max|x|]
            helper.make_node("Abs", [b], [f"{p}_b_abs"]),
            reduce_max(f"{p}_b_abs", f"{p}_b_max", None),
            helper.make_node("Div", [f"{p}_b_max", const(f"{p}_b_levels", b_levels)], [f"{p}_b_scale0"]),
            helper.make_node("Max", [f"{p}_b_scale0", tiny], [f"{p}_b_scale"]),
            helper.make_node("QuantizeLinear", [b, f"{p}_b_scale", b_zero], [f"{p}_b_q"]),
            helper.make_node(
                "MatMulIntegerToFloat",
                [a_q, f"{p}_b_q", f"{p}_a_scale", f"{p}_b_scale", f"{p}_a_zp", b_zero],
                [f"{p}_out"],
                name=p,
                domain="com.microsoft",
            ),
            helper.make_node("Mul", [f"{p}_out", row_scale], list(node.output)),
        ]
        replaced[node.name] = new
    kept = [n for node in graph.node if node.name not in dropped for n in replaced.get(node.name, [node])]
    copies = [type(n)() for n in kept]
    for copy, node in zip(copies, kept):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
    if replaced and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return list(replaced)


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """The quantizer logs a line per tensor (INFO) and advice on pre-processing (WARNING): only errors show."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def export_int8(
    cfg: ZooConfig,
    weights: str | None,
    output: str | os.PathLike,
    *,
    vocabulary: str | os.PathLike | None = None,
    allow_random: bool = False,
    weights_sha256: str | None = None,
    frames: str = "auto",
    options: Int8Options | None = None,
    quiet: bool = True,
) -> Path:
    """Export ``cfg``'s model with ``weights`` as an int8 ONNX model into ``output``, checked (module doc).

    Refused (UsageError) when the model's plugin forbids int8; a missing or broken labelled or calibration
    split is a clear error; ``output`` appears only when every check passed.
    """
    from zoo.engine.build import describe_split
    from zoo.engine.export.checks import max_difference
    from zoo.engine.export.metadata import METADATA_FILE, VOCABULARY_FILE, check_output_dir, file_record
    from zoo.engine.export.onnx import ONNX_FILE, OnnxModel, _dygraph_model, converter_versions, export_onnx
    from zoo.engine.runs.checkpoint import save_weights

    options = options or Int8Options()
    if options.mode not in MODES:
        raise UsageError(f"--quantization {options.mode!r}: expected {' or '.join(MODES)}")
    if options.calibration_batches < 1 or options.eval_videos < 1:
        raise UsageError("--calibration-batches and the GAP check's video count must be at least 1")
    if not options.max_gap_drop >= 0:
        raise UsageError(f"--max-gap-drop {options.max_gap_drop}: expected a GAP difference >= 0")
    output = Path(output)
    check_output_dir(output)
    versions = converter_versions()
    model, weights_info = _dygraph_model(cfg, weights, weights_sha256, allow_random)
    policy = policy_of(model, cfg.model_name)  # refused before anything is read or exported
    data_cfg = data_config(cfg)
    evaluation, eval_count = labelled_batches(
        data_cfg, "valid", videos=options.eval_videos, what="the int8 GAP check"
    )
    calibration_batches: list[dict[str, Any]] = []
    if options.mode == "static":
        calibration_batches, _ = labelled_batches(
            data_cfg, "train", batches=options.calibration_batches, what="int8 calibration"
        )
    with tempfile.TemporaryDirectory(prefix="zoo-int8-") as scratch:
        scratch_dir = Path(scratch)
        save_weights(scratch_dir / "weights.safetensors", model)
        fp32_dir = export_onnx(
            cfg,
            str(scratch_dir / "weights.safetensors"),
            scratch_dir / "fp32",
            vocabulary=vocabulary,
            frames=frames,
            quiet=True,
        )
        metadata = json.loads((fp32_dir / METADATA_FILE).read_text(encoding="utf-8"))
        metadata["weights"] = weights_info
        fp32 = OnnxModel(fp32_dir, metadata)
        import onnx

        graph_model = onnx.load(str(fp32_dir / ONNX_FILE))
        constants_to_initializers(graph_model.graph)
        products = select_products(graph_model.graph, model, policy, options.mode)
        nodes = [p["node"] for p in products if p["int8"]]
        activations = [p["node"] for p in products if p["int8"] and p["kind"] == "activations"]
        if not nodes:
            raise UsageError(
                f"model {cfg.model_name!r}: its int8 policy selects none of its {len(products)} matrix "
                f"products; nothing would be int8, export it in fp32 instead"
            )
        prepared = scratch_dir / "prepared.onnx"
        onnx.save(graph_model, str(prepared))
        feeds = _feeds(fp32, calibration_batches) if calibration_batches else None
        t0 = time.perf_counter()
        with atomic_dir(output) as tmp:
            try:
                _quantize(prepared, tmp / ONNX_FILE, nodes, options, feeds, activations=activations)
            except (UsageError, ZooError):
                raise
            except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer raises many types
                raise ZooError(
                    f"onnxruntime {versions['onnxruntime']} could not quantize {cfg.model_name!r} "
                    f"({options.mode}): {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}; "
                    f"export it in fp32 (zoo export --format onnx). Nothing was written to {output}"
                ) from None
            fp32_check = metadata.pop("check")
            fp32_bytes = metadata["files"][ONNX_FILE]["bytes"]
            metadata["files"] = {ONNX_FILE: file_record(tmp / ONNX_FILE)}
            metadata["precision"] = "int8"
            int8 = OnnxModel(tmp, metadata)
            # on the probe batches (uniform features, wider than real ones) for the record only: static
            # ranges are calibrated on the data, and activations of uniform noise fall outside them
            probe_diff = max_difference(int8.predict, model, metadata, "the int8 ONNX model")
            probs32 = [fp32.predict(batch) for batch in evaluation]
            probs8 = [int8.predict(batch) for batch in evaluation]
            diffs = [np.abs(a - b) for a, b in zip(probs32, probs8)]
            diff = max(float(d.max()) for d in diffs)
            mean_diff = float(sum(float(d.sum()) for d in diffs) / sum(d.size for d in diffs))
            if not mean_diff <= INT8_TOLERANCE:
                raise ZooError(
                    f"model {cfg.model_name!r}: the int8 model's probabilities differ from the fp32 export's "
                    f"by {mean_diff:.3g} on average (largest {diff:.3g}) on {eval_count} videos of {describe_split(data_cfg, 'valid')} "
                    f"(tolerance {INT8_TOLERANCE:g}); int8 does not reproduce this model: keep more of it in "
                    f"fp32 (its plugin's int8_policy), try --quantization "
                    f"{'static' if options.mode == 'dynamic' else 'dynamic'}, or export in fp32. Nothing was "
                    f"written to {output}"
                )
            gap32 = gap_of(probs32, evaluation, data_cfg)
            gap8 = gap_of(probs8, evaluation, data_cfg)
            gap = {
                "data": describe_split(data_cfg, "valid"),
                "videos": eval_count,
                "fp32": gap32,
                "int8": gap8,
                "difference": gap8 - gap32,
                "max_drop": options.max_gap_drop,
            }
            if gap32 - gap8 > options.max_gap_drop:
                raise ZooError(
                    f"model {cfg.model_name!r}: the int8 model's GAP is {gap8:.5f} against {gap32:.5f} in "
                    f"fp32 on {eval_count} videos of {gap['data']} (a drop of {gap32 - gap8:.5f}, more than "
                    f"--max-gap-drop {options.max_gap_drop:g}); try --quantization "
                    f"{'static' if options.mode == 'dynamic' else 'dynamic'}, or export in fp32. Nothing "
                    f"was written to {output}"
                )
            metadata["quantization"] = {
                "mode": options.mode,
                "tool": f"onnxruntime.quantization {versions['onnxruntime']}",
                "weights": f"int8 ({WEIGHT_BITS} bits) per output channel"
                if options.per_channel
                else f"int8 ({WEIGHT_BITS} bits) per matrix",
                "activations": "uint8, ranges per batch at run time"
                + (", products of two activations row by row (7 x 8 bits)" if activations else "")
                if options.mode == "dynamic"
                else f"uint8, min/max calibrated on {len(calibration_batches)} batches of "
                f"{describe_split(data_cfg, 'train')}",
                "products": products,
                "int8_parameters": sum(
                    int(np.prod(p["shape"])) for p in products if p["int8"] and p["shape"]
                ),
                "fp32_bytes": fp32_bytes,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            metadata["check"] = {
                "mean_abs_diff": mean_diff,
                "tolerance": INT8_TOLERANCE,
                "max_abs_diff": diff,
                "compared_with": "the fp32 export, on the GAP check's videos",
                "probe_max_abs_diff": probe_diff,
                "precision": "int8",
                "runtime": fp32_check.get("runtime"),
                "batches": fp32_check.get("batches"),
                "fp32_max_abs_diff": fp32_check["max_abs_diff"],
                "gap": gap,
            }
            if (fp32_dir / VOCABULARY_FILE).is_file():
                shutil.copyfile(fp32_dir / VOCABULARY_FILE, tmp / VOCABULARY_FILE)
            (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n")
    if not quiet:
        print(
            f"int8: {len(nodes)} of {len(products)} products quantized ({options.mode}); GAP {gap8:.5f} "
            f"vs fp32 {gap32:.5f} on {eval_count} videos",
            file=sys.stderr,
        )
    return output
