"""Training checkpoints: written atomically, loaded without running code, resumed exactly.

Layout of a run directory (``train.save_dir``)::

    config.json                 the validated config (what `zoo eval --weights DIR` builds the model from)
    model.safetensors           the final (or latest) weights
    model.safetensors.sha256    its SHA-256 (``sha256sum -c`` format)
    checkpoints/step-00001234/  model.safetensors, optimizer.safetensors, state.json, SHA256SUMS
    latest                      the name of the newest complete checkpoint
    history.jsonl, history.csv, history.png

A checkpoint directory appears under its name only when every file in it is complete, and ``latest`` is
replaced only after that, so a crash leaves the previous checkpoint usable. ``SHA256SUMS`` lets a damaged
checkpoint (a bad disk, a truncated copy) be told apart before it is loaded: ``--resume`` then falls back
to the newest intact one, and eval and export name it and offer that one.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_dir, atomic_group, atomic_path, atomic_write_text
from zoo.errors import ZooError
from zoo.fetch import sha256_file

WEIGHTS_FILE = "model.safetensors"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
SUMS = "SHA256SUMS"


def write_sums(folder: Path, names: list[str]) -> None:
    """``SHA256SUMS`` in the format of ``sha256sum`` (so it can also be checked with ``sha256sum -c``)."""
    lines = "".join(f"{sha256_file(folder / name)}  {name}\n" for name in names)
    (folder / SUMS).write_text(lines)


def read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if digest and name:
            sums[name.strip()] = digest.strip().lower()
    return sums


def damage(path: Path) -> list[str]:
    """What is wrong with checkpoint directory ``path`` ([] if intact; one without SHA256SUMS, written
    before checksums existed, is only checked for completeness)."""
    problems = []
    for name in ("state.json", WEIGHTS_FILE, "optimizer.safetensors"):
        if not (path / name).is_file():
            problems.append(f"{name} is missing")
    if problems or not (path / SUMS).is_file():
        return problems
    for name, digest in read_sums(path / SUMS).items():
        try:
            actual = sha256_file(path / name)
        except FileNotFoundError:
            problems.append(f"{name} is missing")
            continue
        if actual != digest:
            problems.append(f"{name} does not match its SHA-256 in {SUMS}")
    return problems


def weights_damage(weights: Path) -> list[str]:
    """Problems of a weights file checked against its checksum (``NAME.sha256`` beside it, or the
    SHA256SUMS of its checkpoint directory)."""
    sidecar = weights.with_name(weights.name + ".sha256")
    sums_file = sidecar if sidecar.is_file() else weights.parent / SUMS
    if not sums_file.is_file():
        return []
    expected = read_sums(sums_file).get(weights.name)
    if expected is None or sha256_file(weights) == expected:
        return []
    return [f"{weights} does not match its SHA-256 in {sums_file}"]


def checkpoints_newest_first(run_dir: Path) -> list[Path]:
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-")), reverse=True)


def newest_intact(run_dir: Path, *, besides: Path | None = None) -> Path | None:
    for candidate in checkpoints_newest_first(run_dir):
        if candidate != besides and not damage(candidate):
            return candidate
    return None


def checkpoint_to_resume(run_dir: Path, log: Any = None) -> Path | None:
    """The checkpoint ``--resume`` continues from: the latest, or, if that one is damaged, the newest intact
    one after saying so (the steps after it are trained again, exactly as before)."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return newest_intact(run_dir)
    problems = damage(latest)
    if not problems:
        return latest
    fallback = newest_intact(run_dir, besides=latest)
    if fallback is None:
        raise ZooError(
            f"--resume: the latest checkpoint {latest} is damaged ({'; '.join(problems)}) and no intact one "
            f"is left in {run_dir / CHECKPOINTS}; start over with --overwrite"
        )
    (log or (lambda msg: print(msg, file=sys.stderr)))(
        f"--resume: the latest checkpoint {latest} is damaged ({'; '.join(problems)}); resuming from "
        f"{fallback}, the newest intact one"
    )
    return fallback


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
    save_arrays(path, model_arrays(model), metadata)


def save_arrays(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """A weights file with its ``.sha256`` beside it, both written atomically."""
    from safetensors.numpy import save_file

    needed = sum(a.nbytes for a in arrays.values())
    with atomic_group(), atomic_path(path, what="the weights", needed=needed) as tmp:
        save_file(arrays, str(tmp), metadata=metadata)
        digest = f"{sha256_file(tmp)}  {path.name}\n"
        # the weights and their checksum appear together, or neither does
        atomic_write_text(path.with_name(path.name + ".sha256"), digest, what="the weights' checksum")


def save_checkpoint(
    run_dir: Path,
    model: Any,
    optimizer: Any,
    state: dict[str, Any],
    keep: int = 2,
    extra: dict[str, dict[str, np.ndarray]] | None = None,
) -> Path:
    """``extra``: further safetensors files of the checkpoint by name (the weight average's)."""
    from safetensors.numpy import save_file

    name = f"step-{state['step']:08d}"
    target = run_dir / CHECKPOINTS / name
    weights = model_arrays(model)
    arrays, other = optimizer_arrays(model, optimizer)
    needed = sum(a.nbytes for group in (weights, arrays, *(extra or {}).values()) for a in group.values())
    previous = latest_checkpoint(run_dir)
    kept = f"the previous checkpoint {previous} is intact" if previous else "no checkpoint was written yet"
    with atomic_dir(target, what="the checkpoint", needed=needed, kept=kept) as tmp:
        save_file(weights, str(tmp / WEIGHTS_FILE))
        save_file(arrays, str(tmp / "optimizer.safetensors"))
        for file_name, file_arrays in (extra or {}).items():
            save_file(file_arrays, str(tmp / file_name))
        (tmp / "state.json").write_text(json.dumps({**state, "optimizer": other}, indent=1, default=float))
        write_sums(tmp, [WEIGHTS_FILE, "optimizer.safetensors", "state.json", *(extra or {})])
    atomic_write_text(run_dir / LATEST, name + "\n", what="the latest-checkpoint pointer")
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
    for name in (
        LATEST,
        WEIGHTS_FILE,
        WEIGHTS_FILE + ".sha256",
        "resumes.jsonl",
        "history.jsonl",
        "history.csv",
        "history.png",
        "steps.jsonl",
    ):
        (run_dir / name).unlink(missing_ok=True)
