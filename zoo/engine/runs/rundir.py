"""A run directory's bookkeeping around training: one writer at a time, resume only with a config that keeps
the run exact, data paths stored absolute, and refusal of a run that would do nothing.

Files it adds to a run directory (see :mod:`zoo.engine.runs.checkpoint` for the rest)::

    run.lock        the OS file lock of the process writing the run (filelock; dropped when it ends)
    run.lock.owner  pid, host and command of that process (removed when it ends)
    resumes.jsonl   one line per --resume: when, from which checkpoint, which config keys changed
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zoo.atomic import atomic_write_text
from zoo.config import ZooConfig
from zoo.dirlock import DirectoryLock, remove_partials
from zoo.errors import DataError, UsageError
from zoo.storage import redact_tree

LOCK = "run.lock"
RESUMES = "resumes.jsonl"
CONFIG = "config.json"

# Keys whose change cannot alter the weights a resumed run ends with: accepted and recorded.
NEUTRAL = (
    "train.log_interval",
    "train.valid_interval",
    "train.checkpoint_steps",
    "train.save_dir",
    "train.callbacks",
    "train.num_gpus",  # the number of processes is checked against the checkpoint on its own
    "data.valid",
    "data.test",
    "data.infer",
    "data.collate_threads",
    "data.dequantize_on_device",
    "eval.",
    "predict.",
    "sample.",
)
# Keys that may change with --allow-change KEY: the run stays exact up to the checkpoint and goes on longer
# (or stops earlier) from there.
ACCEPTABLE = {
    "train.epoch": "more (or fewer) epochs: the epochs done so far are kept as they are",
    "train.max_iter": "a different step limit: the steps done so far are kept as they are",
    "train.fused_update": "the same Adam update from other kernels: bit for bit where paddle runs its AVX-512 "
    "adam kernel, within float32 rounding elsewhere",
}


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


def _flatten(tree: dict[str, Any]) -> dict[str, Any]:
    """``{"train": {"epoch": 6}}`` -> ``{"train.epoch": 6}`` (two levels: a dict inside a section, such
    as ``dataset.features``, is compared as one value)."""
    out: dict[str, Any] = {}
    for section, values in tree.items():
        if isinstance(values, dict) and values:
            out.update({f"{section}.{key}": value for key, value in values.items()})
        else:
            out[section] = values
    return out


def _plain(tree: Any) -> Any:
    return json.loads(json.dumps(tree, default=str))


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{"section.key": (saved value, new value)}`` for every key that differs (keys two levels deep)."""
    old_flat, new_flat = _flatten(_plain(saved)), _flatten(_plain(new))
    missing = object()
    changes = {}
    for key in sorted(set(old_flat) | set(new_flat)):
        a, b = old_flat.get(key, missing), new_flat.get(key, missing)
        if a != b:
            changes[key] = (None if a is missing else a, None if b is missing else b)
    return changes


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def check_resume_config(
    run_dir: Path, cfg: ZooConfig, allow: Iterable[str], log: Callable[[str], None], *, write: bool
) -> ZooConfig:
    """The config a resumed run goes on with: ``cfg`` if it keeps the run exact, else a UsageError naming
    every key that changed. Accepted changes are recorded in resumes.jsonl and config.json is updated."""
    allow = list(allow)
    for key in allow:
        if key not in ACCEPTABLE:
            raise UsageError(
                f"--allow-change {key}: only {', '.join(sorted(ACCEPTABLE))} may change when a run is resumed "
                f"(other changes would make it differ from an uninterrupted run); start a new run instead"
            )
    path = run_dir / CONFIG
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        log(f"--resume: {path} is missing, so the config cannot be compared with the run's")
        saved = None
    except ValueError as exc:
        raise UsageError(f"--resume: {path} is not valid JSON ({exc}); the run's config is lost") from None
    if saved is not None:
        saved_train = saved.get("train", {})
        if not cfg.train.fix_random_seed and "seed" in saved_train:
            # a fresh seed per run: the resumed run goes on with the seed the run drew
            cfg = cfg.with_overrides(
                {"train": {"seed": saved_train["seed"], "fix_random_seed": True}}, "the run's own seed"
            )
    changes = {} if saved is None else config_changes(saved, redact_tree(cfg.to_dict()))
    refused = {k: v for k, v in changes.items() if not _matches(k, NEUTRAL) and k not in allow}
    if refused:
        lines = []
        for key, (old, new) in refused.items():
            hint = f" (accept it with --allow-change {key})" if key in ACCEPTABLE else ""
            lines.append(f"  {key}: {_short(old)} in the run, {_short(new)} now{hint}")
        raise UsageError(
            f"--resume: the config differs from the one {run_dir} was trained with ({path}):\n"
            + "\n".join(lines)
            + "\nResuming with these changes would not continue the same run (the batches already seen, "
            "the schedule and the model depend on them). Resume with the run's values (for example "
            f"`zoo train --config {path} --resume`), or start a new run in another --save_dir"
        )
    if changes:
        log(
            "--resume: config changes accepted: "
            + ", ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in changes.items())
        )
    if write:
        from zoo.engine.runs.checkpoint import checkpoint_to_resume
        from zoo.errors import ZooError

        try:  # the checkpoint the run goes on from: a damaged latest one is skipped (the trainer says so)
            chosen = checkpoint_to_resume(run_dir, lambda _message: None)
        except ZooError:  # none intact: the trainer stops with the reason
            chosen = None
        latest = chosen.name if chosen is not None else None
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "pid": os.getpid(),
            "checkpoint": latest,
            "changes": {k: {"run": a, "now": b} for k, (a, b) in changes.items()},
            "allowed": allow,
        }
        with open(run_dir / RESUMES, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        if changes:
            atomic_write_text(path, json.dumps(redact_tree(cfg.to_dict()), indent=1))
    return cfg


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def with_absolute_paths(cfg: ZooConfig) -> ZooConfig:
    """``cfg`` with its data paths (and vocabulary) made absolute, so that the saved config works from any
    directory (`zoo eval --weights RUN` run elsewhere)."""
    patch: dict[str, Any] = {}
    for split in ("train", "valid", "test", "infer"):
        paths = getattr(cfg.data, split)
        if paths and any(_absolute(p) != p for p in paths):
            patch.setdefault("data", {})[split] = [_absolute(p) for p in paths]
    vocabulary = cfg.predict.vocabulary
    if vocabulary and _absolute(vocabulary) != vocabulary:
        patch["predict"] = {"vocabulary": _absolute(vocabulary)}
    return cfg.with_overrides(patch, "data paths made absolute") if patch else cfg


def open_run(
    run_dir: Path,
    cfg: ZooConfig,
    *,
    resume: bool,
    allow_changes: Iterable[str] = (),
    is_main: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[ZooConfig, DirectoryLock | None]:
    """Lock ``run_dir`` (main process only), clean leftovers of killed writes, check a resume's config.

    Returns the config the run goes on with and the lock (release it when the run ends; it is released at
    exit anyway)."""
    cfg = with_absolute_paths(cfg)
    lock = None
    if is_main:
        lock = DirectoryLock(run_dir / LOCK).acquire(log)
        for folder in (run_dir, run_dir / "checkpoints"):
            remove_partials(folder)
    if resume:
        cfg = check_resume_config(run_dir, cfg, allow_changes, log, write=is_main)
    elif allow_changes:
        raise UsageError("--allow-change applies to --resume only")
    return cfg, lock


def check_training_data(reader: Any, split: str = "train") -> None:
    """Refuse training data that holds nothing: no files, or only empty (0-byte) files."""
    sources = reader.sources()
    if not sources:
        raise DataError(f"the {split} data names no files; check data.{split} (or --data)")
    sizes = {}
    for source in sources:
        try:
            sizes[source] = os.path.getsize(source) if os.path.isfile(source) else None
        except OSError:
            sizes[source] = None
    if all(size == 0 for size in sizes.values()):
        shown = ", ".join(list(sizes)[:3]) + (f" and {len(sizes) - 3} more" if len(sizes) > 3 else "")
        raise DataError(
            f"the {split} data holds no videos: {shown} {'is' if len(sizes) == 1 else 'are'} empty "
            f"(0 bytes). Training on it would do nothing; point data.{split} (or --data) at real data"
        )


def check_work_left(epoch: int, step: int, train: Any, checkpoint: Path) -> str | None:
    """None while a resumed run has work left; else what to tell the user: the run is complete at
    ``checkpoint``, and how to train longer (the trainer then only writes the final weights from it)."""
    if epoch >= train.epoch or step >= train.max_iter:
        done = f"epoch {epoch} of train.epoch {train.epoch}" if epoch >= train.epoch else f"step {step}"
        if epoch < train.epoch:
            done += f" of train.max_iter {train.max_iter}"
        key = "train.epoch" if epoch >= train.epoch else "train.max_iter"
        return (
            f"--resume: {checkpoint} is at the end of the run ({done}); nothing is left to train. To train "
            f"longer, raise it: -o {key}=N --allow-change {key}"
        )
    return None
