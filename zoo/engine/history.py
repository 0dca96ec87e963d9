"""Metrics history of a training run: steps.jsonl (every log_interval steps), history.jsonl and
history.csv (one row per epoch) and history.png (loss and GAP curves)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from zoo.atomic import atomic_write_text


class History:
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

    def log_step(self, **row: Any) -> None:
        self.steps.append(row)
        if self.enabled:
            with open(self.run_dir / "steps.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.epochs.append(row)
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

    def plot(self) -> Path | None:
        """history.png: training loss per step and per epoch, validation loss, validation GAP."""
        if not self.enabled or not (self.steps or self.epochs):
            return None
        from zoo.plot import Panel, charts

        loss_series = {}
        if self.steps:
            loss_series["train (step)"] = ([r["step"] for r in self.steps], [r["loss"] for r in self.steps])
        if self.epochs:
            loss_series["train (epoch)"] = (
                [r["step"] for r in self.epochs],
                [r["train_loss"] for r in self.epochs],
            )
        valid = [r for r in self.epochs if "valid_loss" in r]
        if valid:
            loss_series["validation"] = ([r["step"] for r in valid], [r["valid_loss"] for r in valid])
        panels = [Panel(title="loss", xlabel="step", ylabel="loss", series=loss_series)]
        gap = [r for r in self.epochs if "valid_gap" in r]
        if gap:
            panels.append(
                Panel(
                    title="validation GAP@20",
                    xlabel="step",
                    ylabel="GAP",
                    series={
                        "GAP": ([r["step"] for r in gap], [r["valid_gap"] for r in gap]),
                        "Hit@1": ([r["step"] for r in gap], [r.get("valid_hit_at_1", 0.0) for r in gap]),
                    },
                )
            )
        path = self.run_dir / "history.png"
        charts(path, panels)
        return path
