"""Whether an export reproduces its model: probe batches with variable lengths, the largest difference
between the export's predictions and the dygraph model's, and the tolerance an export must meet to be written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.engine.export.predictor import ExportedModel, bf16_support, error_line
from zoo.errors import ZooError

CHECK_TOLERANCE = 1e-4
"""Largest |probability difference| between the export and the dygraph model accepted at export time.

fp32 exports agree to ~1e-7 on the built-in models; the bound only has to separate rounding from a broken
graph (the defects above gave differences of 0.2 to 2.0)."""


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


def check_export(directory: Path, metadata: dict[str, Any], model: Any, precision: str = "fp32") -> float:
    """Max |difference| between the export's CPU predictions and the dygraph model's, on probe batches."""
    exported = ExportedModel(directory, metadata, device="cpu", precision=precision)
    return max_difference(exported.predict, model, metadata, "the exported program")


def max_difference(predict: Any, model: Any, metadata: dict[str, Any], what: str) -> float:
    """Max |difference| between ``predict(batch)`` (an export's predictor) and the dygraph model's
    probabilities on the probe batches; a different output shape is an error naming ``what``."""
    from zoo.engine.infer.loops import dygraph_scorer

    reference = dygraph_scorer(model, metadata["features"])
    worst = 0.0
    for batch in probe_batches(metadata["features"], metadata["max_frames"]):
        expected = reference(batch)
        got = predict(batch)
        if got.shape != expected.shape:
            raise ZooError(f"{what} returns shape {list(got.shape)}, the model {list(expected.shape)}")
        worst = max(worst, float(np.max(np.abs(got - expected))) if got.size else 0.0)
    return worst


def check_bf16(directory: Path, metadata: dict[str, Any], model: Any) -> dict[str, Any]:
    """How far oneDNN bf16 predictions are from the model (informational: bf16 is a predict-time option)."""
    ok, why = bf16_support()
    if not ok:
        return {"skipped": why}
    try:
        return {"max_abs_diff": check_export(directory, metadata, model, precision="bf16")}
    except Exception as exc:  # noqa: BLE001 - reported in the metadata and by load_exported(precision="bf16")
        return {"error": error_line(exc)}
