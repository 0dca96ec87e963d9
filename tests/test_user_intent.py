"""What the user said is what happens: ``-o`` wins in every command (defaults < config file < sample section
< ``-o``), the class count comes from the data's manifest, a resume of a finished run finishes it, and
nothing is silently skipped (no validation, per-class files, run members given as checkpoints or exports)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import TINY_CLASSES
from test_engine import tiny_config, weights_of

from zoo.cli import build_parser
from zoo.config import bundled_config, load_config
from zoo.engine.train.trainer import Trainer
from zoo.errors import UsageError


def parsed(*argv: str):
    return build_parser(list(argv)).parse_args(list(argv))


# -- -o wins everywhere -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "override", "read"),
    [
        ("run", "train.epoch=2", lambda cfg: cfg.train.epoch),
        ("train", "train.epoch=2", lambda cfg: cfg.train.epoch),
        ("eval", "eval.batch_size=7", lambda cfg: cfg.eval.batch_size),
        ("predict", "predict.batch_size=5", lambda cfg: cfg.predict.batch_size),
    ],
)
def test_o_wins_over_the_sample_section(command, override, read, paddle):
    """base.yaml's sample section sets train.epoch 4 and eval/predict batches of 64; what -o says wins, and
    the rest of the sample section still applies."""
    from zoo.engine.commands.common import prepare_config as _prepare

    cfg = _prepare(parsed(command, "nextvlad", "-o", override), quiet=True)
    assert read(cfg) == int(override.split("=")[1])
    assert cfg.train.batch_size == 32 and cfg.model["cluster_size"] == 32  # the sample section's
    assert cfg.dataset.num_classes == 200  # the sample data's


def test_o_wins_over_the_sample_section_in_bench(tmp_path):
    from zoo.engine.bench import BenchSettings, resolve_config

    settings = BenchSettings(models=["nextvlad"], overrides=["train.batch_size=8", "eval.batch_size=3"])
    cfg = resolve_config("nextvlad", settings, 1, tmp_path)
    assert cfg.train.batch_size == 8 and cfg.eval.batch_size == 3
    assert cfg.model["cluster_size"] == 32  # the sample section's


def test_o_wins_over_the_config_in_export(tmp_path):
    from zoo.engine.commands.common import command_config as _config

    cfg = _config(parsed("export", "nextvlad", "-o", "model.hidden_size=24", "-o", "predict.top_k=3"))
    assert cfg.model["hidden_size"] == 24 and cfg.predict.top_k == 3


def test_o_wins_over_a_members_saved_config_in_ensemble(tiny_data, tmp_path, paddle):
    from zoo.engine.commands.ensemble import _config

    run = tmp_path / "run"
    run.mkdir()
    saved = tiny_config(tiny_data, run, "predict.top_k=20")
    (run / "config.json").write_text(json.dumps(saved.to_dict()))
    cfg = _config(parsed("ensemble", str(run), str(run), "-o", "predict.top_k=4"))
    assert cfg.predict.top_k == 4 and cfg.dataset.num_classes == TINY_CLASSES


def test_the_precedence_is_documented():
    text = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    assert "defaults < config file < `sample` section < `-o`" in text


# -- the class count the data knows -------------------------------------------------------------------------


def test_the_class_count_comes_from_the_manifest_and_a_smaller_one_is_refused(tiny_data, capsys):
    from zoo.engine.build import with_data_dir

    cfg = with_data_dir(load_config(bundled_config("mean-pool"), model="mean-pool"), str(tiny_data))
    assert cfg.dataset.num_classes == TINY_CLASSES  # not the yt8m preset's 3862
    assert f"{TINY_CLASSES} classes (its manifest.json" in capsys.readouterr().err
    with pytest.raises(
        UsageError, match=f"manifest.json says {TINY_CLASSES} classes.*-o dataset.num_classes=12"
    ):
        with_data_dir(
            load_config(bundled_config("mean-pool"), ["dataset.num_classes=5"], model="mean-pool"),
            str(tiny_data),
        )
    larger = with_data_dir(
        load_config(bundled_config("mean-pool"), ["dataset.num_classes=40"], model="mean-pool"),
        str(tiny_data),
    )
    assert larger.dataset.num_classes == 40  # what the user said, with a warning
    assert "the model has classes the data never labels" in capsys.readouterr().err


def test_data_named_in_the_config_brings_its_manifest_class_count_too(tiny_data, capsys):
    from zoo.engine.build import ensure_data

    paths = [f"data.train={tiny_data / 'train'}", f"data.valid={tiny_data / 'validate'}"]
    cfg = ensure_data(load_config(bundled_config("mean-pool"), paths, model="mean-pool"))
    assert cfg.dataset.num_classes == TINY_CLASSES
    assert f"{TINY_CLASSES} classes (its manifest.json" in capsys.readouterr().err
    files = sorted(str(p) for p in (tiny_data / "train").iterdir())
    cfg = ensure_data(load_config(bundled_config("mean-pool"), [f"data.train={files}"], model="mean-pool"))
    assert cfg.dataset.num_classes == TINY_CLASSES  # files: the manifest two folders up


# -- nothing silent ------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_resume_of_a_finished_run_writes_its_final_weights_and_says_so(tiny_data, tmp_path, paddle):
    run = tmp_path / "run"
    Trainer(tiny_config(tiny_data, run, "train.epoch=1", "train.max_iter=3"), progress=False).fit()
    final = weights_of(run)
    (run / "model.safetensors").unlink()  # e.g. killed between the last checkpoint and the final weights
    history = (run / "history.jsonl").read_text()
    logs: list[str] = []
    result = Trainer(
        tiny_config(tiny_data, run, "train.epoch=1", "train.max_iter=3"), progress=False, log=logs.append
    ).fit(resume=True)
    assert result.steps == 3 and result.describe_epochs() == "0 + 3 steps"
    assert any("nothing is left to train" in m and "wrote its final weights" in m for m in logs)
    for key, value in weights_of(run).items():
        np.testing.assert_array_equal(value, final[key], err_msg=key)
    assert (run / "history.jsonl").read_text() == history  # nothing trained, nothing logged again
    # going on from there with a higher limit logs the unfinished epoch once, when it ends
    Trainer(tiny_config(tiny_data, run, "train.epoch=1"), progress=False).fit(
        resume=True, allow_changes=("train.max_iter",)
    )
    epochs = [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()]
    assert epochs == [1]


@pytest.mark.integration
def test_resumes_jsonl_names_the_checkpoint_used_not_the_damaged_one(tiny_data, tmp_path, paddle):
    run = tmp_path / "run"
    Trainer(
        tiny_config(tiny_data, run, "train.epoch=1", "train.max_iter=4", "train.checkpoint_steps=2"),
        progress=False,
    ).fit()
    latest = run / "checkpoints" / "step-00000004" / "model.safetensors"
    data = bytearray(latest.read_bytes())
    data[-100] ^= 0xFF
    latest.write_bytes(bytes(data))
    Trainer(tiny_config(tiny_data, run, "train.epoch=1", "train.checkpoint_steps=2"), progress=False).fit(
        resume=True, allow_changes=("train.max_iter",)
    )
    record = json.loads((run / "resumes.jsonl").read_text().splitlines()[-1])
    assert record["checkpoint"] == "step-00000002"


@pytest.mark.integration
def test_training_without_validation_data_says_so_once(tiny_data, tmp_path, paddle):
    logs: list[str] = []
    Trainer(
        tiny_config(tiny_data, tmp_path / "run", "train.epoch=2", "data.valid=null"),
        progress=False,
        log=logs.append,
    ).fit()
    assert sum("no validation data" in m for m in logs) == 1


@pytest.mark.integration
def test_a_model_with_its_own_loss_says_which_loss_train_loss_is(tiny_data, tmp_path, paddle):
    logs: list[str] = []
    mix = [
        "model.cluster_size=4",
        "model.groups=2",
        "model.hidden_size=16",
        "model.gating_reduction=4",
        "model.mix_number=2",
        "train.max_iter=1",
    ]
    Trainer(
        tiny_config(tiny_data, tmp_path / "run", *mix, model="mix-nextvlad"), progress=False, log=logs.append
    ).fit()
    assert any("mix-nextvlad trains with its own loss" in m for m in logs)


@pytest.mark.integration
def test_checkpoints_and_exports_are_ensemble_members(tiny_data, tmp_path, paddle):
    import argparse

    from zoo.engine.commands.ensemble import _members
    from zoo.engine.export.tracing import export_model
    from zoo.engine.infer import ensemble as ens

    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, run, "train.epoch=1")
    Trainer(cfg, progress=False).fit()
    step = sorted((run / "checkpoints").iterdir())[-1]
    export_model(cfg, str(run), tmp_path / "export")
    args = argparse.Namespace(
        members=[str(run), str(step), str(tmp_path / "export")], member_top_k=5, device=None
    )
    from_run, from_checkpoint, from_export = _members(args, cfg, "test")  # as `zoo ensemble` loads them
    np.testing.assert_array_equal(from_run.classes, from_checkpoint.classes)
    np.testing.assert_allclose(from_run.probs, from_checkpoint.probs, rtol=0, atol=0)
    np.testing.assert_allclose(from_run.probs, from_export.probs, rtol=0, atol=1e-5)
    with pytest.raises(UsageError, match="not a run directory of `zoo train`.*checkpoints.*export"):
        ens.load_member(str(tmp_path), cfg, "test", 5, progress=False)


def test_help_texts(capsys):
    from zoo.cli import main

    with pytest.raises(SystemExit):
        main(["plugins", "new", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: zoo plugins new") and "--output DIR" in out
    with pytest.raises(SystemExit):
        main(["ensemble", "--help"])
    out = capsys.readouterr().out
    assert "geometric mean" in out and "checkpoints" in out
