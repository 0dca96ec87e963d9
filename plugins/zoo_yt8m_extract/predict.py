"""Classify video files: extract their features, then run ``zoo predict`` on them; ``--timeline`` adds
per-window labels over each video (windows of ``--window`` seconds overlapping by ``--overlap``, as
MediaPipe's local-video inference does with 5 s windows overlapping by 4 s), written as JSON.

This is ``zoo predict --videos`` (the command extension ``predict-videos``). Prediction itself is the
engine's ``zoo predict`` on the extracted records, run as a command in a process of its own (PaddlePaddle and
TensorFlow are not loaded into one process, and this plugin depends on the CLI, not on engine internals).
Output folder: ``features/`` (the extracted records, resumable), ``predictions.{csv,jsonl}`` (whole videos),
``windows/`` and ``timeline.json`` with ``--timeline``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from zoo.atomic import atomic_write_text
from zoo.errors import DataError
from zoo_yt8m_extract.windows import check_window

TIMELINE = "timeline.json"
SHOW = 5


def run_predict(records: Path, output: Path, args: Any, *extra: str) -> Path:
    """``zoo predict [MODEL] --filelist RECORDS --output OUTPUT`` with the caller's model options; returns the
    JSON lines file."""
    command = [sys.executable, "-m", "zoo.cli", "predict", "--filelist", str(records)]
    command += ["--output", str(output), *extra]
    if getattr(args, "weights", None):
        command += ["--weights", str(args.weights)]
    if getattr(args, "model", None):
        command.insert(4, args.model)
    for flag, attr in (
        ("--config", "config"),
        ("--weights-sha256", "weights_sha256"),
        ("--vocabulary", "vocabulary"),
        ("--top-k", "top_k"),
        ("--device", "device"),
        ("--model", "model_dir"),  # an exported model (zoo predict --model DIR)
        ("--precision", "precision"),
    ):
        if getattr(args, attr, None):
            command += [flag, str(getattr(args, attr))]
    for override in getattr(args, "override", None) or []:
        command += ["-o", override]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
        raise DataError(f"zoo predict on {records} failed (exit {result.returncode}): " + " | ".join(detail))
    jsonl = output / "predictions.jsonl"
    if not jsonl.is_file():
        raise DataError(f"zoo predict wrote no {jsonl}; is `jsonl` among predict.formats?")
    return jsonl


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise DataError(f"{path} line {line_number}: not JSON ({exc})") from None
    return rows


def timeline(rows: list[dict[str, Any]], windows: dict[str, tuple[str, float, float]], args: Any) -> dict:
    """The per-window predictions grouped by video, windows in time order."""
    videos: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["id"] not in windows:
            continue
        video, start, end = windows[row["id"]]
        entry = {"start": start, "end": end, "classes": row["classes"][:SHOW], "scores": row["scores"][:SHOW]}
        if "names" in row:
            entry["names"] = row["names"][:SHOW]
        videos.setdefault(video, []).append(entry)
    for entries in videos.values():
        entries.sort(key=lambda e: e["start"])
    return {"window_seconds": args.window, "overlap_seconds": args.overlap, "videos": videos}


def describe(row: dict[str, Any]) -> str:
    names = row.get("names") or [""] * len(row["classes"])
    parts = [
        f"{name or cls} ({score:.3f})"
        for cls, name, score in zip(row["classes"][:SHOW], names[:SHOW], row["scores"][:SHOW])
    ]
    return f"{row['id']}: " + ", ".join(parts)


def predict_videos(videos: list, args: Any) -> int:
    """Extract ``videos`` into ``args.output``/features (and windows), predict with ``args.weights``, print
    each video's top classes; returns the exit code (1 when a video failed)."""
    from zoo_yt8m_extract.runner import extract_videos

    output = Path(args.output)
    features = output / "features"
    stride = check_window(args.window, args.overlap) if args.timeline else None
    window_dir = output / "windows" if args.timeline else None
    summary = extract_videos(
        videos, features, args, windows=(window_dir, args.window, stride) if window_dir else None
    )
    if summary.done + summary.skipped == 0:
        _print_failures(summary)
        return 1
    rows = read_rows(run_predict(features, output, args))
    for row in rows:
        print(describe(row))
    if window_dir is not None:
        window_rows = read_rows(
            run_predict(
                window_dir,
                output / "windows_predictions",
                args,
                "-o",
                'predict.formats=["jsonl"]',
            )
        )
        windows = {}
        for row in window_rows:  # a window's id carries its video and times
            video, _, times = row["id"].rpartition("#t=")
            start, _, end = times.partition(",")
            windows[row["id"]] = (video, float(start), float(end))
        atomic_write_text(
            output / TIMELINE, json.dumps(timeline(window_rows, windows, args), indent=1) + "\n"
        )
        print(f"timeline: {output / TIMELINE}")
    return _print_failures(summary)


def _print_failures(summary: Any) -> int:
    if not summary.failed:
        return 0
    print(f"{len(summary.failed)} video(s) failed:", file=sys.stderr)
    for path, reason in summary.failed:
        print(f"  {path}: {reason}", file=sys.stderr)
    return 1
