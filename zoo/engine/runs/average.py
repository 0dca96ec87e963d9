"""``zoo average``: the mean of several weights of one architecture, written as a run directory.

Each source is a run directory (its final ``model.safetensors``), a checkpoint directory of a run
(``checkpoints/step-N``: the trained weights it holds) or a ``.safetensors`` file inside a run directory
(such as a checkpoint's ``ema.safetensors``). The model config comes from the run's ``config.json``.

Averaging helps for weights of one training trajectory (the last checkpoints of a run, or runs fine-tuned
from the same weights); independently initialised runs sit in different minima and their mean is a poor
model: ensemble those instead (`zoo ensemble`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import UsageError, ZooError


@dataclass
class WeightsSource:
    argument: str
    weights: Path
    run_dir: Path

    @property
    def config(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "config.json").read_text())


def resolve_source(argument: str) -> WeightsSource:
    """The weights file and run directory an argument names (errors say what was expected)."""
    from zoo.engine.runs.checkpoint import CHECKPOINTS, WEIGHTS_FILE, latest_checkpoint

    path = Path(argument).expanduser()
    if path.is_file():
        if path.suffix != ".safetensors":
            raise UsageError(f"{argument}: not a .safetensors weights file of a `zoo train` run")
        weights = path
        run_dir = next((p for p in path.parents if (p / "config.json").is_file()), None)
    elif (path / "config.json").is_file():  # a run directory
        run_dir, weights = path, path / WEIGHTS_FILE
        latest = latest_checkpoint(path)
        if not weights.is_file() and latest is not None:
            weights = latest / WEIGHTS_FILE
    elif path.parent.name == CHECKPOINTS and (path / WEIGHTS_FILE).is_file():
        run_dir, weights = path.parent.parent, path / WEIGHTS_FILE
    elif path.exists():
        raise UsageError(
            f"{argument}: not a run directory of `zoo train` (no config.json), a checkpoint directory or "
            f"a .safetensors file of a run"
        )
    else:
        raise UsageError(f"{argument}: does not exist")
    if run_dir is None or not (run_dir / "config.json").is_file():
        raise UsageError(f"{argument}: no config.json of its run found beside or above it")
    if not weights.is_file():
        raise UsageError(f"{argument}: the run has no weights yet ({weights} is missing)")
    return WeightsSource(argument, weights, run_dir)


def _load(source: WeightsSource) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    from zoo.engine.runs.weights import _check_integrity

    _check_integrity(source.weights)
    try:
        return load_file(str(source.weights))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise ZooError(f"{source.weights}: not a readable safetensors file ({exc})") from None


def average_weights(
    sources: Sequence[WeightsSource], log: Callable[[str], None] = lambda _m: None
) -> dict[str, np.ndarray]:
    """The element-wise mean (accumulated in float64, stored in each tensor's dtype), one file in memory
    at a time besides the sum. Tensor names and shapes must agree; integer tensors must be equal."""
    first = sources[0]
    model = first.config.get("model", {}).get("name")
    for source in sources[1:]:
        other = source.config.get("model", {}).get("name")
        if other != model:
            raise UsageError(
                f"{source.argument}: a {other!r} run, but {first.argument} is a {model!r} run; "
                f"average weights of one architecture"
            )
        if source.config.get("model") != first.config.get("model"):
            log(f"note: {source.argument} has other model options than {first.argument}; its config is used")
    base = _load(first)
    total = {name: value.astype(np.float64) for name, value in base.items() if value.dtype.kind == "f"}
    for source in sources[1:]:
        arrays = _load(source)
        missing, extra = sorted(set(base) - set(arrays)), sorted(set(arrays) - set(base))
        if missing or extra:
            name = (missing or extra)[0]
            where = f"lacks tensor {name!r} that" if missing else f"has tensor {name!r} that"
            raise UsageError(
                f"{source.weights} {where} {first.weights} does not have"
                f"{'' if len(missing) + len(extra) == 1 else f' ({len(missing) + len(extra)} names differ)'}; "
                f"average weights of one architecture and config"
            )
        for name, value in arrays.items():
            if value.shape != base[name].shape:
                raise UsageError(
                    f"{source.weights}: tensor {name!r} has shape {list(value.shape)}, but "
                    f"{list(base[name].shape)} in {first.weights}; average weights of one architecture and config"
                )
            if name in total:
                total[name] += value
            elif not np.array_equal(value, base[name]):
                raise UsageError(
                    f"{source.weights}: integer tensor {name!r} differs from {first.weights}; it cannot be averaged"
                )
    count = len(sources)
    return {
        name: (total[name] / count).astype(value.dtype) if name in total else value
        for name, value in base.items()
    }


def write_average(
    output: Path, sources: Sequence[WeightsSource], arrays: dict[str, np.ndarray]
) -> list[Path]:
    """``output`` as a run directory: config.json (the first source's, save_dir pointing here),
    model.safetensors with its .sha256, and average.json naming the sources."""
    from zoo.atomic import atomic_write_text, output_dir
    from zoo.engine.runs.checkpoint import WEIGHTS_FILE, save_arrays

    output_dir(output)
    config = sources[0].config
    config.setdefault("train", {})["save_dir"] = str(output.resolve())
    atomic_write_text(output / "config.json", json.dumps(config, indent=1))
    model = str(config.get("model", {}).get("name", ""))
    save_arrays(output / WEIGHTS_FILE, arrays, metadata={"model": model, "weights": "average"})
    record = {"sources": [str(s.weights.resolve()) for s in sources], "count": len(sources)}
    atomic_write_text(output / "average.json", json.dumps(record, indent=1))
    return [output / "config.json", output / WEIGHTS_FILE, output / "average.json"]
