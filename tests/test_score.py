"""``zoo score``: a Kaggle prediction file against labelled TFRecords (real records, real readers, real CLI)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from zoo_yt8m_metrics.kaggle import write_kaggle_csv
from zoo_yt8m_metrics.score import score_predictions

import zoo
from zoo.cli import main as zoo_main
from zoo.contracts import Prediction
from zoo.errors import DataError
from zoo.ranking import top_k

CLASSES = 12


def make_videos(n: int = 40, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"vid{i:03d}" for i in range(n)]
    labels = (rng.random((n, CLASSES)) < 0.2).astype(np.float32)
    labels[3] = 0  # a video without labels
    scores = (rng.random((n, CLASSES)) + 0.5 * labels).astype(np.float32)
    return ids, labels, scores


def write_records(path, ids, labels, *, video_level: bool = False) -> None:
    from zoo_yt8m_data.tfrecord import write_tfrecord
    from zoo_yt8m_data.wire import encode_example, encode_sequence_example

    payloads = []
    for vid, row in zip(ids, labels):
        context = {"id": vid.encode(), "labels": np.flatnonzero(row).astype(np.int64)}
        if video_level:
            payloads.append(
                encode_example(
                    {
                        **context,
                        "mean_rgb": np.zeros(1024, np.float32),
                        "mean_audio": np.zeros(128, np.float32),
                    }
                )
            )
        else:
            frames = {"rgb": np.full((2, 1024), 7, np.uint8), "audio": np.full((2, 128), 9, np.uint8)}
            payloads.append(encode_sequence_example(context, frames))
    write_tfrecord(path, payloads)


def predictions_for(ids, scores, k=5) -> list[Prediction]:
    classes, values = top_k(scores, k)
    return [Prediction(v, classes[i].tolist(), values[i].tolist()) for i, v in enumerate(ids)]


def expected_metrics(scores, labels, k=5) -> dict:
    metric = zoo.build_metric("yt8m", num_classes=CLASSES, features={"rgb": 1}, top_k=k)
    metric.update(scores, labels)
    return metric.compute()


def test_score_equals_the_metric_on_the_same_predictions(tmp_path):
    ids, labels, scores = make_videos()
    pred = tmp_path / "pred.csv"
    write_kaggle_csv(pred, predictions_for(ids, scores))
    videos = [(v, np.flatnonzero(row).tolist()) for v, row in zip(ids, labels)]
    report = score_predictions(str(pred), videos, num_classes=CLASSES, top_k=5)
    want = expected_metrics(scores, labels)
    for key in ("gap", "hit_at_1", "perr", "map"):
        assert report.metrics[key] == pytest.approx(want[key], abs=1e-12)
    assert report.missing == []


def test_videos_without_a_row_count_as_empty_predictions(tmp_path):
    ids, labels, scores = make_videos()
    pred = tmp_path / "pred.csv"
    write_kaggle_csv(pred, predictions_for(ids[5:], scores[5:]))
    videos = [(v, np.flatnonzero(row).tolist()) for v, row in zip(ids, labels)]
    report = score_predictions(str(pred), videos, num_classes=CLASSES, top_k=5)
    assert report.missing == ids[:5]
    scores = scores.copy()
    scores[:5] = -np.inf  # exactly "nothing predicted": labels still count in the denominators
    want = expected_metrics(scores, labels)
    for key in ("gap", "hit_at_1", "perr", "map"):
        assert report.metrics[key] == pytest.approx(want[key], abs=1e-12)


def test_unknown_ids_and_duplicate_videos_are_errors(tmp_path):
    ids, labels, scores = make_videos(10)
    pred = tmp_path / "pred.csv"
    write_kaggle_csv(pred, predictions_for(ids + ["stranger"], np.vstack([scores, scores[:1]])))
    videos = [(v, np.flatnonzero(row).tolist()) for v, row in zip(ids, labels)]
    with pytest.raises(
        DataError,
        match=r"1 of 11 rows are for videos that are not in the labelled data .*'stranger' \(line 12\)",
    ):
        score_predictions(str(pred), videos, num_classes=CLASSES)
    with pytest.raises(DataError, match="'vid000' occurs twice in the labelled data"):
        score_predictions(str(pred), videos + videos[:1], num_classes=CLASSES)
    with pytest.raises(DataError, match="class 12 is outside 0 .. 11"):
        score_predictions(str(pred), [("vid000", [12])], num_classes=CLASSES)


def test_cli_scores_frame_level_records(tmp_path, capsys):
    ids, labels, scores = make_videos()
    data = tmp_path / "validate"
    data.mkdir()
    write_records(data / "validate0000.tfrecord", ids[:25], labels[:25])
    write_records(data / "validate0001.tfrecord", ids[25:], labels[25:])
    pred = tmp_path / "pred.csv"
    write_kaggle_csv(pred, predictions_for(ids[1:], scores[1:], k=20))
    vocab = tmp_path / "vocabulary.csv"
    vocab.write_text(
        "Index,TrainVideoCount,KnowledgeGraphId,Name\n"
        + "".join(f"{c},1,/m/x{c},Class {c}\n" for c in range(CLASSES))
    )
    per_class = tmp_path / "out" / "per_class.csv"
    code = zoo_main(
        [
            "score",
            "--predictions",
            str(pred),
            "--data",
            str(data),
            "--num-classes",
            str(CLASSES),
            "--json",
            "--per-class",
            str(per_class),
            "--vocabulary",
            str(vocab),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    scores = scores.copy()
    scores[0] = -np.inf
    want = expected_metrics(scores, labels, k=20)
    assert result["gap"] == pytest.approx(want["gap"], abs=1e-12)
    assert result["num_videos"] == 40 and result["videos_without_prediction"] == 1
    assert "1 labelled videos have no row" in out.err and "'vid000'" in out.err
    rows = list(csv.DictReader(per_class.open()))
    assert len(rows) == CLASSES and rows[4]["name"] == "Class 4"


def test_cli_video_level_records_and_text_output(tmp_path, capsys):
    ids, labels, scores = make_videos(15)
    write_records(tmp_path / "validate0000.tfrecord", ids, labels, video_level=True)
    pred = tmp_path / "pred.csv"
    write_kaggle_csv(pred, predictions_for(ids, scores))
    code = zoo_main(
        [
            "score",
            "--predictions",
            str(pred),
            "--data",
            str(tmp_path / "validate0000.tfrecord"),
            "--reader",
            "yt8m-video",
            "--num-classes",
            str(CLASSES),
            "--top-k",
            "5",
        ]
    )
    out = capsys.readouterr().out
    want = expected_metrics(scores, labels)
    assert code == 0 and f"GAP@5 {want['gap']:.6f}" in out and "videos 15" in out


@pytest.mark.integration
def test_cli_exit_codes(tmp_path, capsys):
    ids, labels, scores = make_videos(5)
    write_records(tmp_path / "v.tfrecord", ids, labels)
    pred = tmp_path / "pred.csv"
    pred.write_text("VideoId,LabelConfidencePairs\nvid000,1 0.5 2\n")

    args = ["score", "--predictions", str(pred), "--data", str(tmp_path / "v.tfrecord")]
    bad = subprocess.run(
        [sys.executable, "-m", "zoo.cli", *args, "--num-classes", str(CLASSES)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and f"{pred}: line 2: video 'vid000': 3 tokens" in bad.stderr
    assert zoo_main([*args, "--top-k", "0"]) == 2
    assert zoo_main([*args, "--vocabulary", str(pred)]) == 2  # --vocabulary without --per-class
    good = tmp_path / "good.csv"
    write_kaggle_csv(good, predictions_for(ids, scores))
    assert zoo_main(["score", "--predictions", str(good), "--data", str(tmp_path / "missing.tfrecord")]) == 1
    assert "missing.tfrecord" in capsys.readouterr().err


@pytest.mark.integration
def test_score_in_a_subprocess_never_imports_paddle(tmp_path):
    """`zoo score` is a base-install command: scoring a prediction file must not load the framework."""
    ids, labels, scores = make_videos(12)
    data = tmp_path / "validate"
    data.mkdir()
    write_records(data / "validate0000.tfrecord", ids, labels)
    pred = tmp_path / "pred.csv"
    write_kaggle_csv(pred, predictions_for(ids, scores))
    probe = (
        "import sys\n"
        "from zoo.cli import main\n"
        f"code = main(['score', '--predictions', {str(pred)!r}, '--data', {str(data)!r}, "
        f"'--num-classes', '{CLASSES}', '--json'])\n"
        "loaded = sorted(m for m in sys.modules if m == 'paddle' or m.startswith('paddle.'))\n"
        "print('PADDLE', len(loaded), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "PADDLE 0" in done.stderr
    assert json.loads(done.stdout)["num_videos"] == 12
