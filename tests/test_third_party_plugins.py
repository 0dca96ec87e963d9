"""Plugins installed from their own distributions, found through the `yt8m_zoo` entry-point group.

The example plugin (tests/fixtures/zoo-example-plugin) must appear, build and train; the broken one
(tests/fixtures/zoo-broken-plugin) fails in five ways and must leave every other command working. Each is
pip-installed into a throwaway environment (the ``plugin_env`` fixture), never into the one running the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.plugins import get_plugins

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def example_plugin(plugin_env):
    """The python of a throwaway environment with the example plugin installed (pip, as its users would)."""
    return plugin_env(FIXTURES / "zoo-example-plugin")


@pytest.fixture(scope="module")
def broken_plugin(plugin_env):
    return plugin_env(FIXTURES / "zoo-broken-plugin")


def zoo_cli(python: Path | str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "zoo.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_example_plugin_registered_in_process_builds(monkeypatch, paddle):
    """The same plugin module registered in this process, as a test registers a fixture plugin."""
    monkeypatch.syspath_prepend(str(FIXTURES / "zoo-example-plugin"))
    import zoo_example_plugin

    plugins = get_plugins()
    plugins.add_plugin(zoo_example_plugin, name="example", distribution="zoo-example-plugin")
    try:
        model = zoo.build_model("gated-mean", num_classes=5, features={"rgb": 8}, hidden_size=16)
        assert model.head.fc.weight.shape == [16, 5]
        assert zoo.plugin_class("metric", "example-top1").__name__ == "Top1Accuracy"
    finally:
        plugins.remove_plugin("example")


@pytest.mark.integration
def test_example_plugin_is_listed(example_plugin):
    out = zoo_cli(example_plugin, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    infos = {i["name"]: i for i in json.loads(out.stdout)}
    assert infos["example"]["distribution"] == "zoo-example-plugin"
    assert infos["example"]["provides"] == {
        "model": ["gated-mean"],
        "reader": ["example-npz"],
        "metric": ["example-top1"],
        "dataset": ["example-emb"],
    }
    mine = zoo_cli(sys.executable, "plugins", "--json")  # this environment never saw it
    assert "example" not in {i["name"] for i in json.loads(mine.stdout)}


@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_example_plugin_passes_its_own_contract_tests(example_plugin):
    """The plugin's tests (tests/fixtures/zoo-example-plugin/tests) use zoo.testing; run them as its author
    would, in their own pytest process."""
    plugin = FIXTURES / "zoo-example-plugin"
    out = subprocess.run(
        [str(example_plugin), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(plugin / "tests")],
        cwd=plugin,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    assert "10 passed" in out.stdout


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_example_plugin_trains_evaluates_and_benches_on_its_own_dataset(example_plugin, tmp_path):
    run = tmp_path / "run"
    out = zoo_cli(example_plugin, "run", "gated-mean", "-o", "train.epoch=2", "--output", str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    assert (
        "test accuracy" in out.stdout and "gap" not in out.stdout
    )  # its own metric's keys, not YouTube-8M's
    saved = json.loads((run / "config.json").read_text())
    assert saved["dataset"] == {"num_classes": 10, "features": {"emb": 16}, "max_frames": 20}
    assert saved["data"]["reader"] == "example-npz" and saved["eval"]["metric"] == "example-top1"
    results = json.loads((run / "eval_results.json").read_text())
    assert (
        results["model"] == "gated-mean" and results["metrics"]["accuracy"] > 0.5
    )  # the sample is learnable

    evaluated = zoo_cli(
        example_plugin, "eval", "gated-mean", "--weights", str(run), "--output", str(tmp_path / "eval")
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((tmp_path / "eval" / "eval_results.json").read_text())["metrics"]
    assert again["accuracy"] == pytest.approx(results["metrics"]["accuracy"])

    bench = zoo_cli(
        example_plugin, "bench", "gated-mean", "--steps", "3", "--output", str(tmp_path / "bench")
    )
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["gated-mean"] and rows[0]["train_videos_per_s"] > 0


LENIENT = {"ZOO_STRICT_PLUGINS": "0"}  # CI runs strict; these tests are about the lenient default


@pytest.mark.integration
def test_broken_plugins_leave_everything_else_working(broken_plugin):
    out = zoo_cli(broken_plugin, "plugins", "--json", env=LENIENT)
    assert out.returncode == 0, out.stderr
    infos = {i["name"]: i for i in json.loads(out.stdout)}
    expected = {
        "broken-import": "a_module_nobody_installed",
        "missing-module": "does_not_exist",
        "misspelled-hook": "zoo_register_model",
        "duplicate-name": "already taken by plugin 'nextvlad'",
        "raises-in-hook": "cannot register its metrics",
    }
    for name, fragment in expected.items():
        assert infos[name]["status"] == "failed" and infos[name]["distribution"] == "zoo-broken-plugin"
        assert fragment in infos[name]["error"], (name, infos[name]["error"])
    assert infos["nextvlad"]["status"] == "loaded"
    table = zoo_cli(broken_plugin, "plugins", env=LENIENT)
    assert "5 plugin(s) failed to load" in table.stdout
    models = zoo_cli(broken_plugin, "models", env=LENIENT)
    assert models.returncode == 0 and "nextvlad" in models.stdout
    assert "warning: plugin 'broken-import' (zoo-broken-plugin) failed to load" in models.stderr
    unknown = zoo_cli(broken_plugin, "run", "nosuchmodel", env=LENIENT)
    assert unknown.returncode == 2
    assert (
        "unknown model 'nosuchmodel'" in unknown.stderr
        and "broken-import (zoo-broken-plugin)" in unknown.stderr
    )


@pytest.mark.integration
def test_strict_and_disabled_modes(broken_plugin):
    strict = zoo_cli(broken_plugin, "models", env={"ZOO_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2 and "zoo-broken-plugin" in strict.stderr
    off = zoo_cli(broken_plugin, "plugins", "--json", env={"ZOO_DISABLE_EXTERNAL_PLUGINS": "1"})
    infos = {i["name"]: i for i in json.loads(off.stdout)}
    assert infos["broken-import"]["status"] == "disabled"
    assert all(i["status"] != "failed" for i in infos.values())
    quiet = zoo_cli(broken_plugin, "models", env={"ZOO_DISABLE_EXTERNAL_PLUGINS": "1"})
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


@pytest.mark.integration
def test_config_errors_exit_2_naming_the_problem():
    out = zoo_cli(sys.executable, "train", "nextvlad", "-o", "train.nosuchkey=1")
    assert out.returncode == 2
    assert "nosuchkey" in out.stderr and "train" in out.stderr
    out = zoo_cli(sys.executable, "run", "nosuchmodel")
    assert out.returncode == 2 and "unknown model 'nosuchmodel'" in out.stderr
