"""`zoo plugins new NAME`: the package it writes installs, passes its own contract tests and trains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.errors import UsageError
from zoo.scaffold import write_plugin

ZOO = str(Path(sys.executable).with_name("zoo"))


@pytest.mark.parametrize("name", ["My-Model", "9lives", "a_b", "a--b", "-a", "a-", "", "a b", "über"])
def test_invalid_names_are_refused_saying_what_is_allowed(name, tmp_path):
    with pytest.raises(UsageError, match="lower-case letters a-z, digits 0-9 and single hyphens"):
        write_plugin(name, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_and_taken_names_are_refused(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty directory"):
        write_plugin("fresh-model", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="a model named 'nextvlad' already exists"):
        write_plugin("nextvlad", tmp_path / "nv")
    (tmp_path / "empty").mkdir()
    assert write_plugin("fresh-model", tmp_path / "empty") == tmp_path / "empty"
    assert (tmp_path / "empty" / "zoo_fresh_model" / "fresh-model.yaml").is_file()


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_new_plugin_installs_passes_its_tests_and_trains(tmp_path, plugin_env):
    out = subprocess.run(
        [ZOO, "plugins", "new", "scaffolded-pool", "--output", str(tmp_path / "plugin")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    plugin = tmp_path / "plugin"
    python = str(plugin_env(plugin, editable=True))  # as its author would: pip install -e
    tests = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=plugin,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert tests.returncode == 0, tests.stdout[-4000:]
    assert "7 passed" in tests.stdout
    run = subprocess.run(
        [python, "-m", "zoo.cli", "run", "scaffolded-pool", "-o", "train.epoch=1", "-o", "train.max_iter=3"]
        + ["--output", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["model"] == "scaffolded-pool" and 0 <= results["metrics"]["gap"] <= 1
