"""``yt8m-segment``: segment-level mAP (2019 rules) against a literal implementation of the rules."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import zoo
from zoo.config import DatasetSpec
from zoo.errors import DataError

CLASSES = 8
SPEC = DatasetSpec(num_classes=CLASSES, features={"rgb": 1024, "audio": 128})


def make_truth(rng: np.random.Generator, videos: int = 12) -> list[dict]:
    """Reader-style dicts: a few rated 5-frame segments per video, each rating one class 0/1."""
    out = []
    for v in range(videos):
        starts, ends, labels, scores = [], [], [], []
        for start in rng.choice(np.arange(0, 100, 5), size=int(rng.integers(1, 5)), replace=False):
            for cls in rng.choice(CLASSES - 2, size=int(rng.integers(1, 3)), replace=False):  # 6, 7 unrated
                starts.append(int(start))
                ends.append(int(start) + 5)
                labels.append(int(cls))
                scores.append(float(rng.random() < 0.4))
        out.append(
            {
                "id": f"v{v}",
                "segment_start_times": np.array(starts),
                "segment_end_times": np.array(ends),
                "segment_labels": np.array(labels),
                "segment_scores": np.array(scores, np.float32),
            }
        )
    return out


def literal_segment_map(truth: list[dict], scored: list[tuple[str, int, np.ndarray]]) -> float:
    """segment_eval_inference.py's rules, pair by pair (tie-free scores)."""
    rated = {}
    for video in truth:
        for start, cls, value in zip(
            video["segment_start_times"], video["segment_labels"], video["segment_scores"]
        ):
            rated[(video["id"], int(start), int(cls))] = value > 0
    positives = {}
    for (_, _, cls), positive in rated.items():
        positives[cls] = positives.get(cls, 0) + int(positive)
    aps = []
    for cls in sorted(c for c, n in positives.items() if n > 0):
        ranked = sorted(((s[cls], vid, start) for vid, start, s in scored), reverse=True)
        kept = [rated[(vid, start, cls)] for _, vid, start in ranked if (vid, start, cls) in rated]
        hits, ap = 0, 0.0
        for rank, positive in enumerate(kept, 1):
            if positive:
                hits += 1
                ap += hits / rank
        aps.append(ap / positives[cls])
    return float(np.mean(aps))


def all_segments(
    truth: list[dict], rng: np.random.Generator, extra: int = 3
) -> list[tuple[str, int, np.ndarray]]:
    """Every rated segment plus a few unrated ones per video, each with scores for every class."""
    out = []
    for video in truth:
        starts = set(int(s) for s in video["segment_start_times"])
        starts |= set(int(s) for s in rng.choice(np.arange(100, 200, 5), size=extra, replace=False))
        out += [(video["id"], s, rng.random(CLASSES)) for s in sorted(starts)]
    return out


def run_metric(truth, scored, batch=7):
    metric = zoo.build_metric("yt8m-segment", spec=SPEC)
    for video in truth:
        metric.add_ground_truth(video)
    for i in range(0, len(scored), batch):
        part = scored[i : i + batch]
        metric.update_segments([p[0] for p in part], [p[1] for p in part], np.stack([p[2] for p in part]))
    return metric


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_literal_rules(seed):
    rng = np.random.default_rng(seed)
    truth = make_truth(rng)
    scored = all_segments(truth, rng)
    metric = run_metric(truth, scored)
    got = metric.compute()
    assert got["segment_map"] == pytest.approx(literal_segment_map(truth, scored), abs=1e-12)
    positives = {int(c) for v in truth for c, s in zip(v["segment_labels"], v["segment_scores"]) if s > 0}
    assert got["segment_classes"] == len(positives)
    assert got["rated_pairs"] == got["rated_pairs_scored"] == sum(len(v["segment_labels"]) for v in truth)
    assert np.isnan(metric.per_class_ap()[7])  # never rated: not averaged


def test_unscored_positive_segments_still_count_and_ties_are_averaged():
    truth = [
        {
            "id": "a",
            "segment_start_times": [0, 5, 10],
            "segment_labels": [1, 1, 1],
            "segment_scores": [1.0, 0.0, 1.0],
        }
    ]
    metric = zoo.build_metric("yt8m-segment", spec=DatasetSpec(num_classes=3, features=SPEC.features))
    assert metric.add_ground_truth(truth[0]) == 3
    scores = np.zeros((2, 3))
    scores[:, 1] = 0.7  # segments 0 (positive) and 5 (negative) tie; segment 10 is never scored
    metric.update_segments(["a", "a"], [0, 5], scores)
    # expected over the two orders: (1/1 + 1/2) / 2, over 2 rated positives
    assert metric.compute()["segment_map"] == pytest.approx(0.375)


def test_merge_equals_one_metric_and_state_pickles():
    rng = np.random.default_rng(9)
    truth = make_truth(rng, 16)
    scored = all_segments(truth, rng)
    whole = run_metric(truth, scored).compute()
    states = []
    for part in (truth[:7], truth[7:]):  # each rank reads its own videos
        ids = {v["id"] for v in part}
        states.append(
            pickle.loads(pickle.dumps(run_metric(part, [s for s in scored if s[0] in ids]).state()))
        )
    merged = zoo.build_metric("yt8m-segment", spec=SPEC)
    merged.merge(states)
    assert merged.compute() == pytest.approx(whole, abs=1e-12)


def test_bad_ground_truth_and_updates_are_errors():
    metric = zoo.build_metric("yt8m-segment", spec=SPEC)
    with pytest.raises(DataError, match="no segment_scores"):
        metric.add_ground_truth({"id": "a", "segment_start_times": [0], "segment_labels": [1]})
    with pytest.raises(DataError, match="lengths differ"):
        metric.add_ground_truth(
            {"id": "a", "segment_start_times": [0, 5], "segment_labels": [1], "segment_scores": [1.0]}
        )
    with pytest.raises(DataError, match="must hold 0 or 1"):
        metric.add_ground_truth(
            {"id": "a", "segment_start_times": [0], "segment_labels": [1], "segment_scores": [0.5]}
        )
    with pytest.raises(DataError, match="class 9 is outside"):
        metric.add_ground_truth(
            {"id": "a", "segment_start_times": [0], "segment_labels": [9], "segment_scores": [1.0]}
        )
    good = {"id": "a", "segment_start_times": [0], "segment_labels": [1], "segment_scores": [1.0]}
    metric.add_ground_truth(good)
    with pytest.raises(DataError, match="added twice"):
        metric.add_ground_truth(good)
    metric.update_segments(["a"], [0], np.ones((1, CLASSES)))
    with pytest.raises(ValueError, match="a:0 was scored twice"):
        metric.update_segments(["a"], [0], np.ones((1, CLASSES)))
    with pytest.raises(ValueError, match="one of each per segment"):
        metric.update_segments(["a", "b"], [0], np.ones((2, CLASSES)))
    with pytest.raises(zoo.ZooError, match="no rated positive"):
        zoo.build_metric("yt8m-segment", spec=SPEC).compute()


def test_ground_truth_from_the_segment_reader(tmp_path):
    from zoo_yt8m_data.tfrecord import write_tfrecord
    from zoo_yt8m_data.wire import encode_sequence_example

    rng = np.random.default_rng(3)
    truth = make_truth(rng, 6)
    frames = {"rgb": np.zeros((3, 1024), np.uint8), "audio": np.zeros((3, 128), np.uint8)}
    payloads = []
    for video in truth:
        context = {
            "id": video["id"].encode(),
            "labels": np.unique(video["segment_labels"]).astype(np.int64),
            "segment_start_times": video["segment_start_times"].astype(np.int64),
            "segment_end_times": video["segment_end_times"].astype(np.int64),
            "segment_labels": video["segment_labels"].astype(np.int64),
            "segment_scores": video["segment_scores"].astype(np.float32),
        }
        payloads.append(encode_sequence_example(context, frames))
    write_tfrecord(tmp_path / "validate0000.tfrecord", payloads)
    scored = all_segments(truth, rng)
    metric = zoo.build_metric("yt8m-segment", spec=SPEC)
    for video in zoo.build_reader("yt8m-segment", paths=[str(tmp_path)], spec=SPEC):
        metric.add_ground_truth(video)
    metric.update_segments([s[0] for s in scored], [s[1] for s in scored], np.stack([s[2] for s in scored]))
    assert metric.compute()["segment_map"] == pytest.approx(literal_segment_map(truth, scored), abs=1e-12)
