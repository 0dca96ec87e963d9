"""`zoo run` end to end on the built-in sample dataset, as a new user runs it (a few minutes on 2 cores).

NeXtVLAD must beat chance by far and the mean-pooling baseline on the held-out test split.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ZOO = str(Path(sys.executable).with_name("zoo"))


def zoo_run(model: str, out: Path) -> dict:
    done = subprocess.run(
        [ZOO, "run", model, "--output", str(out)], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "built-in sample dataset" in done.stdout and "test gap" in done.stdout
    for name in (
        "model.safetensors",
        "history.png",
        "eval_results.json",
        "per_class_ap.csv",
        "predictions.csv",
        "predictions.jsonl",
    ):
        assert (out / name).is_file(), name
    return json.loads((out / "eval_results.json").read_text())["metrics"]


@pytest.mark.integration
@pytest.mark.timeout(1800)
@pytest.mark.slow
def test_nextvlad_beats_chance_and_mean_pooling(tmp_path):
    nextvlad = zoo_run("nextvlad", tmp_path / "nextvlad")
    mean_pool = zoo_run("mean-pool", tmp_path / "mean-pool")
    # chance: random scores put ~3 true labels of 200 classes in a top-20 -> GAP around 0.015
    assert nextvlad["gap"] > 0.2
    assert nextvlad["gap"] > mean_pool["gap"] + 0.05, (nextvlad, mean_pool)
    assert nextvlad["hit_at_1"] > mean_pool["hit_at_1"]
    assert nextvlad["num_videos"] == mean_pool["num_videos"] == 1000
