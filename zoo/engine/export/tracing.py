"""Exporting a model: ``paddle.jit.save`` of the model traced into a Paddle Inference program, checked
against the model before the directory appears.

Deployable models: ``paddle.jit.save`` exports and predictions through Paddle Inference.

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

How the export is run and checked: :mod:`zoo.engine.export.predictor` and :mod:`zoo.engine.export.checks`;
what ``metadata.json`` holds: :mod:`zoo.engine.export.metadata`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from zoo.atomic import atomic_dir, is_no_space
from zoo.config import ZooConfig
from zoo.contracts import CustomOps, ExportConstants
from zoo.engine.export.checks import CHECK_TOLERANCE, check_bf16, check_export, probe_batches
from zoo.engine.export.metadata import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_FILE,
    PARAMS_FILE,
    PROGRAM_FILE,
    VOCABULARY_FILE,
    check_output_dir,
    file_record,
    input_names,
    read_vocabulary,
    zoo_version,
)
from zoo.engine.export.predictor import error_line
from zoo.errors import UsageError, ZooError

_PREFIX = "inference"  # paddle.jit.save(path_prefix) writes <prefix>.json and <prefix>.pdiparams under PIR

Frames = Literal["auto", "dynamic", "static"]


def _probability_layer(model: Any, features: Sequence[str]) -> Any:
    """``model`` behind a forward of positional tensors that returns probabilities (what jit.save needs)."""
    import paddle
    import paddle.nn.functional as F

    from zoo.engine.feed import logits_of

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


def dygraph_model(
    cfg: ZooConfig, weights: str | None, weights_sha256: str | None = None, *, quiet: bool = True
) -> tuple[Any, dict[str, Any]]:
    """``cfg``'s model in eval mode with ``weights`` (its random initialisation when None), and the
    ``weights`` record of an export's metadata: what every export runs and is checked against."""
    from zoo.engine.build import build_model
    from zoo.engine.runs.weights import apply_weights, read_weights

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

    ``weights`` is anything :func:`zoo.engine.runs.weights.read_weights` accepts; ``None`` exports the random
    initialisation and is refused unless ``allow_random``. ``frames``: "auto" tries a dynamic frame count and
    falls back to ``T = max_frames`` when the model does not trace or does not reproduce itself that way.
    ``custom_ops``: the program calls the model's own Paddle custom operators (:class:`zoo.contracts.CustomOps`;
    faster, but loadable only where they are registered: yt8m-zoo's ``load_exported`` does that itself).
    The directory appears (replacing an earlier export) only when complete and checked.
    """
    import paddle

    from zoo.engine.build import count_parameters

    output = Path(output)
    check_output_dir(output)
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
    vocab_map, vocab_path = read_vocabulary(vocabulary, cfg)
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
        "zoo_version": zoo_version(),
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
                    PROGRAM_FILE: file_record(tmp / PROGRAM_FILE),
                    PARAMS_FILE: file_record(tmp / PARAMS_FILE),
                }
                diff = check_export(tmp, metadata, model)
            except Exception as exc:  # noqa: BLE001 - paddle's tracer and predictor raise many types
                if is_no_space(exc):
                    raise  # atomic_dir words it: the path, the space needed and free
                failures.append(f"{mode} frames: {error_line(exc)}")
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
        metadata["check"]["bf16"] = check_bf16(tmp, metadata, model)
        if vocab_path is not None:
            shutil.copyfile(vocab_path, tmp / VOCABULARY_FILE)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n")
    return output
