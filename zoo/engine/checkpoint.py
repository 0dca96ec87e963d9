"""Training checkpoints: written atomically, loaded without running code, resumed exactly.

Layout of a run directory (``train.save_dir``)::

    config.json                 the validated config (what `zoo eval --weights DIR` builds the model from)
    model.safetensors           the final (or latest) weights
    checkpoints/step-00001234/  model.safetensors, optimizer.safetensors, state.json
    latest                      the name of the newest complete checkpoint
    history.jsonl, history.csv, history.png

A checkpoint directory appears under its name only when every file in it is complete, and ``latest`` is
replaced only after that, so a crash leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_dir, atomic_path, atomic_write_text
from zoo.errors import ZooError

WEIGHTS_FILE = "model.safetensors"
CHECKPOINTS = "checkpoints"
LATEST = "latest"


def model_arrays(model: Any) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(t.numpy()) for name, t in model.state_dict().items()}


def optimizer_arrays(model: Any, optimizer: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Optimizer state keyed by the model's structured parameter names (stable across processes)."""
    by_internal = {p.name: name for name, p in model.named_parameters()}
    arrays, other = {}, {}
    for key, value in optimizer.state_dict().items():
        if hasattr(value, "numpy"):
            owner = next((p for p in by_internal if key.startswith(p + "_")), None)
            if owner is None:
                arrays[f"__global__/{key}"] = np.ascontiguousarray(value.numpy())
            else:
                arrays[f"{by_internal[owner]}/{key[len(owner) + 1 :]}"] = np.ascontiguousarray(value.numpy())
        else:
            other[key] = value
    return arrays, other


def restore_optimizer(
    model: Any, optimizer: Any, arrays: dict[str, np.ndarray], other: dict[str, Any]
) -> None:
    import paddle

    internal = {name: p.name for name, p in model.named_parameters()}
    state: dict[str, Any] = dict(other)
    for key, value in arrays.items():
        owner, _, suffix = key.partition("/")
        if owner == "__global__":
            state[suffix] = paddle.to_tensor(value)
        elif owner in internal:
            state[f"{internal[owner]}_{suffix}"] = paddle.to_tensor(value)
        else:
            raise ZooError(f"optimizer state names parameter {owner!r}, which the model does not have")
    optimizer.set_state_dict(state)


def save_weights(path: Path, model: Any, metadata: dict[str, str] | None = None) -> None:
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file(model_arrays(model), str(tmp), metadata=metadata)


def save_checkpoint(run_dir: Path, model: Any, optimizer: Any, state: dict[str, Any], keep: int = 2) -> Path:
    from safetensors.numpy import save_file

    name = f"step-{state['step']:08d}"
    target = run_dir / CHECKPOINTS / name
    with atomic_dir(target) as tmp:
        save_file(model_arrays(model), str(tmp / "model.safetensors"))
        arrays, other = optimizer_arrays(model, optimizer)
        save_file(arrays, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**state, "optimizer": other}, indent=1, default=float))
    atomic_write_text(run_dir / LATEST, name + "\n")
    old = sorted(p for p in (run_dir / CHECKPOINTS).iterdir() if p.is_dir() and p.name.startswith("step-"))
    for stale in old[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / LATEST
    if not pointer.is_file():
        return None
    path = run_dir / CHECKPOINTS / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path, model: Any, optimizer: Any) -> dict[str, Any]:
    """Restore model and optimizer from a checkpoint directory; returns its training state."""
    import paddle
    from safetensors.numpy import load_file

    try:
        state = json.loads((path / "state.json").read_text())
        weights = load_file(str(path / "model.safetensors"))
        arrays = load_file(str(path / "optimizer.safetensors"))
    except FileNotFoundError as exc:
        raise ZooError(f"checkpoint {path} is incomplete ({exc.filename} missing)") from None
    except Exception as exc:  # noqa: BLE001
        raise ZooError(f"checkpoint {path} cannot be read: {exc}") from None
    own = model.state_dict()
    if set(own) != set(weights) or any(tuple(own[k].shape) != weights[k].shape for k in own):
        raise ZooError(
            f"checkpoint {path} was written by a different model or config; resume with the config "
            f"saved in {path.parent.parent / 'config.json'}"
        )
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in weights.items()})
    restore_optimizer(model, optimizer, arrays, state.pop("optimizer", {}))
    return state


def clear_run(run_dir: Path) -> None:
    """Remove a previous run's checkpoints and history from ``run_dir`` (``--overwrite``)."""
    for folder in (CHECKPOINTS, "visualdl", "tensorboard"):  # the callbacks' logs go with the run
        shutil.rmtree(run_dir / folder, ignore_errors=True)
    for name in (LATEST, WEIGHTS_FILE, "history.jsonl", "history.csv", "history.png", "steps.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
