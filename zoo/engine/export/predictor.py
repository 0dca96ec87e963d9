"""Running an export: Paddle Inference predictors on CPU or GPU, and the loaders of other runtimes' exports.

CPU predictors run fp32 on paddle's own kernels and bf16 on oneDNN. ONEDNN_NOTE: with Paddle 3.3, oneDNN
fp32 was slower than both the dygraph model and paddle's kernels (its broadcasting multiply takes ~1 s on a
[32, 300, 8, 128] x [32, 300, 8, 1] NeXtVLAD batch; see benchmarks/bench_inference.py), and two oneDNN
defects are worked around whenever it is on (both found by the export check): the ``inplace_pass`` lets a
oneDNN activation overwrite a tensor that another op still reads (the MoE head's ``log(p) - log1p(-p)``
came out wrong by up to 2.0), and with bf16 the ``operator_unsqueeze_onednn_fuse_pass`` drops an unsqueeze
(NeXtVLAD fails to build). Both passes are switched off for oneDNN predictors.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.engine.export.metadata import (
    METADATA_FILE,
    PARAMS_FILE,
    PROGRAM_FILE,
    check_files,
    read_metadata,
)
from zoo.errors import UsageError, ZooError

_ONEDNN_PASSES_OFF = ("inplace_pass",)
_BF16_PASSES_OFF = ("operator_unsqueeze_onednn_fuse_pass",)
_ONEDNN_SHAPE_CACHE = 64  # oneDNN primitives are cached per input shape; T varies per batch, so bound it

RUNTIMES = {"onnxruntime": "zoo.engine.export.onnx:load"}
"""Exports for runtimes other than Paddle Inference (``"runtime"`` in the metadata) and their loaders,
imported on first use; a Paddle Inference export has no ``runtime`` key."""


def error_line(exc: BaseException) -> str:
    """The informative line of an exception; paddle's tracer wraps the cause in pages of transformed code."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if "Error:" in line and not line.startswith("File ")]
    text = causes[0] if causes else (lines[0] if lines else "")
    return text[:400] if "Error:" in text else f"{type(exc).__name__}: {text[:400]}"


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
                f"{self.root / PARAMS_FILE} on {device} at {precision} ({error_line(exc)}); the export "
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
    check_files(root, meta, verify_checksums=verify_checksums)
    return ExportedModel(
        root, meta, device=device, precision=precision, threads=threads, onednn=onednn, gpu=gpu
    )
