"""Prediction formats: top-k, the Kaggle CSV, JSON lines and class names, round trips and clear errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from zoo_yt8m_metrics.kaggle import read_kaggle_csv, write_kaggle_csv

from zoo.contracts import Prediction
from zoo.engine.infer.predictions import load_class_names, read_jsonl, write_jsonl
from zoo.errors import DataError
from zoo.ranking import top_k


def stable_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return index, np.take_along_axis(scores, index, axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_top_k_is_a_stable_sort_by_score(seed):
    rng = np.random.default_rng(seed)
    for classes, k in ((3862, 20), (500, 20), (50, 7), (9, 20), (4000, 1)):
        batch = 64
        cases = [
            rng.random((batch, classes), dtype=np.float32),  # tie-free
            (rng.integers(0, 5, (batch, classes)) / 4).astype(np.float32),  # ties everywhere
            rng.random((batch, classes)),  # float64
        ]
        saturated = rng.random((batch, classes), dtype=np.float32)
        saturated[rng.random((batch, classes)) < 0.01] = 1.0  # confident models saturate at 1.0
        saturated[3] = 0.25  # a row of equal scores
        saturated[5, : classes // 2] *= -1.0  # negative scores (logits) and -0.0
        saturated[6, :] = -0.0
        saturated[6, 1::3] = 0.0
        cases.append(saturated)
        for scores in cases:
            got = top_k(scores, k)
            want = stable_top_k(scores, k)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_top_k_edge_cases():
    scores = np.full((3, 4000), -np.inf, np.float32)
    scores[0, 17] = 0.5
    classes, values = top_k(scores, 20)
    assert classes[0, 0] == 17 and list(classes[1, :3]) == [0, 1, 2] and np.isneginf(values[0, 1])
    assert top_k(np.zeros((0, 10)), 3)[0].shape == (0, 3)
    assert top_k(np.array([[1, 3, 2]]), 5)[0].tolist() == [[1, 2, 0]]  # k > classes; ints are ranked too
    bad = np.random.default_rng(0).random((8, 4000), dtype=np.float32)
    bad[6, 123] = np.nan
    with pytest.raises(ValueError, match="row 6 has a NaN"):
        top_k(bad, 20)


def test_kaggle_csv_round_trip_keeps_float32_scores_exact(tmp_path):
    rng = np.random.default_rng(1)
    scores = rng.random((30, 100), dtype=np.float32)
    classes, values = top_k(scores, 20)
    rows = [Prediction(f"vid{i}", classes[i].tolist(), values[i].tolist()) for i in range(30)]
    rows.append(Prediction("empty", [], []))
    path = tmp_path / "pred.csv"
    assert write_kaggle_csv(path, rows) == 31
    text = path.read_text().splitlines()
    assert text[0] == "VideoId,LabelConfidencePairs" and text[-1] == "empty,"
    back = read_kaggle_csv(path, num_classes=100)
    assert back["empty"] == []
    for i in range(30):
        got = back[f"vid{i}"]
        assert [c for c, _ in got] == classes[i].tolist()
        assert np.array_equal(np.array([s for _, s in got], np.float32), values[i])  # bit-exact


def test_kaggle_csv_rows_are_written_best_first(tmp_path):
    path = tmp_path / "p.csv"
    write_kaggle_csv(path, [Prediction("a", [3, 1, 2], [0.1, 0.9, 0.5])], top_k=2)
    assert path.read_text().splitlines()[1] == "a,1 0.9 2 0.5"
    with pytest.raises(ValueError, match="cannot be written"):
        write_kaggle_csv(tmp_path / "q.csv", [Prediction("a,b", [1], [0.5])])
    assert not (tmp_path / "q.csv").exists()  # atomic: nothing half-written


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("v1,1 0.5 2\n", "line 2: video 'v1': 3 tokens"),
        ("v1,1 0.5\nv2,x 0.5\n", "line 3: video 'v2': label 'x'"),
        ("v1,-1 0.5\n", "label '-1'"),
        ("v1,1 high\n", "line 2: video 'v1': score 'high'"),
        ("v1,1 nan\n", "score 'nan'"),
        ("v1,1 0.5 1 0.4\n", "class 1 is listed twice"),
        ("v1,1 0.5,2 0.1\n", "line 2: expected 'VideoId,label score"),
        (",1 0.5\n", "line 2: the VideoId is empty"),
        ("v1,1 0.5\n\nv1,2 0.5\n", "line 4: video 'v1' is listed again (first on line 2)"),
        ("v1,7 0.5\n", "class 7 is out of range; the dataset has 5 classes"),
    ],
)
def test_kaggle_csv_errors_name_file_and_line(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text("VideoId,LabelConfidencePairs\n" + body)
    with pytest.raises(DataError, match=re.escape(message)) as info:
        read_kaggle_csv(path, num_classes=5)
    assert str(path) in str(info.value)


def test_kaggle_csv_header_and_missing_file(tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text("v1,1 0.5\n")
    with pytest.raises(DataError, match="line 1: expected the header"):
        read_kaggle_csv(path)
    with pytest.raises(DataError, match="cannot open"):
        read_kaggle_csv(tmp_path / "missing.csv")
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffVideoId,LabelConfidencePairs\r\nv1,1 0.5\r\n".encode())
    assert read_kaggle_csv(bom) == {"v1": [(1, 0.5)]}


def test_jsonl_with_vocabulary(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [Prediction("v", [2, 0], [0.2, 0.8])], vocabulary={0: "Game", 2: "Car, red"})
    assert json.loads(path.read_text()) == {
        "id": "v",
        "classes": [0, 2],
        "scores": [0.8, 0.2],
        "names": ["Game", "Car, red"],
    }
    write_jsonl(path, [Prediction("v", [5], [0.2])])
    assert "names" not in json.loads(path.read_text())


def test_vocabulary_reads_the_official_columns(tmp_path):
    path = tmp_path / "vocabulary.csv"
    path.write_text(
        "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n"
        '0,378135,/m/03bt1gh,Game,https://en.wikipedia.org/wiki/Game,Games,,,"A game is structured, played"\n'
        '3,236542,/m/01mw1,"Video game, arcade",https://x,Games,,,"multi\nline"\n',
        encoding="utf-8",
    )
    assert load_class_names(path) == {0: "Game", 3: "Video game, arcade"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Index,Label\n0,Game\n", "line 1: the header has no column Name"),
        ("Index,Name\n0,Game\nx,Car\n", "line 3: column Index: 'x'"),
        ("Index,Name\n0,Game\n0,Car\n", "line 3: column Index: class 0 is listed twice"),
        ("Index,TrainVideoCount,Name\n0,5\n", "line 2: 2 columns"),
        ("", "the class-names CSV is empty"),
    ],
)
def test_vocabulary_errors(tmp_path, text, message):
    path = tmp_path / "vocabulary.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(message)):
        load_class_names(path)


def test_jsonl_round_trip_and_errors_name_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [Prediction("a", [3, 1], [0.25, 0.75]), Prediction("b", [], [])]
    write_jsonl(path, rows)
    assert list(read_jsonl(path)) == [Prediction("a", [1, 3], [0.75, 0.25]), Prediction("b", [], [])]
    path.write_text(
        '{"id": "a", "classes": [1], "scores": [0.5]}\n{"id": "b", "classes": [-1], "scores": [1]}\n'
    )
    with pytest.raises(DataError, match=re.escape("line 2: video 'b': 'classes'")):
        list(read_jsonl(path))
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="line 1: expected a JSON object"):
        list(read_jsonl(path))


def test_formats_are_plugins_and_read_back_what_they_write(tmp_path):
    """`predict.formats` names registered formats: the engine's jsonl and the metrics plugin's kaggle-csv."""
    from zoo.plugins import get_plugins

    registry = get_plugins().registry("format")
    assert {"jsonl", "kaggle-csv"} <= set(registry.names())
    rows = [Prediction("v1", [4, 2], [0.5, 0.25]), Prediction("v2", [0], [1.0])]
    for name in ("jsonl", "kaggle-csv"):
        fmt = registry.get(name).cls
        path = tmp_path / f"predictions{fmt.suffix}"
        fmt(fmt.Config()).write(path, rows, {4: "four"})
        assert list(fmt(fmt.Config()).read(path)) == rows, name


def test_predict_writes_every_configured_format(tmp_path):
    from zoo.config import load_config
    from zoo.engine.commands.workflow import write_predictions

    rows = [Prediction("v1", [4, 2], [0.5, 0.25])]
    cfg = load_config(model="nextvlad", overrides=["dataset.preset=yt8m", "predict.formats=[jsonl]"])
    assert [p.name for p in write_predictions(tmp_path / "a", rows, cfg)] == ["predictions.jsonl"]
    cfg = load_config(
        model="nextvlad", overrides=["dataset.preset=yt8m", "predict.formats=[jsonl,kaggle-csv]"]
    )
    written = write_predictions(tmp_path / "b", rows, cfg)
    assert sorted(p.name for p in written) == ["predictions.csv", "predictions.jsonl"]
    assert (tmp_path / "b" / "predictions.csv").read_text().splitlines()[1] == "v1,4 0.5 2 0.25"
