"""Deployable models: ``paddle.jit.save`` exports and predictions through Paddle Inference.

An export directory holds::

    inference.json       the PIR program (paddle.jit.save, paddle >= 3): features..., mask, num_frames -> probs
    inference.pdiparams  the weights
    metadata.json        model name, config, class count, feature layout, frame mode, checksums, check result
    vocabulary.csv       (optional) the class names the export was made with

The exported program takes one ``[B, T, D]`` tensor per feature (in ``dataset.features`` order), the mask
``[B, T]`` and ``num_frames [B]``, and returns sigmoid probabilities ``[B, num_classes]``; batch and frame
count are dynamic. A model whose code does not trace with a dynamic frame count is exported with
``T = max_frames`` instead (``"frames": "static"`` in the metadata) and :class:`ExportedModel` pads every
batch to that length. Which one a model gets is decided by running the export through Paddle Inference and
comparing it with the dygraph model at export time: an export that does not reproduce its model is never
written.

CPU predictors run fp32 on paddle's own kernels and bf16 on oneDNN. ONEDNN_NOTE: with Paddle 3.3, oneDNN
fp32 was slower than both the dygraph model and paddle's kernels (its broadcasting multiply takes ~1 s on a
[32, 300, 8, 128] x [32, 300, 8, 1] NeXtVLAD batch; see benchmarks/bench_inference.py), and two oneDNN
defects are worked around whenever it is on (both found by the export check): the ``inplace_pass`` lets a
oneDNN activation overwrite a tensor that another op still reads (the MoE head's ``log(p) - log1p(-p)``
came out wrong by up to 2.0), and with bf16 the ``operator_unsqueeze_onednn_fuse_pass`` drops an unsqueeze
(NeXtVLAD fails to build). Both passes are switched off for oneDNN predictors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zoo.atomic import atomic_dir, is_no_space
from zoo.config import ZooConfig
from zoo.contracts import CustomOps, ExportConstants
from zoo.errors import UsageError, ZooError
from zoo.fetch import sha256_file

FORMAT = "yt8m-zoo-export"
FORMAT_VERSION = 1
PROGRAM_FILE = "inference.json"
PARAMS_FILE = "inference.pdiparams"
METADATA_FILE = "metadata.json"
VOCABULARY_FILE = "vocabulary.csv"
_PREFIX = "inference"  # paddle.jit.save(path_prefix) writes <prefix>.json and <prefix>.pdiparams under PIR

CHECK_TOLERANCE = 1e-4
"""Largest |probability difference| between the export and the dygraph model accepted at export time.

fp32 exports agree to ~1e-7 on the built-in models; the bound only has to separate rounding from a broken
graph (the defects above gave differences of 0.2 to 2.0)."""

_ONEDNN_PASSES_OFF = ("inplace_pass",)
_BF16_PASSES_OFF = ("operator_unsqueeze_onednn_fuse_pass",)
_ONEDNN_SHAPE_CACHE = 64  # oneDNN primitives are cached per input shape; T varies per batch, so bound it

RUNTIMES = {"onnxruntime": "zoo.engine.onnx:load"}
"""Exports for runtimes other than Paddle Inference (``"runtime"`` in the metadata) and their loaders,
imported on first use; a Paddle Inference export has no ``runtime`` key."""

Frames = Literal["auto", "dynamic", "static"]


# ---------------------------------------------------------------------------------------------------------
# Export


def input_names(features: Sequence[str]) -> list[str]:
    """The exported program's inputs, in order: every feature, then the mask and the frame counts."""
    return [*features, "mask", "num_frames"]


def _probability_layer(model: Any, features: Sequence[str]) -> Any:
    """``model`` behind a forward of positional tensors that returns probabilities (what jit.save needs)."""
    import paddle
    import paddle.nn.functional as F

    from zoo.engine.loop import logits_of

    names = list(features)

    class ProbabilityModel(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, features: list[Any], mask: Any, num_frames: Any) -> Any:
            batch = dict(zip(names, features))
            batch["mask"] = mask
            batch["num_frames"] = num_frames
            out = F.sigmoid(logits_of(self.model(batch)))
            # Every input must reach the output, or jit.save prunes it and refuses the feed; most models
            # never read num_frames. Reshaping to [batch of that input, -1] uses it and changes nothing.
            for value in [*features, mask, num_frames]:
                out = out.reshape([paddle.shape(value)[0], -1])
            return out

    layer = ProbabilityModel()
    layer.eval()
    return layer


def _input_specs(features: dict[str, int], frames: int | None) -> list[Any]:
    from paddle.static import InputSpec

    return [
        [InputSpec([None, frames, size], "float32", name) for name, size in features.items()],
        InputSpec([None, frames], "float32", "mask"),
        InputSpec([None], "int64", "num_frames"),
    ]


def probe_batches(features: dict[str, int], max_frames: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Two batches of different sizes and frame counts with variable lengths (zero padding, mask, counts)."""
    rng = np.random.default_rng(seed)
    out = []
    for lengths in ([max_frames, max(1, max_frames // 2), 1], [min(3, max_frames), 1]):
        b, t = len(lengths), max(lengths)
        mask = np.zeros((b, t), np.float32)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1.0
        batch = {
            name: rng.uniform(-2.0, 2.0, (b, t, d)).astype(np.float32) * mask[..., None]
            for name, d in features.items()
        }
        batch["mask"] = mask
        batch["num_frames"] = np.asarray(lengths, np.int64)
        out.append(batch)
    return out


def _trace(
    model: Any, features: dict[str, int], frames: int | None, prefix: Path, custom_ops: bool = False
) -> None:
    import paddle

    for param in model.parameters():
        # inference needs no gradients; frozen parameters also keep training-only code (custom autograd
        # ops such as PyLayers, which do not trace) out of the exported program
        param.stop_gradient = True
    layer = _probability_layer(model, list(features))
    with warnings.catch_warnings(), contextlib.ExitStack() as constants:
        warnings.simplefilter("ignore")  # dy2st warns about Tensor.place and the like on every export
        for sublayer in model.sublayers(include_self=True):
            # layers may turn what they derive from their parameters alone into constants of the program
            # (NeXtVLAD's product matrices) instead of recomputing it on every call
            if isinstance(sublayer, ExportConstants):
                constants.enter_context(sublayer.export_constants())
        if custom_ops:
            constants.enter_context(model.custom_ops())
        static = paddle.jit.to_static(layer, input_spec=_input_specs(features, frames), full_graph=True)
        paddle.jit.save(static, str(prefix))


def _check(directory: Path, metadata: dict[str, Any], model: Any, precision: str = "fp32") -> float:
    """Max |difference| between the export's CPU predictions and the dygraph model's, on probe batches."""
    exported = ExportedModel(directory, metadata, device="cpu", precision=precision)
    return max_difference(exported.predict, model, metadata, "the exported program")


def max_difference(predict: Any, model: Any, metadata: dict[str, Any], what: str) -> float:
    """Max |difference| between ``predict(batch)`` (an export's predictor) and the dygraph model's
    probabilities on the probe batches; a different output shape is an error naming ``what``."""
    from zoo.engine.loop import dygraph_scorer

    reference = dygraph_scorer(model, metadata["features"])
    worst = 0.0
    for batch in probe_batches(metadata["features"], metadata["max_frames"]):
        expected = reference(batch)
        got = predict(batch)
        if got.shape != expected.shape:
            raise ZooError(f"{what} returns shape {list(got.shape)}, the model {list(expected.shape)}")
        worst = max(worst, float(np.max(np.abs(got - expected))) if got.size else 0.0)
    return worst


def _file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def dygraph_model(
    cfg: ZooConfig, weights: str | None, weights_sha256: str | None = None, *, quiet: bool = True
) -> tuple[Any, dict[str, Any]]:
    """``cfg``'s model in eval mode with ``weights`` (its random initialisation when None), and the
    ``weights`` record of an export's metadata: what every export runs and is checked against."""
    from zoo.engine.setup import build_model
    from zoo.engine.weights import apply_weights, read_weights

    model = build_model(cfg)
    info: dict[str, Any] = {"source": None, "format": None, "random_init": True}
    if weights is not None:
        loaded = read_weights(weights, sha256=weights_sha256)
        report = apply_weights(model, loaded, strict=True)
        info = {"source": loaded.origin, "format": loaded.format, "random_init": False}
        if not quiet:
            print(f"weights: {loaded.origin} ({loaded.format}): {report.summary()}", file=sys.stderr)
    model.eval()
    return model, info


def export_model(
    cfg: ZooConfig,
    weights: str | None,
    output: str | os.PathLike,
    *,
    vocabulary: str | os.PathLike | None = None,
    allow_random: bool = False,
    weights_sha256: str | None = None,
    frames: Frames = "auto",
    custom_ops: bool = False,
    quiet: bool = True,
) -> Path:
    """Build ``cfg``'s model with ``weights``, export it for Paddle Inference into ``output`` and check it.

    ``weights`` is anything :func:`zoo.engine.weights.read_weights` accepts; ``None`` exports the random
    initialisation and is refused unless ``allow_random``. ``frames``: "auto" tries a dynamic frame count and
    falls back to ``T = max_frames`` when the model does not trace or does not reproduce itself that way.
    ``custom_ops``: the program calls the model's own Paddle custom operators (:class:`zoo.contracts.CustomOps`;
    faster, but loadable only where they are registered: yt8m-zoo's ``load_exported`` does that itself).
    The directory appears (replacing an earlier export) only when complete and checked.
    """
    import paddle

    from zoo.engine.setup import count_parameters

    output = Path(output)
    _check_output(output)
    if weights is None and not allow_random:
        raise UsageError(
            f"exporting {cfg.model_name} without --weights would export untrained random weights; "
            f"give --weights (a run directory, checkpoint, weights file or URL) or pass "
            f"--allow-random if that is what you want"
        )
    spec = cfg.dataset
    names = {n.lower() for n in spec.features}
    clash = names & {"mask", "num_frames"}
    if clash:
        raise UsageError(
            f"dataset.features: a feature may not be called {', '.join(sorted(clash))} "
            f"(the exported program uses that name for its own input)"
        )
    vocab_map, vocab_path = _read_vocabulary(vocabulary, cfg)
    model, weights_info = dygraph_model(cfg, weights, weights_sha256, quiet=quiet)
    if custom_ops:
        if not isinstance(model, CustomOps):
            raise UsageError(
                f"--custom-ops: model {cfg.model_name!r} has no custom operators; export without it"
            )
        with model.custom_ops():  # its own errors (a form without operators, a failed build) before tracing
            pass
    parameters = count_parameters(model)
    config = cfg.to_dict()
    config["predict"]["vocabulary"] = VOCABULARY_FILE if vocab_path else None
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": cfg.model_name,
        "num_classes": spec.num_classes,
        "features": dict(spec.features),
        "max_frames": spec.max_frames,
        "frames": None,
        "inputs": input_names(list(spec.features)),
        "output": "probabilities",
        "parameters": parameters,
        "weights": weights_info,
        "vocabulary": {str(k): v for k, v in sorted(vocab_map.items())} if vocab_map else None,
        "config": config,
        "custom_ops": bool(custom_ops),
        "paddle_version": paddle.__version__,
        "zoo_version": _zoo_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    modes = {"auto": ["dynamic", "static"], "dynamic": ["dynamic"], "static": ["static"]}.get(frames)
    if modes is None:
        raise UsageError(f"frames: expected auto, dynamic or static, got {frames!r}")
    failures: list[str] = []
    with atomic_dir(output, what="the export") as tmp:
        for mode in modes:
            for stale in (tmp / PROGRAM_FILE, tmp / PARAMS_FILE):
                stale.unlink(missing_ok=True)
            metadata["frames"] = mode
            try:
                _trace(
                    model,
                    dict(spec.features),
                    None if mode == "dynamic" else spec.max_frames,
                    tmp / _PREFIX,
                    custom_ops,
                )
                metadata["files"] = {
                    PROGRAM_FILE: _file_record(tmp / PROGRAM_FILE),
                    PARAMS_FILE: _file_record(tmp / PARAMS_FILE),
                }
                diff = _check(tmp, metadata, model)
            except Exception as exc:  # noqa: BLE001 - paddle's tracer and predictor raise many types
                if is_no_space(exc):
                    raise  # atomic_dir words it: the path, the space needed and free
                failures.append(f"{mode} frames: {_one_line(exc)}")
                continue
            if diff <= CHECK_TOLERANCE:
                metadata["check"] = {
                    "max_abs_diff": diff,
                    "tolerance": CHECK_TOLERANCE,
                    "precision": "fp32",
                    "batches": [
                        list(map(int, b["num_frames"])) for b in probe_batches(spec.features, spec.max_frames)
                    ],
                }
                break
            failures.append(
                f"{mode} frames: the exported predictions differ from the model's by up to {diff:.3g} "
                f"(tolerance {CHECK_TOLERANCE:g})"
            )
        else:
            raise ZooError(
                f"model {cfg.model_name!r} could not be exported for Paddle Inference: "
                + "; ".join(failures)
                + ". The model's forward must be traceable by paddle.jit.to_static (no Python "
                "branching on tensor values, no numpy calls); nothing was written to " + str(output)
            )
        if failures and not quiet:
            print(
                f"export: {failures[0]}; exported with a fixed T = {spec.max_frames} frames instead",
                file=sys.stderr,
            )
        metadata["fallback_reason"] = failures[0] if failures else None
        metadata["check"]["bf16"] = _check_bf16(tmp, metadata, model)
        if vocab_path is not None:
            shutil.copyfile(vocab_path, tmp / VOCABULARY_FILE)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n")
    return output


def _load_custom_ops(root: Path, meta: dict[str, Any], device_kind: str) -> None:
    """Register the custom operators an export made with ``--custom-ops`` calls: its model plugin's."""
    import zoo

    name = meta["model"]
    if device_kind != "cpu":
        raise UsageError(
            f"{root}: this export calls {name}'s custom CPU operators (zoo export --custom-ops); predict on "
            f"--device cpu, or re-export without --custom-ops for the GPU"
        )
    try:
        loader = getattr(zoo.plugin_class("model", name), "load_custom_ops", None)
    except ZooError as exc:
        raise ZooError(f"{root}: the export calls custom operators of model {name!r}: {exc}") from None
    if loader is None:
        raise ZooError(
            f"{root}: the export calls custom operators of model {name!r}, which the installed plugin does not "
            f"provide; re-export it without --custom-ops"
        )
    loader()


def _check_output(output: Path) -> None:
    """Only an empty directory or an earlier export may be replaced (never a run directory or a file)."""
    if not output.exists():
        return
    hint = "choose another --output or remove it first"
    if not output.is_dir():
        raise UsageError(f"--output {output} is a file; {hint}")
    if not any(output.iterdir()):
        return
    try:
        earlier = json.loads((output / METADATA_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        earlier = False
    if not earlier:
        raise UsageError(
            f"--output {output} exists and is not an earlier `zoo export` (no {METADATA_FILE} of "
            f"one); it would be replaced as a whole: {hint}"
        )


def _check_bf16(directory: Path, metadata: dict[str, Any], model: Any) -> dict[str, Any]:
    """How far oneDNN bf16 predictions are from the model (informational: bf16 is a predict-time option)."""
    ok, why = bf16_support()
    if not ok:
        return {"skipped": why}
    try:
        return {"max_abs_diff": _check(directory, metadata, model, precision="bf16")}
    except Exception as exc:  # noqa: BLE001 - reported in the metadata and by load_exported(precision="bf16")
        return {"error": _one_line(exc)}


def _one_line(exc: BaseException) -> str:
    """The informative line of an exception; paddle's tracer wraps the cause in pages of transformed code."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if "Error:" in line and not line.startswith("File ")]
    text = causes[0] if causes else (lines[0] if lines else "")
    return text[:400] if "Error:" in text else f"{type(exc).__name__}: {text[:400]}"


def _zoo_version() -> str:
    import zoo

    return zoo.__version__


def _read_vocabulary(
    vocabulary: str | os.PathLike | None, cfg: ZooConfig
) -> tuple[dict[int, str], Path | None]:
    """--vocabulary, else the config's predict.vocabulary if that file exists; checked against the classes."""
    from zoo.engine.predictions import load_class_names

    if vocabulary is None:
        configured = cfg.predict.vocabulary
        if not configured or not Path(configured).is_file():
            return {}, None
        vocabulary = configured
    path = Path(vocabulary)
    if not path.is_file():
        raise UsageError(f"--vocabulary {path}: no such file (expected the YouTube-8M vocabulary.csv)")
    mapping = load_class_names(path)
    beyond = sorted(k for k in mapping if k >= cfg.dataset.num_classes)
    if beyond:
        raise UsageError(
            f"{path}: names class {beyond[0]} but the model has {cfg.dataset.num_classes} classes "
            f"(0..{cfg.dataset.num_classes - 1}); is this the vocabulary of this dataset?"
        )
    return mapping, path


# ---------------------------------------------------------------------------------------------------------
# Loading and predicting


def read_metadata(model_dir: str | os.PathLike) -> dict[str, Any]:
    """``metadata.json`` of an export directory, checked for format, version and consistency."""
    root = Path(model_dir)
    redo = "re-export it with `zoo export`"
    if not root.is_dir():
        raise ZooError(f"--model {root}: not a directory; give the directory written by `zoo export`")
    path = root / METADATA_FILE
    if not path.is_file():
        raise ZooError(f"{path} is missing: {root} is not a complete `zoo export` directory; {redo}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"{path}: not readable JSON ({exc}); the export is damaged, {redo}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ZooError(f'{path}: not yt8m-zoo export metadata (no "format": "{FORMAT}"); {redo}')
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise ZooError(f"{path}: invalid format version {version!r}; {redo}")
    if version > FORMAT_VERSION:
        raise ZooError(
            f"{path}: export format version {version} is newer than this yt8m-zoo reads "
            f"({FORMAT_VERSION}); upgrade yt8m-zoo or export again with this version"
        )
    required = {
        "model": str,
        "num_classes": int,
        "features": dict,
        "max_frames": int,
        "frames": str,
        "inputs": list,
        "config": dict,
        "files": dict,
    }
    for key, kind in required.items():
        if not isinstance(meta.get(key), kind):
            raise ZooError(
                f"{path}: key {key!r} is missing or not a {kind.__name__}; the metadata is damaged, {redo}"
            )
    features = meta["features"]
    if not features or not all(isinstance(d, int) and d > 0 for d in features.values()):
        raise ZooError(f"{path}: 'features' must map feature names to positive sizes, got {features}; {redo}")
    if meta["frames"] not in ("dynamic", "static"):
        raise ZooError(f'{path}: \'frames\' must be "dynamic" or "static", got {meta["frames"]!r}; {redo}')
    if meta["inputs"] != input_names(list(features)):
        raise ZooError(
            f"{path}: 'inputs' {meta['inputs']} do not match the features {list(features)}; {redo}"
        )
    config = meta["config"]
    config_model = (config.get("model") or {}).get("name")
    if config_model != meta["model"]:
        raise ZooError(
            f"{path}: the metadata names model {meta['model']!r} but its config builds "
            f"{config_model!r}; the file was edited or mixed from two exports, {redo}"
        )
    dataset = config.get("dataset") or {}
    for key in ("num_classes", "features", "max_frames"):
        if dataset.get(key) != meta[key]:
            raise ZooError(
                f"{path}: {key} is {meta[key]!r} but the saved config's dataset.{key} is "
                f"{dataset.get(key)!r}; the metadata is inconsistent, {redo}"
            )
    return meta


def _check_files(root: Path, meta: dict[str, Any], *, verify_checksums: bool) -> None:
    check_file_records(
        root, meta, (PROGRAM_FILE, PARAMS_FILE), "re-export it with `zoo export`", verify_checksums
    )


def check_file_records(
    root: Path, meta: dict[str, Any], names: tuple[str, ...], redo: str, verify_checksums: bool
) -> None:
    """Each of ``names`` exists in ``root`` with the size (and SHA-256) that ``metadata.json`` records."""
    for name in names:
        path = root / name
        record = meta["files"].get(name)
        if not path.is_file():
            raise ZooError(f"{path} is missing: the export in {root} is incomplete; {redo}")
        if not isinstance(record, dict):
            raise ZooError(f"{root / METADATA_FILE}: no entry for {name} under 'files'; {redo}")
        size = path.stat().st_size
        if size != record.get("bytes"):
            raise ZooError(
                f"{path} has {size} bytes, the export wrote {record.get('bytes')}: the file is "
                f"damaged or from another export; {redo}"
            )
        if verify_checksums and sha256_file(path) != record.get("sha256"):
            raise ZooError(
                f"{path}: SHA-256 does not match {METADATA_FILE}: the file is damaged or from "
                f"another export; {redo}"
            )


def bf16_support() -> tuple[bool, str]:
    """Whether oneDNN bf16 inference can run here, and if not, why."""
    from paddle.base import core

    if not _onednn_available():
        return False, "this paddle build has no oneDNN (MKLDNN)"
    if not core.supports_bfloat16():
        return (
            False,
            "this CPU has no bf16 support in oneDNN (needs AVX512-BF16, AMX or at least AVX512BW/VL/DQ)",
        )
    return True, "fast (AVX512-BF16/AMX)" if core.supports_bfloat16_fast_performance() else "emulated (slow)"


def _onednn_available() -> bool:
    from paddle.base import core

    check = getattr(core, "is_compiled_with_onednn", None) or getattr(core, "is_compiled_with_mkldnn", None)
    return bool(check()) if check else True


@dataclasses.dataclass
class GpuOptions:
    """GPU predictor settings, passed to Paddle Inference as they are (used only with device gpu)."""

    memory_pool_mb: int = 512
    """Initial GPU memory pool (Config.enable_use_gpu)."""
    tensorrt: bool = False
    """Run supported subgraphs with TensorRT (Config.enable_tensorrt_engine); needs a paddle built with it."""
    trt_workspace_mb: int = 1024
    """TensorRT workspace size."""
    trt_max_batch: int = 256
    """Largest batch TensorRT builds for (the dynamic-shape range's maximum batch)."""
    trt_min_subgraph_size: int = 3
    """Smallest subgraph handed to TensorRT."""
    trt_use_static: bool = False
    """Serialise built TensorRT engines beside the model and reuse them on the next start."""


def _precision_type(precision: str) -> Any:
    from paddle.inference import PrecisionType

    return {"fp32": PrecisionType.Float32, "fp16": PrecisionType.Half, "bf16": PrecisionType.Bfloat16}[
        precision
    ]


def _predictor_config(
    root: Path,
    meta: dict[str, Any],
    device: str,
    precision: str,
    threads: int | None,
    onednn: bool | None,
    gpu: GpuOptions,
) -> Any:
    from paddle import inference

    config = inference.Config(str(root / PROGRAM_FILE), str(root / PARAMS_FILE))
    config.disable_glog_info()
    kind, _, index = device.partition(":")
    if meta.get("custom_ops"):
        _load_custom_ops(root, meta, kind)
    if kind == "cpu":
        if gpu.tensorrt:
            raise UsageError("TensorRT runs on GPUs only: use --device gpu with TensorRT, or drop it")
        if precision == "fp16":
            raise UsageError("fp16 inference needs a GPU; on CPU use fp32 or bf16")
        from zoo.engine.runtime import cpu_count

        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads or cpu_count())
        use_onednn = precision == "bf16" if onednn is None else onednn
        if precision == "bf16":
            ok, why = bf16_support()
            if not ok:
                raise UsageError(f"--precision bf16: {why}; use --precision fp32")
            if not use_onednn:
                raise UsageError("bf16 inference on CPU runs through oneDNN; do not switch oneDNN off for it")
        if not use_onednn:
            config.disable_mkldnn()  # paddle's own CPU kernels (MKL matmuls): the fp32 default, see ONEDNN_NOTE
            return config
        if not _onednn_available():
            raise UsageError("this paddle build has no oneDNN (MKLDNN); use fp32 without oneDNN")
        config.enable_mkldnn()
        if meta["frames"] == "dynamic":
            config.set_mkldnn_cache_capacity(_ONEDNN_SHAPE_CACHE)
        for name in _ONEDNN_PASSES_OFF:
            config.delete_pass(name)
        if precision == "bf16":
            config.enable_mkldnn_bfloat16()
            for name in _BF16_PASSES_OFF:
                config.delete_pass(name)
        return config
    if kind != "gpu":
        raise UsageError(f"--device {device!r}: expected cpu, gpu or gpu:N")
    device_id = int(index) if index else 0
    config.enable_use_gpu(gpu.memory_pool_mb, device_id, _precision_type(precision))
    if gpu.tensorrt:
        compiled = inference.get_trt_compile_version()
        if not any(compiled):
            raise UsageError(
                "TensorRT: this paddle build was compiled without TensorRT; install a "
                "paddlepaddle-gpu build with TensorRT or run without it"
            )
        config.enable_tensorrt_engine(
            workspace_size=gpu.trt_workspace_mb << 20,
            max_batch_size=gpu.trt_max_batch,
            min_subgraph_size=gpu.trt_min_subgraph_size,
            precision_mode=_precision_type(precision),
            use_static=gpu.trt_use_static,
            use_calib_mode=False,
        )
        low, high, best = _trt_shapes(meta, gpu.trt_max_batch)
        config.set_trt_dynamic_shape_info(low, high, best)
    return config


def _trt_shapes(meta: dict[str, Any], max_batch: int) -> tuple[dict, dict, dict]:
    """TensorRT's (min, max, optimal) shape of every input: batch 1..max_batch, frames 1..max_frames."""
    t_max = meta["max_frames"]
    t_min = 1 if meta["frames"] == "dynamic" else t_max
    low, high, best = {}, {}, {}
    for name, size in meta["features"].items():
        low[name], high[name], best[name] = (
            [1, t_min, size],
            [max_batch, t_max, size],
            [max_batch, t_max, size],
        )
    low["mask"], high["mask"], best["mask"] = [1, t_min], [max_batch, t_max], [max_batch, t_max]
    low["num_frames"], high["num_frames"], best["num_frames"] = [1], [max_batch], [max_batch]
    return low, high, best


class ExportedModel:
    """A model exported by :func:`export_model`, run by a Paddle Inference predictor.

    ``predict(batch)`` takes a batch as the data pipeline yields it (``features [B, T, D]``, ``mask [B, T]``,
    ``num_frames [B]``; other keys are ignored) and returns probabilities ``[B, num_classes]``.
    """

    model_file = PROGRAM_FILE
    """The file holding the model, named when its output does not fit the metadata."""

    def __init__(
        self,
        root: Path,
        metadata: dict[str, Any],
        *,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        onednn: bool | None = None,
        gpu: GpuOptions | None = None,
    ) -> None:
        from paddle import inference

        self.root = Path(root)
        self.metadata = metadata
        self.device = device
        self.precision = precision
        self.features: dict[str, int] = dict(metadata["features"])
        self.num_classes: int = metadata["num_classes"]
        self.max_frames: int = metadata["max_frames"]
        self.static_frames = metadata["frames"] == "static"
        config = _predictor_config(
            self.root, metadata, device, precision, threads, onednn, gpu or GpuOptions()
        )
        try:
            self._predictor = inference.create_predictor(config)
        except Exception as exc:  # noqa: BLE001 - paddle reports a damaged program as ValueError/RuntimeError/...
            raise ZooError(
                f"{self.root / PROGRAM_FILE}: Paddle Inference cannot load the exported program with "
                f"{self.root / PARAMS_FILE} on {device} at {precision} ({_one_line(exc)}); the export "
                f"is damaged, was made by an incompatible paddle ({metadata.get('paddle_version', '?')}), "
                f"or this precision does not support one of its operations: try fp32, or re-export it "
                f"with `zoo export`"
            ) from None
        names = list(self._predictor.get_input_names())
        if sorted(names) != sorted(metadata["inputs"]):
            raise ZooError(
                f"{self.root / PROGRAM_FILE} takes inputs {names} but {self.root / METADATA_FILE} lists "
                f"{metadata['inputs']}: the files come from different exports; re-export with `zoo export`"
            )
        self._inputs = {name: self._predictor.get_input_handle(name) for name in names}
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])

    @property
    def config(self) -> dict[str, Any]:
        """The config saved at export (``ZooConfig.to_dict()``), its vocabulary pointing into the export."""
        config = json.loads(json.dumps(self.metadata["config"]))
        vocab = (config.get("predict") or {}).get("vocabulary")
        if vocab:
            path = self.root / vocab
            config["predict"]["vocabulary"] = str(path.resolve()) if path.is_file() else None
        return config

    def __repr__(self) -> str:
        return (
            f"ExportedModel({str(self.root)!r}, model={self.metadata['model']!r}, device={self.device!r}, "
            f"precision={self.precision!r}, frames={self.metadata['frames']!r})"
        )

    def _arrays(self, batch: dict[str, Any]) -> tuple[list[np.ndarray], int]:
        where = f"the model exported in {self.root} (see {METADATA_FILE})"
        layout = ", ".join(f"{n}[{d}]" for n, d in self.features.items())
        missing = [name for name in [*self.features, "mask", "num_frames"] if name not in batch]
        if missing:
            raise ZooError(
                f"the batch has no {', '.join(missing)}: {where} needs features {layout}, mask and "
                f"num_frames; set dataset.features to match the export, or export a model for this data"
            )
        arrays = [np.asarray(batch[name]) for name in self.features]
        b = arrays[0].shape[0] if arrays[0].ndim == 3 else -1
        t = arrays[0].shape[1] if arrays[0].ndim == 3 else -1
        for (name, size), x in zip(self.features.items(), arrays):
            if x.ndim != 3 or x.shape[0] != b or x.shape[1] != t or x.shape[2] != size:
                raise ZooError(
                    f"feature {name!r} has shape {list(x.shape)}; {where} expects "
                    f"[batch, frames, {size}] for it (features {layout}) with one batch and frame "
                    f"count for all features; the data's feature layout does not match the export"
                )
        mask = np.asarray(batch["mask"], np.float32)
        counts = np.asarray(batch["num_frames"], np.int64)
        if mask.shape != (b, t) or counts.shape != (b,):
            raise ZooError(
                f"mask has shape {list(mask.shape)} and num_frames {list(counts.shape)}; the features "
                f"are [{b}, {t}, ...], so they must be [{b}, {t}] and [{b}] (the batch contract)"
            )
        if self.static_frames and t != self.max_frames:
            if t > self.max_frames:
                raise ZooError(
                    f"the batch has {t} frames but {where} was exported with a fixed "
                    f"{self.max_frames}; set dataset.max_frames to {self.max_frames}"
                )
            pad = self.max_frames - t
            arrays = [np.pad(x, ((0, 0), (0, pad), (0, 0))) for x in arrays]
            mask = np.pad(mask, ((0, 0), (0, pad)))
        arrays = [np.ascontiguousarray(x, np.float32) for x in arrays]
        return [*arrays, np.ascontiguousarray(mask), np.ascontiguousarray(counts)], b

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        """Probabilities ``[B, num_classes]`` (float32) for one batch (quantized batches are dequantized first)."""
        from zoo.data.pipeline import dequantize_batch

        arrays, b = self._arrays(dequantize_batch(batch, self.features))
        if b == 0:
            return np.zeros((0, self.num_classes), np.float32)
        out = self._run(arrays)
        if out.shape != (b, self.num_classes):
            raise ZooError(
                f"{self.root / self.model_file} returned shape {list(out.shape)}, expected [{b}, "
                f"{self.num_classes}] per {METADATA_FILE}; the files come from different exports"
            )
        return out.astype(np.float32, copy=False)

    __call__ = predict

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The runtime's output for the program's inputs (``metadata["inputs"]`` order)."""
        for name, value in zip(self.metadata["inputs"], arrays):
            handle = self._inputs[name]
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(value)
        self._predictor.run()
        return self._output.copy_to_cpu()


def load_exported(
    model_dir: str | os.PathLike,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    threads: int | None = None,
    onednn: bool | None = None,
    gpu: GpuOptions | None = None,
    verify_checksums: bool = True,
) -> ExportedModel:
    """Open an export directory for prediction on ``device`` ("cpu", "gpu", "gpu:N") at ``precision``.

    CPU: fp32 on paddle's kernels (``onednn=True``: on oneDNN), or bf16 through oneDNN on CPUs that support
    it; ``threads`` defaults to every usable core. GPU: fp32, fp16 or bf16, with TensorRT if
    ``gpu.tensorrt``. Any damage (missing or truncated files, unreadable or inconsistent metadata, a program
    that does not load) is a :class:`ZooError` naming the file.
    """
    from zoo.engine.runtime import init_paddle

    if precision not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"--precision {precision!r}: expected fp32, bf16 or fp16")
    init_paddle(device)  # a GPU request on a CPU-only paddle is a UsageError here
    root = Path(model_dir)
    meta = read_metadata(root)
    runtime = meta.get("runtime")
    if runtime is not None:  # an export for another runtime: its module loads it
        if runtime not in RUNTIMES:
            raise ZooError(
                f"{root / METADATA_FILE}: runtime {runtime!r} is not one this yt8m-zoo runs "
                f"({', '.join(RUNTIMES)}); upgrade yt8m-zoo"
            )
        module, _, name = RUNTIMES[runtime].partition(":")
        load = getattr(importlib.import_module(module), name)
        return load(root, meta, device=device, precision=precision, threads=threads, verify=verify_checksums)
    _check_files(root, meta, verify_checksums=verify_checksums)
    return ExportedModel(
        root, meta, device=device, precision=precision, threads=threads, onednn=onednn, gpu=gpu
    )
