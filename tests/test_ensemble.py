"""zoo ensemble and distillation from an ensemble (issue 13), on tiny real runs and hand-made predictions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import TINY_VIDEOS, tiny_run_overrides

from zoo.contracts import Prediction
from zoo.engine.infer import ensemble as ens
from zoo.engine.train.distill import TeacherStore, soften
from zoo.errors import DataError

ZOO = str(Path(sys.executable).with_name("zoo"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ZOO, *args], capture_output=True, text=True, cwd=cwd, timeout=900)


def tiny_overrides(data: Path, run_dir: Path, seed: int) -> list[str]:
    return tiny_run_overrides(
        data, run_dir, f"train.seed={seed}", "predict.batch_size=16", "predict.formats=[jsonl, kaggle-csv]"
    )


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory, paddle):
    from zoo.config import load_config
    from zoo.engine.train.trainer import Trainer

    root = tmp_path_factory.mktemp("ens-runs")
    runs = []
    for seed in (1, 2):
        run = root / f"run{seed}"
        Trainer(
            load_config(None, tiny_overrides(tiny_data, run, seed), model="nextvlad"), progress=False
        ).fit()
        runs.append(run)
    return runs


def table(source: str, rows: dict[str, list[tuple[int, float]]]) -> ens.TopKTable:
    preds = [Prediction(vid, [c for c, _ in pairs], [p for _, p in pairs]) for vid, pairs in rows.items()]
    return ens.TopKTable.from_predictions(source, preds)


# -- combination math ----------------------------------------------------------------------------------


def test_arithmetic_and_geometric_means_match_numpy_with_both_missing_rules():
    a = table("a.jsonl", {"v2": [(0, 0.9), (1, 0.5)], "v1": [(2, 0.8), (3, 0.4)]})
    b = table("b.csv", {"v1": [(2, 0.6), (0, 0.2)], "v2": [(1, 0.7), (0, 0.3)]})
    w = np.array([0.25, 0.75])
    floor = np.float32(1 - 1e-6)
    # v1 candidates 0, 2, 3: a lacks 0 (floor 0.4), b lacks 3 (floor 0.2)
    va = np.array([0.4 * floor, 0.8, 0.4], np.float32)
    vb = np.array([0.2, 0.6, 0.2 * floor], np.float32)
    arith = ens.combine([a, b], w, mean="arithmetic", missing="floor", top_k=3)
    assert arith.ids.tolist() == [b"v1", b"v2"]
    expected = w[0] * va + w[1] * vb
    order = np.argsort(-expected, kind="stable")
    assert arith.classes[0].tolist() == np.array([0, 2, 3])[order].tolist()
    np.testing.assert_allclose(arith.probs[0], expected[order], rtol=1e-6)
    geo = ens.combine([a, b], w, mean="geometric", missing="zero", top_k=3)
    # v1 with zeros: class 0 -> 0.4^... no: a lacks 0 -> 0, b lacks 3 -> 0
    ga = np.maximum([0.0, 0.8, 0.4], 1e-8)
    gb = np.maximum([0.2, 0.6, 0.0], 1e-8)
    expected = np.exp(w[0] * np.log(ga) + w[1] * np.log(gb))
    order = np.argsort(-expected, kind="stable")
    assert geo.classes[0].tolist() == np.array([0, 2, 3])[order].tolist()
    np.testing.assert_allclose(geo.probs[0], expected[order], rtol=1e-5)
    # v2: both list 0 and 1 -> no missing values
    np.testing.assert_allclose(
        sorted(geo.probs[1][:2].tolist()),
        sorted([0.9**0.25 * 0.3**0.75, 0.5**0.25 * 0.7**0.75]),
        rtol=1e-5,
    )


def test_members_with_other_videos_or_classes_are_errors_naming_the_file(tmp_path):
    a = table("a.jsonl", {"v1": [(0, 0.9)], "v2": [(1, 0.5)]})
    b = table("other.jsonl", {"v1": [(0, 0.9)], "v3": [(1, 0.5)]})
    with pytest.raises(DataError, match=r"other\.jsonl.*'v3'.*lacks 'v2'"):
        ens.combine([a, b], [1, 1])
    wide = table("wide.csv", {"v1": [(40, 0.9)], "v2": [(1, 0.5)]})
    with pytest.raises(DataError, match=r"wide\.csv.*class 40.*12 classes"):
        wide.check_classes(12)
    with pytest.raises(DataError, match=r"dup\.jsonl.*'v1'.*more than once"):
        ens.TopKTable.from_predictions("dup.jsonl", [Prediction("v1", [0], [0.5])] * 2)


# -- runs and files ------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_ensemble_of_two_runs_scores_members_and_fits_weights(two_runs, tmp_path):
    out = tmp_path / "ens"
    result = run_cli(
        "ensemble", *map(str, two_runs), "--split", "valid", "--fit", "--output", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads((out / "ensemble_scores.json").read_text())["scores"]
    assert set(scores) == {str(two_runs[0]), str(two_runs[1]), "ensemble"}
    best_member = max(scores[str(r)]["gap"] for r in two_runs)
    assert scores["ensemble"]["gap"] >= best_member - 1e-9  # fitted on this same (valid) split
    record = json.loads((out / "weights.json").read_text())
    assert record["fitted_on"] == "valid" and abs(sum(record["weights"]) - 1) < 1e-9
    assert (out / "predictions.csv").read_text().startswith("VideoId,LabelConfidencePairs")
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == TINY_VIDEOS["validate"]
    assert all(1 <= len(r["classes"]) <= 20 for r in rows)
    assert "ensemble" in result.stdout and "gap" in result.stdout.lower()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_ensemble_of_prediction_files_matches_runs_and_applies_saved_weights(two_runs, tiny_data, tmp_path):
    from zoo.config import load_config

    cfg = load_config(None, tiny_overrides(tiny_data, tmp_path / "x", 1), model="nextvlad")
    files = []
    for i, run in enumerate(two_runs):
        t = ens.predict_run(run, cfg, "valid", 12, progress=False)
        path = tmp_path / (f"m{i}.jsonl" if i == 0 else f"m{i}.csv")
        writer = "jsonl" if i == 0 else "kaggle-csv"
        from zoo.plugins import get_plugins

        fmt = get_plugins().registry("format").get(writer).cls
        fmt(fmt.Config()).write(path, t.predictions(), None)
        files.append(path)
    tables = [ens.read_prediction_file(p) for p in files]
    labels = ens.split_labels(cfg, "valid", tables[0].ids)
    from zoo.engine.build import build_metric

    def new_metric():
        return build_metric(cfg)

    members = [ens.score_table(t, labels, new_metric)["gap"] for t in tables]
    for mean in ("arithmetic", "geometric"):
        w, fitted = ens.fit_weights(tables, labels, new_metric, mean=mean)
        assert fitted >= max(members) - 1e-12
        combined = ens.combine(tables, w, mean=mean, top_k=20)
        assert ens.score_table(combined, labels, new_metric)["gap"] == pytest.approx(fitted, abs=1e-9)
    # the command: fit on the files, then apply the saved weights with --weights-of
    out = tmp_path / "fit"
    cmd = [
        "ensemble",
        *map(str, files),
        "--model",
        "nextvlad",
        *sum((["-o", o] for o in tiny_overrides(tiny_data, tmp_path / "x", 1)), []),
    ]
    result = run_cli(*cmd, "--fit", "--mean", "geometric", "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    again = run_cli(
        *cmd, "--split", "valid", "--mean", "geometric", "--weights-of", str(out / "weights.json"),
        "--output", str(tmp_path / "apply"), cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "apply" / "predictions.jsonl").read_text() == (out / "predictions.jsonl").read_text()
    # a file over another video set is refused, naming it
    rows = (files[1]).read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(rows[:-3]) + "\n")
    bad = run_cli("ensemble", str(files[0]), str(short), "--output", str(tmp_path / "bad"), cwd=tmp_path)
    assert bad.returncode == 1 and "short.csv" in bad.stderr


# -- distillation ----------------------------------------------------------------------------------------


def test_teacher_store_round_trip_is_memory_mapped_and_names_missing_videos(tmp_path):
    t = table("t.jsonl", {"b": [(3, 0.7), (1, 0.2)], "a": [(0, 0.9)], "c": [(5, 0.4), (2, 0.3)]})
    root = TeacherStore.write(tmp_path / "store", t.ids, t.classes, t.probs, {"teachers": ["t.jsonl"]})
    store = TeacherStore(root)
    assert isinstance(store.classes, np.memmap) and isinstance(store.probs, np.memmap)
    assert isinstance(store.ids, np.memmap) and len(store) == 3 and store.meta["top_k"] == 2
    soft = store.soft_targets(["c", "a", "b"], 6)
    expected = np.zeros((3, 6), np.float32)
    expected[0, [5, 2]] = [0.4, 0.3]
    expected[1, 0] = 0.9
    expected[2, [3, 1]] = [0.7, 0.2]
    np.testing.assert_array_equal(soft, expected)
    with pytest.raises(DataError, match=r"'zz' is not in the teacher store"):
        store.soft_targets(["a", "zz"], 6)


def test_distillation_loss_matches_numpy(paddle):
    import paddle

    from zoo.engine.settings import DistillConfig
    from zoo.engine.train.losses import training_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6)).astype(np.float32)
    labels = (rng.random((4, 6)) < 0.3).astype(np.float32)
    teacher = rng.random((4, 6)).astype(np.float32)
    teacher[0, :3] = 0.0  # classes outside the teacher's top-k

    def bce(z, y):
        return (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).sum(axis=1).mean()

    for weight, temp in ((0.5, 1.0), (0.3, 3.0)):
        cfg = DistillConfig(teachers=["x"], weight=weight, temperature=temp)
        expected = (1 - weight) * bce(logits, labels) + weight * temp**2 * bce(
            logits / temp, soften(teacher, temp)
        )
        got = training_loss(
            paddle.nn.Identity(),
            paddle.to_tensor(logits),
            {},
            paddle.to_tensor(labels),
            distill=cfg,
            soft_targets=paddle.to_tensor(teacher),
        )
        assert float(got) == pytest.approx(expected, rel=1e-5)


@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_a_student_distilled_from_two_runs_trains_evaluates_and_exports(two_runs, tiny_data, tmp_path):
    student = tmp_path / "student"
    overrides = tiny_overrides(tiny_data, student, 7) + [
        f"train.distill.teachers={json.dumps([str(r) for r in two_runs])}",
        "train.distill.weight=0.7",
        "train.distill.temperature=2",
        "train.distill.mean=geometric",
    ]
    args = sum((["-o", o] for o in overrides), [])
    result = run_cli("train", "nextvlad", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    store = TeacherStore(student / "teacher")
    assert len(store) == TINY_VIDEOS["train"] and store.meta["mean"] == "geometric"
    assert (student / "model.safetensors").is_file()
    history = [json.loads(line) for line in (student / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(np.isfinite(r["train_loss"]) for r in history)
    ev = run_cli("eval", "--weights", str(student), "--output", str(tmp_path / "eval"), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert 0 <= json.loads((tmp_path / "eval" / "eval_results.json").read_text())["metrics"]["gap"] <= 1
    ex = run_cli("export", "--weights", str(student), "--output", str(tmp_path / "exported"), cwd=tmp_path)
    assert ex.returncode == 0, ex.stderr


def _random_table(rng, n, k, num_classes, source):
    classes = np.stack([rng.choice(num_classes, k, replace=False) for _ in range(n)]).astype(np.int32)
    probs = -np.sort(-rng.random((n, k)).astype(np.float32), axis=1)
    classes[rng.random((n, k)) < 0.1] = -1  # some rows list fewer than k classes
    probs[classes < 0] = 0
    return ens.TopKTable(source, np.array([b"v%05d" % i for i in range(n)]), classes, probs)


@pytest.mark.parametrize("table_bytes", [ens.POSITION_TABLE_BYTES, 0], ids=["table", "searchsorted"])
@pytest.mark.parametrize("missing", ["floor", "zero"])
def test_member_values_match_a_pairwise_lookup(missing, table_bytes, monkeypatch):
    """Both lookups of the combine step (position table, searchsorted) give every member's value exactly
    as comparing all (candidate, listed class) pairs does."""
    monkeypatch.setattr(ens, "POSITION_TABLE_BYTES", table_bytes)
    rng = np.random.default_rng(3)
    tables = [_random_table(rng, 300, 6, 15, f"m{i}") for i in range(3)]
    cand, values, keep = ens.member_values(tables, 10, 290, missing)
    for m, t in enumerate(tables):
        classes, probs = t.classes[10:290], t.probs[10:290]
        for r in range(len(cand)):
            listed = {int(c): float(p) for c, p in zip(classes[r], probs[r]) if c >= 0}
            floor = min(listed.values(), default=0.0) * float(ens.FLOOR_SCALE) if missing == "floor" else 0.0
            for j in np.flatnonzero(keep[r]):
                expected = listed.get(int(cand[r, j]), np.float32(floor))
                assert values[m, r, j] == np.float32(expected)


@pytest.mark.integration
@pytest.mark.timeout(1800)
@pytest.mark.slow
def test_an_ensemble_of_three_runs_beats_its_best_member(tmp_path_factory, paddle):
    """Three tiny nextvlad runs (seeds 1-3): the equal-weight arithmetic mean scores a higher GAP on the
    validation split than the best of them."""
    from zoo_yt8m_data.synth import SynthSpec, generate

    from zoo.config import load_config
    from zoo.engine.build import build_metric
    from zoo.engine.train.trainer import Trainer

    data = tmp_path_factory.mktemp("ens3-data")
    generate(
        data,
        SynthSpec(
            train_videos=240,
            valid_videos=120,
            test_videos=8,
            classes=12,
            min_frames=3,
            max_frames=10,
            train_shards=2,
            valid_shards=1,
            test_shards=1,
            seed=11,
        ),
    )
    runs, cfg = [], None
    for seed in (1, 2, 3):
        run = tmp_path_factory.mktemp("ens3-runs") / f"run{seed}"
        cfg = load_config(None, tiny_overrides(data, run, seed), model="nextvlad")
        Trainer(cfg, progress=False).fit()
        runs.append(run)
    tables = [ens.load_member(str(run), cfg, "valid", 12, progress=False) for run in runs]
    combined = ens.combine(tables, [1, 1, 1], top_k=12)
    labels = ens.split_labels(cfg, "valid", combined.ids)
    members = [ens.score_table(t, labels, lambda: build_metric(cfg))["gap"] for t in tables]
    together = ens.score_table(combined, labels, lambda: build_metric(cfg))["gap"]
    assert together > max(members), (together, members)
