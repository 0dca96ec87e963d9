"""The ``yt8m`` metric against a slow, literal implementation of the YouTube-8M definitions.

The literal version works video by video and triplet by triplet in plain Python and handles ties by
enumerating every placement of the positives inside a tie group (the documented tie rule: the expected
value over the orders of tied scores). A third implementation, the starter code's own algorithm
(benchmarks/bench_metrics.py), checks the definitions themselves on tie-free data.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import pickle

import numpy as np
import pytest
from conftest import REPO

import zoo


def literal_ap(items: list[tuple[float, int]], positives: int) -> float:
    """AP of (score, label) items, denominator ``positives``, averaged over the orders of tied scores."""
    if positives == 0:
        return 0.0
    items = sorted(items, key=lambda t: -t[0])
    total, rank, found = 0.0, 0, 0
    for _, group in itertools.groupby(items, key=lambda t: t[0]):
        labels = [y for _, y in group]
        m, p = len(labels), sum(labels)
        placements = list(itertools.combinations(range(m), p))  # equally likely positions of the positives
        acc = 0.0
        for placement in placements:
            for j, position in enumerate(placement):
                acc += (found + j + 1) / (rank + position + 1)
        total += acc / len(placements)
        rank, found = rank + m, found + p
    return total / positives


def literal_metrics(scores: np.ndarray, labels: np.ndarray, top_k: int) -> dict:
    videos, classes = scores.shape
    hits = perr = 0.0
    pool = []
    for v in range(videos):
        ranked = sorted(range(classes), key=lambda c: (-float(scores[v, c]), c))  # ties: lowest class first
        hits += labels[v, ranked[0]]
        n = int(labels[v].sum())
        if n:
            perr += sum(1 for c in ranked[:n] if labels[v, c] == 1 and scores[v, c] > 0) / n
        pool += [(float(scores[v, c]), c, int(labels[v, c])) for c in ranked[:top_k]]
    positives = labels.sum(axis=0).astype(int)
    aps = {
        c: literal_ap([(s, y) for s, cc, y in pool if cc == c], int(positives[c]))
        for c in range(classes)
        if positives[c] > 0
    }
    return {
        "gap": literal_ap([(s, y) for s, _, y in pool], int(positives.sum())),
        "hit_at_1": hits / videos,
        "perr": perr / videos,
        "map": float(np.mean(list(aps.values()))) if aps else 0.0,
        "aps": aps,
    }


def random_data(rng: np.random.Generator, videos: int, classes: int, *, ties: bool, dtype=np.float64):
    labels = (rng.random((videos, classes)) < 0.15).astype(np.float32)
    labels[rng.random(videos) < 0.2] = 0  # videos without labels
    labels[:, rng.random(classes) < 0.2] = 0  # classes without positives
    if ties:  # few distinct values, including 0 and negatives (PERR counts only scores > 0)
        scores = rng.integers(-1, 4, (videos, classes)) / 4
    else:
        scores = rng.random((videos, classes))
    scores = scores + 0.3 * labels * rng.random((videos, classes)) if not ties else scores + 0.25 * labels
    return scores.astype(dtype), labels


def fast_metrics(scores, labels, top_k, batch=None, num_classes=None):
    metric = zoo.build_metric("yt8m", num_classes=num_classes or scores.shape[1], top_k=top_k)
    batch = batch or len(scores)
    for i in range(0, len(scores), batch):
        metric.update(scores[i : i + batch], labels[i : i + batch])
    return metric


def assert_same(fast: dict, literal: dict, tol: float = 1e-12) -> None:
    for key in ("gap", "hit_at_1", "perr", "map"):
        assert fast[key] == pytest.approx(literal[key], abs=tol), key


@pytest.mark.parametrize("seed", range(4))
def test_matches_literal_definitions_without_ties(seed):
    rng = np.random.default_rng(seed)
    scores, labels = random_data(rng, 70, 30, ties=False)
    metric = fast_metrics(scores, labels, top_k=5)
    literal = literal_metrics(scores, labels, 5)
    assert_same(metric.compute(), literal)
    ap = metric.per_class_ap()
    for c in range(30):
        if c in literal["aps"]:
            assert ap[c] == pytest.approx(literal["aps"][c], abs=1e-12)
        else:
            assert np.isnan(ap[c])  # no positives: not part of mAP


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_matches_literal_definitions_with_ties(seed, dtype):
    rng = np.random.default_rng(100 + seed)
    scores, labels = random_data(rng, 14, 9, ties=True, dtype=dtype)
    metric = fast_metrics(scores, labels, top_k=3)
    assert_same(metric.compute(), literal_metrics(scores, labels, 3))


def test_tie_rule_by_hand():
    # Two videos, top-1 each: a positive and a negative tied at 0.5, one positive label never predicted.
    scores = np.array([[0.5, 0.1, 0.0], [0.2, 0.5, 0.0]], np.float32)
    labels = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
    got = fast_metrics(scores, labels, top_k=1).compute()
    # the tie is ordered either way with probability 1/2: AP = (1/1 + 1/2) / 2 / 2 positives
    assert got["gap"] == pytest.approx(0.375)
    assert got["hit_at_1"] == pytest.approx(0.5)
    # Within a video equal scores go to the lowest class (as np.argmax): class 0 wins over class 2 here
    got = fast_metrics(np.array([[0.7, 0.1, 0.7]]), np.array([[0, 0, 1]]), top_k=1).compute()
    assert got["hit_at_1"] == 0.0 and got["perr"] == 0.0


def test_perr_counts_only_positive_scores_and_empty_videos_count_zero():
    scores = np.array([[0.9, 0.0, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]])
    labels = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    got = fast_metrics(scores, labels, top_k=2).compute()
    # video 0: 2 labels; its top 2 are classes 0 (label, 0.9) and 2 (no label) -> 1/2; video 1 adds 0
    assert got["perr"] == pytest.approx(0.25)
    assert got["unlabelled_videos"] == 1 and got["num_videos"] == 2


def test_perr_with_more_labels_than_top_k():
    rng = np.random.default_rng(7)
    scores = rng.random((6, 40))
    labels = np.zeros((6, 40), np.float32)
    labels[:, :25] = 1  # 25 labels per video, top_k 20
    got = fast_metrics(scores, labels, top_k=20).compute()
    assert got["perr"] == pytest.approx(literal_metrics(scores, labels, 20)["perr"], abs=1e-12)


def test_agrees_with_the_starter_code_algorithm():
    spec = importlib.util.spec_from_file_location("bench_metrics", REPO / "benchmarks" / "bench_metrics.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(3)
    scores, labels = random_data(rng, 150, 40, ties=False)
    starter = bench.StarterMetrics(40, 7)
    metric = zoo.build_metric("yt8m", num_classes=40, top_k=7)
    for i in range(0, 150, 64):  # the starter accumulates per batch too
        starter.accumulate(scores[i : i + 64], labels[i : i + 64])
        metric.update(scores[i : i + 64], labels[i : i + 64])
    assert_same(metric.compute(), starter.get(), tol=1e-7)  # the starter averages Hit@1 in float32


def test_streaming_equals_one_batch_and_float32_equals_float64():
    rng = np.random.default_rng(11)
    scores, labels = random_data(rng, 300, 50, ties=True, dtype=np.float32)
    whole = fast_metrics(scores, labels, top_k=6).compute()
    for batch in (1, 7, 64):
        assert_same(fast_metrics(scores, labels, top_k=6, batch=batch).compute(), whole)
    assert_same(fast_metrics(scores.astype(np.float64), labels, top_k=6).compute(), whole)


def test_merge_of_two_halves_equals_the_whole():
    rng = np.random.default_rng(5)
    scores, labels = random_data(rng, 200, 30, ties=True, dtype=np.float32)
    whole = zoo.build_metric("yt8m", num_classes=30, top_k=5)
    whole.update(scores, labels, loss=0.5)
    halves = []
    for part in (slice(0, 77), slice(77, 200)):
        m = zoo.build_metric("yt8m", num_classes=30, top_k=5)
        m.update(scores[part], labels[part], loss=0.5)
        halves.append(pickle.loads(pickle.dumps(m.state())))  # as all_gather_object ships them
    merged = zoo.build_metric("yt8m", num_classes=30, top_k=5)
    merged.update(scores[:10], labels[:10], loss=0.1)
    merged.reset()  # the engine resets its own metric, then merges every rank's state
    merged.merge(halves)
    assert merged.compute() == pytest.approx(whole.compute(), abs=1e-12)
    np.testing.assert_allclose(merged.per_class_ap(), whole.per_class_ap(), atol=1e-12)
    with pytest.raises(ValueError, match="num_classes"):
        zoo.build_metric("yt8m", num_classes=31, top_k=5).merge(halves)


def test_state_grows_with_videos_times_top_k_not_classes():
    metric = zoo.build_metric("yt8m", num_classes=3862, top_k=20)
    rng = np.random.default_rng(0)
    for _ in range(3):
        metric.update(rng.random((100, 3862), dtype=np.float32), (rng.random((100, 3862)) < 0.001))
    state = metric.state()
    assert state["scores"].shape == state["classes"].shape == state["labels"].shape == (300 * 20,)
    per_video = sum(state[k].nbytes for k in ("scores", "classes", "labels")) / 300
    assert per_video == 20 * (4 + 2 + 1)  # float32 score, int16 class, bool label


def test_loss_is_the_video_weighted_mean_and_must_be_given_always_or_never():
    metric = zoo.build_metric("yt8m", num_classes=5, top_k=2)
    metric.update(np.ones((3, 5)) * 0.1, np.eye(5)[:3], loss=1.0)
    metric.update(np.ones((1, 5)) * 0.1, np.eye(5)[:1], loss=3.0)
    assert metric.compute()["loss"] == pytest.approx((3 * 1.0 + 1 * 3.0) / 4)
    with pytest.raises(ValueError, match="every batch or with none"):
        metric.update(np.ones((1, 5)), np.eye(5)[:1])
    assert "loss" not in fast_metrics(np.ones((2, 5)), np.eye(5)[:2], top_k=2).compute()


def test_bad_input_is_rejected_with_a_clear_message():
    metric = zoo.build_metric("yt8m", num_classes=4, top_k=2)
    with pytest.raises(ValueError, match=r"shape \[batch, 4\]"):
        metric.update(np.zeros((2, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="0/1 multi-hot"):
        metric.update(np.zeros((2, 4)), np.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="0/1 multi-hot"):
        metric.update(np.zeros((2, 4)), np.array([[1, -1, 0, 0], [0, 0, 0, 1]], np.float32))
    scores = np.zeros((2, 4))
    scores[1, 2] = np.nan
    with pytest.raises(ValueError, match="row 1 of the batch has a NaN"):
        metric.update(scores, np.zeros((2, 4)))
    big = zoo.build_metric("yt8m", num_classes=3862)  # batches are processed in slices: rows count from 0
    scores, labels = np.zeros((300, 3862), np.float32), np.zeros((300, 3862), np.float32)
    labels[250, 7] = 2
    with pytest.raises(ValueError, match="found 2.0 at row 250 of the batch, class 7"):
        big.update(scores, labels)
    labels[250, 7] = 1
    scores[280, 9] = np.nan
    with pytest.raises(ValueError, match="row 280 of the batch has a NaN"):
        big.update(scores, labels)
    assert big.num_videos == 0
    assert metric.num_videos == 0  # nothing was half-added
    with pytest.raises(zoo.ZooError, match="no videos"):
        metric.compute()
    with pytest.raises(zoo.ConfigError):
        zoo.build_metric("yt8m", num_classes=4, top_k=0)
    with pytest.raises(zoo.ConfigError, match="top_kk"):
        zoo.build_metric("yt8m", num_classes=4, top_kk=3)


def test_unpredicted_classes_never_count():
    # -inf marks "not predicted" (zoo score): such classes stay out of the top-k lists and never hit
    scores = np.full((2, 6), -np.inf)
    scores[0, 3] = 0.9
    labels = np.zeros((2, 6))
    labels[0, 3] = labels[1, 0] = 1
    got = fast_metrics(scores, labels, top_k=3).compute()
    assert got["hit_at_1"] == 0.5 and got["gap"] == pytest.approx(0.5) and got["perr"] == pytest.approx(0.5)


def test_per_class_csv_names_classes_from_the_vocabulary(tmp_path):
    from zoo.engine.infer.predictions import load_class_names

    vocab = tmp_path / "vocabulary.csv"
    vocab.write_text(
        "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n"
        '0,100,/m/03bt1gh,Game,https://en.wikipedia.org/wiki/Game,Games,,,"A game, played"\n'
        '1,90,/m/01mw1,"Video game, arcade",https://x,Games,,,text\n'
        "2,80,/m/07yv9,Vehicle,https://y,Autos & Vehicles,,,text\n",
        encoding="utf-8",
    )
    rng = np.random.default_rng(2)
    scores, labels = random_data(rng, 40, 4, ties=False)
    labels[:, 3] = 0
    labels[0, 0] = 1
    metric = fast_metrics(scores, labels, top_k=2)
    out = tmp_path / "per_class.csv"
    metric.write_per_class_csv(out, load_class_names(vocab))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["name"] for r in rows] == ["Game", "Video game, arcade", "Vehicle", ""]
    ap = metric.per_class_ap()
    for c, row in enumerate(rows):
        assert int(row["class"]) == c and int(row["positives"]) == int(labels[:, c].sum())
        assert (row["ap"] == "") if np.isnan(ap[c]) else float(row["ap"]) == pytest.approx(ap[c], abs=1e-6)
    assert rows[3]["ap"] == "" and int(rows[3]["predicted"]) >= 0
    assert sum(int(r["predicted"]) for r in rows) == 40 * 2


def test_ranked_lists_equal_dense_scores_with_unlisted_classes_at_minus_inf():
    rng = np.random.default_rng(4)
    scores, labels = random_data(rng, 50, 30, ties=True)
    labels[0, :8] = 1  # more labels than listed classes
    listed = 6
    classes = np.array([rng.permutation(30)[:listed] for _ in range(50)])  # unsorted, as a file may be
    values = np.take_along_axis(scores, classes, axis=1)
    values[5, 3:] = -np.inf  # a short row
    dense = np.full((50, 30), -np.inf)
    np.put_along_axis(dense, classes, values, axis=1)
    ranked = zoo.build_metric("yt8m", num_classes=30, top_k=4)
    ranked.update_ranked(classes, values, labels)
    assert_same(ranked.compute(), fast_metrics(dense, labels, top_k=4).compute())
    with pytest.raises(ValueError, match="listed twice"):
        ranked.update_ranked(np.array([[1, 1]]), np.array([[0.5, 0.4]]), np.zeros((1, 30)))
    with pytest.raises(ValueError, match="classes must be in 0 .. 29"):
        ranked.update_ranked(np.array([[30]]), np.array([[0.5]]), np.zeros((1, 30)))
