"""The built-in training callbacks: the metrics history (the default), VisualDL logs, TensorBoard event files.

Each sees the run through :class:`zoo.contracts.TrainingState` and writes only on the main rank
(``state.is_main``), so a distributed job writes one set of files. The VisualDL and TensorBoard writers are
optional packages; asking for one that is not installed is a :class:`~zoo.errors.UsageError` naming the extra.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.atomic import append_text, atomic_write_bytes, atomic_write_text
from zoo.contracts import CallbackBase, TrainingState
from zoo.errors import UsageError


def _optional(module: str, extra: str, callback: str) -> Any:
    """Import an optional package, or say which extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"train.callbacks names {callback!r}, which needs the {module} package: "
            f"pip install 'yt8m-zoo[{extra}]' (or drop {callback!r} from train.callbacks)"
        ) from None


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a row (ids, flags and strings are left out)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


# ---------------------------------------------------------------------------------------------------------
class History:
    """steps.jsonl (every ``log_interval`` steps), history.jsonl and history.csv (one row per epoch)."""

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.steps: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []

    def load_existing(self, *, up_to_step: int) -> None:
        """On resume: keep what was logged up to the checkpoint's step, drop what came after it."""
        for name, rows in (("steps.jsonl", self.steps), ("history.jsonl", self.epochs)):
            path = self.run_dir / name
            if path.is_file():
                for line in path.read_text().splitlines():
                    if line.strip():
                        row = json.loads(line)
                        if row.get("step", 0) <= up_to_step:
                            rows.append(row)
        self._write()

    def log_step(self, row: dict[str, Any]) -> None:
        self.steps.append(row)
        if self.enabled:
            append_text(self.run_dir / "steps.jsonl", json.dumps(row) + "\n", what="the step log")

    def log_epoch(self, row: dict[str, Any]) -> None:
        # a run stopped inside an epoch (train.max_iter) logged that epoch's row so far; resumed with a
        # higher limit it logs the epoch again when it ends: the new row replaces the earlier one
        self.epochs = [r for r in self.epochs if r.get("epoch") != row.get("epoch")] + [row]
        self._write()

    def _write(self) -> None:
        if not self.enabled:
            return
        atomic_write_text(self.run_dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in self.epochs))
        atomic_write_text(self.run_dir / "steps.jsonl", "".join(json.dumps(r) + "\n" for r in self.steps))
        columns: list[str] = []
        for row in self.epochs:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        for row in self.epochs:
            writer.writerow({k: row.get(k, "") for k in columns})
        atomic_write_text(self.run_dir / "history.csv", buf.getvalue())

    def plot(self, headline: str) -> Path | None:
        """history.png: training and validation loss, and the metric's headline value on the validation
        split. Skipped (None) without matplotlib: the JSONL and CSV files hold the same numbers."""
        if not self.enabled or not (self.steps or self.epochs):
            return None
        try:
            from matplotlib.figure import Figure
        except ImportError:
            return None
        key = f"valid_{headline}" if headline else ""
        scored = [r for r in self.epochs if key and key in r]
        fig = Figure(figsize=(11 if scored else 6, 4), dpi=100)
        axes = fig.subplots(1, 2 if scored else 1, squeeze=False)[0]
        loss = axes[0]
        if self.steps:
            loss.plot([r["step"] for r in self.steps], [r["loss"] for r in self.steps], label="train (step)")
        if self.epochs:
            xs = [r["step"] for r in self.epochs]
            loss.plot(xs, [r["train_loss"] for r in self.epochs], marker="o", label="train (epoch)")
        valid = [r for r in self.epochs if "valid_loss" in r]
        if valid:
            loss.plot(
                [r["step"] for r in valid], [r["valid_loss"] for r in valid], marker="o", label="validation"
            )
        loss.set(title="loss", xlabel="step", ylabel="loss")
        loss.legend()
        if scored:
            ax = axes[1]
            ax.plot([r["step"] for r in scored], [r[key] for r in scored], marker="o", label=headline)
            ax.set(title=f"validation {headline}", xlabel="step", ylabel=headline)
            ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        path = self.run_dir / "history.png"
        atomic_write_bytes(path, buf.getvalue())
        return path


class HistoryCallback(CallbackBase):
    """The metrics history: steps.jsonl, history.jsonl, history.csv and (with matplotlib) history.png."""

    name = "history"

    def __init__(self, config: Any, state: TrainingState) -> None:
        super().__init__(config, state)
        self.history = History(state.run_dir, enabled=state.is_main)

    def on_train_start(self, state: TrainingState) -> None:
        # a resumed run keeps the rows up to its checkpoint; a fresh one (step 0) starts empty files
        self.history.load_existing(up_to_step=state.step)

    def on_step(self, state: TrainingState, row: dict[str, Any]) -> None:
        self.history.log_step(row)

    def on_epoch(self, state: TrainingState, row: dict[str, Any]) -> None:
        self.history.log_epoch(row)

    def on_train_end(self, state: TrainingState) -> None:
        self.history.plot(state.headline)


# ---------------------------------------------------------------------------------------------------------
class _ScalarWriterCallback(CallbackBase):
    """Scalars to a dashboard writer: ``train/loss`` and ``train/lr`` per logged step, ``valid/<key>`` per
    validation, ``epoch/<key>`` per epoch, all against the optimizer step."""

    subdir = ""

    def __init__(self, config: Any, state: TrainingState) -> None:
        super().__init__(config, state)
        self.writer: Any = None
        self.logdir = state.run_dir / self.subdir

    def _open(self) -> Any:
        raise NotImplementedError

    def _scalar(self, tag: str, value: float, step: int) -> None:
        raise NotImplementedError

    def on_train_start(self, state: TrainingState) -> None:
        if state.is_main:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self.writer = self._open()

    def on_step(self, state: TrainingState, row: dict[str, Any]) -> None:
        if self.writer is not None:
            for key in ("loss", "lr"):
                if key in row:
                    self._scalar(f"train/{key}", float(row[key]), int(row["step"]))

    def on_validation(self, state: TrainingState, metrics: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in _scalars(metrics).items():
                self._scalar(f"valid/{key}", value, state.step)

    def on_epoch(self, state: TrainingState, row: dict[str, Any]) -> None:
        if self.writer is not None:
            for key, value in _scalars(row).items():
                if not key.startswith("valid_") and key not in ("step", "epoch"):
                    self._scalar(f"epoch/{key}", value, state.step)
            self.writer.flush()

    def on_train_end(self, state: TrainingState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class VisualDLCallback(_ScalarWriterCallback):
    """VisualDL logs in ``<save_dir>/visualdl`` (``visualdl --logdir <save_dir>/visualdl``)."""

    name = "visualdl"
    subdir = "visualdl"

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any, state: TrainingState) -> None:
        self._visualdl = _optional("visualdl", "visualdl", self.name)
        super().__init__(config, state)

    def _open(self) -> Any:
        return self._visualdl.LogWriter(logdir=str(self.logdir))

    def _scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag=tag, value=value, step=step)


class TensorBoardCallback(_ScalarWriterCallback):
    """TensorBoard event files in ``<save_dir>/tensorboard``, written by tensorboardX (no TensorFlow)."""

    name = "tensorboard"
    subdir = "tensorboard"

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any, state: TrainingState) -> None:
        self._tbx = _optional("tensorboardX", "tensorboard", self.name)
        super().__init__(config, state)

    def _open(self) -> Any:
        return self._tbx.SummaryWriter(logdir=str(self.logdir))

    def _scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, global_step=step)
