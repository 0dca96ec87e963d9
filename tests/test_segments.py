"""The 2019 segment task: synth data, segment-level reader mode, masked loss, top-N selection, submission
format and scoring, and the `zoo run --segments` workflow (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from zoo_yt8m_data.segment_synth import (
    SegmentSynthSpec,
    World,
    generate_segments,
    read_label_ids,
)
from zoo_yt8m_metrics.segment import score_segment_submission
from zoo_yt8m_metrics.segment_submission import iter_segment_submission
from zoo_yt8m_segments.topsegments import TopSegments, split_keys

import zoo
from zoo.cli import main as zoo_main
from zoo.config import DatasetSpec
from zoo.errors import DataError

CLASSES = 30
SPEC = DatasetSpec(num_classes=CLASSES, features={"rgb": 1024, "audio": 128}, max_frames=300)


@pytest.fixture(scope="module")
def segdata(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seg")
    spec = SegmentSynthSpec(valid_videos=80, test_videos=12, classes=CLASSES, valid_shards=2, test_shards=1)
    generate_segments(root, spec)
    return root


def write_top(path: Path, top: TopSegments, video_ids: list[str], bits: int) -> dict[str, int]:
    """The submission of ``top`` written the way the engine writes it: through the segment metric's class."""

    def rows():
        for cls, keys, _ in top.ranked():
            videos, starts = split_keys(keys, bits)
            yield cls, [video_ids[v] for v in videos.tolist()], starts

    return zoo.plugin_class("metric", "yt8m-segment").write_submission(path, rows())


def rated_videos(root: Path, features: dict | None = None) -> list[dict]:
    spec = DatasetSpec(num_classes=CLASSES, features=SPEC.features if features is None else features)
    return list(zoo.build_reader("yt8m-segment", paths=[str(root / "validate")], spec=spec))


# -- synth ---------------------------------------------------------------------------------------------------


def test_synth_writes_the_2019_layout(segdata):
    manifest = json.loads((segdata / "manifest.json").read_text())
    rated = read_label_ids(segdata / "segment_label_ids.csv", CLASSES)
    assert rated.tolist() == manifest["rated_classes"]
    assert 2 <= len(rated) < CLASSES  # a separate class subset
    videos = rated_videos(segdata)
    assert len(videos) == 80
    pairs = positives = 0
    for v in videos:
        starts, ends = v["segment_start_times"], v["segment_end_times"]
        assert len(starts) == len(ends) == len(v["segment_labels"]) == len(v["segment_scores"]) > 0
        assert (starts % 5 == 0).all() and (ends - starts == 5).all() and (ends <= v["num_frames"]).all()
        assert set(v["segment_labels"].tolist()) <= set(rated.tolist())
        assert set(v["segment_scores"].tolist()) <= {0.0, 1.0}
        pairs += len(starts)
        positives += int(v["segment_scores"].sum())
    assert 0.2 < positives / pairs < 0.8
    test = list(zoo.build_reader("yt8m-segment", paths=[str(segdata / "test")], spec=SPEC))
    assert len(test) == 12 and all(t["segment_labels"].size == 0 for t in test)
    # deterministic: the same spec gives byte-identical files
    other = segdata.parent / "again"
    generate_segments(
        other,
        SegmentSynthSpec(valid_videos=80, test_videos=12, classes=CLASSES, valid_shards=2, test_shards=1),
    )
    for rel in manifest["files"]:
        assert (other / rel).read_bytes() == (segdata / rel).read_bytes()


def test_segment_labels_are_learnable_from_that_segments_frames(segdata):
    """Shown (positive) segments carry the class's rgb prototype; rated-absent ones do not."""
    from zoo_yt8m_data.synth import SynthSpec

    world = World(SynthSpec(classes=CLASSES, seed=0))
    pos, neg = [], []
    for v in rated_videos(segdata):
        for start, c, score in zip(v["segment_start_times"], v["segment_labels"], v["segment_scores"]):
            frames = v["rgb"][start : start + 5]
            evidence = np.abs(frames @ world.rgb_proto[c].T).max()
            (pos if score else neg).append(evidence)
    assert np.mean(pos) > np.mean(neg) + 1.0
    # a simple per-segment rule separates them well: AUC well above chance
    auc = np.mean([p > n for p in pos for n in neg])
    assert auc > 0.85


def test_synth_cli(tmp_path, capsys):
    code = zoo_main(
        [
            "data",
            "synth",
            "--segments",
            "-o",
            str(tmp_path),
            "--valid-videos",
            "6",
            "--test-videos",
            "2",
            "--classes",
            "20",
        ]
    )
    assert code == 0
    assert (tmp_path / "segment_label_ids.csv").is_file()
    assert "rated (segment, class) pairs" in capsys.readouterr().out


# -- segment-level reader mode and the masked loss ------------------------------------------------------------


def test_segment_mode_makes_one_example_per_rated_segment(segdata):
    videos = rated_videos(segdata)
    reader = zoo.build_reader("yt8m-frame", paths=[str(segdata / "validate")], spec=SPEC, segments=True)
    examples = list(reader)
    assert len(examples) == sum(len(np.unique(v["segment_start_times"])) for v in videos)
    v = videos[0]
    first = [e for e in examples if e["id"].startswith(v["id"] + ":")]
    for e in first:
        start = int(e["id"].rsplit(":", 1)[1])
        at = v["segment_start_times"] == start
        assert e["num_frames"] == 5 and e["rgb"].shape == (5, 1024)
        np.testing.assert_array_equal(e["rgb"], v["rgb"][start : start + 5])
        assert sorted(e["label_mask"]) == sorted(v["segment_labels"][at].tolist())
        assert sorted(e["labels"]) == sorted(v["segment_labels"][at][v["segment_scores"][at] > 0].tolist())
    from zoo.data.pipeline import collate

    batch = collate(first, SPEC, reader.dequantize_into)
    for i, e in enumerate(first):
        assert set(np.flatnonzero(batch["label_mask"][i])) == set(e["label_mask"])
        assert set(np.flatnonzero(batch["labels"][i])) == set(e["labels"])
    # the config route: -o data.segments=true is a reader option
    from zoo.config import load_config

    cfg = load_config(None, ["dataset.preset=yt8m", "data.segments=true"], model="mean-pool")
    assert cfg.reader["segments"] is True


@pytest.mark.integration
def test_segment_mode_resumes_mid_epoch_with_two_workers(segdata):
    """Resume skips batches of rated segments, not of videos: the rest of the uninterrupted epoch."""
    from zoo.data import batches

    spec = DatasetSpec(num_classes=CLASSES, features={"rgb": 1024, "audio": 128}, max_frames=300)
    reader = zoo.build_reader("yt8m-segment", paths=[str(segdata / "validate")], spec=spec, segments=True)
    source = reader.sources()[0]
    assert reader.count_part(source, 0, 1) == sum(1 for _ in reader.read_part(source, 0, 1))
    assert reader.count_part(source, 0, 1) > reader.count(source)  # about 5 rated segments per video

    def run(skip):
        got = batches(reader, spec=spec, batch_size=16, num_workers=2, skip_batches=skip, threads=0)
        return [list(b["ids"]) for b in got]

    whole = run(0)
    assert len(whole) > 6
    for skip in (3, len(whole) - 1):
        assert run(skip) == whole[skip:]


def test_masked_loss_math():
    import paddle

    from zoo.engine.feed import bce_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6)).astype(np.float32)
    labels = (rng.random((4, 6)) < 0.3).astype(np.float32)
    mask = np.zeros((4, 6), np.float32)
    mask[0, [1, 2]] = mask[1, 0] = mask[2, [3, 4, 5]] = mask[3, 5] = 1
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    terms = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    expected = (terms * mask).sum(axis=1).mean()
    x = paddle.to_tensor(logits, stop_gradient=False)
    loss = bce_loss(x, paddle.to_tensor(labels), mask)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(bce_loss(paddle.to_tensor(logits), paddle.to_tensor(labels))) == pytest.approx(
        terms.sum(axis=1).mean(), rel=1e-5
    )
    loss.backward()
    grad = x.grad.numpy()
    assert (grad[mask == 0] == 0).all()  # unrated classes do not contribute
    np.testing.assert_allclose(grad[mask == 1], ((p - labels) / 4)[mask == 1], rtol=1e-4)


# -- selection -------------------------------------------------------------------------------------------


def brute_top(scores: np.ndarray, keys: np.ndarray, k: int) -> list[list[int]]:
    out = []
    for c in range(scores.shape[1]):
        order = np.lexsort((keys, -scores[:, c]))[:k]
        out.append(keys[order].tolist())
    return out


def test_top_segments_matches_a_full_sort_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random((3000, 7)), 2).astype(np.float32)  # many ties
    keys = np.arange(3000, dtype=np.uint32) * 3
    top = TopSegments(range(7), 50, pending_limit=400)
    for lo in range(0, 3000, 64):
        top.add(scores[lo : lo + 64], keys[lo : lo + 64])
    got = {cls: k.tolist() for cls, k, _ in top.ranked()}
    want = brute_top(scores, keys, 50)
    assert [got[c] for c in range(7)] == want


def test_top_segments_memory_is_bounded_by_classes_times_n():
    """Entries held never exceed classes x N + the pending buffer + one batch, however many segments pass."""
    import tracemalloc

    classes, k, batch, limit = 40, 200, 256, 20_000
    rng = np.random.default_rng(2)
    top = TopSegments(range(classes), k, pending_limit=limit)
    tracemalloc.start()
    for i in range(800):  # 204,800 segments x 40 classes = 8.2M (segment, class) scores
        top.add(
            rng.random((batch, classes), dtype=np.float32),
            np.arange(i * batch, (i + 1) * batch, dtype=np.uint32),
        )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    bound = classes * (k + top.slack) + limit + batch * classes
    assert top.peak_entries <= bound
    assert top.entries() <= classes * (k + top.slack) + limit
    assert sum(len(keys) for _, keys, _ in top.ranked()) == classes * k
    # far below the 8.2M x 8 bytes all scores would take
    assert peak < 8 * bound * 3 + 2_000_000


# -- submission format and scoring ---------------------------------------------------------------------------


def official_map(path: Path, videos: list[dict]) -> float:
    """A literal re-implementation of google/youtube-8m segment_eval_inference.py (top_n=0)."""
    labels = {}
    for v in videos:
        for label, start, score in zip(v["segment_labels"], v["segment_start_times"], v["segment_scores"]):
            labels[(f"{v['id']}:{start}", int(label))] = float(score)
    positives: dict[int, int] = {}
    for (_, label), value in labels.items():
        if value > 0:
            positives[label] = positives.get(label, 0) + 1
    preds = {}
    with open(path) as f:
        next(f)
        for line in f:
            label_id, ids = line.rstrip("\n").split(",")
            preds[int(label_id)] = [p for p in ids.split(" ") if p and (p, int(label_id)) in labels]
    aps = []
    for label_id in sorted(preds):
        seen = 0
        total = 0.0
        for i, p in enumerate(preds[label_id], start=1):
            if labels[(p, label_id)] > 0:
                seen += 1
                total += seen / i
        aps.append(total / positives[label_id] if positives.get(label_id) else 0.0)
    return float(np.mean(aps))


def scores_for(videos: list[dict], seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every 5-frame segment of every video, with random (tie-free) scores that favour the rated positives."""
    rng = np.random.default_rng(seed)
    ids, starts, rows = [], [], []
    for v in videos:
        for s in range(0, v["num_frames"] - 4, 5):
            row = rng.random(CLASSES)
            at = v["segment_start_times"] == s
            row[v["segment_labels"][at]] += 0.5 * v["segment_scores"][at]
            ids.append(v["id"])
            starts.append(s)
            rows.append(row)
    return ids, np.asarray(starts), np.asarray(rows, np.float32)


def test_submission_round_trip_agrees_with_the_metric_and_the_official_rules(segdata, tmp_path):
    videos = rated_videos(segdata)
    ids, starts, scores = scores_for(videos)
    metric = zoo.build_metric("yt8m-segment", spec=SPEC)
    for v in videos:
        metric.add_ground_truth(v)
    metric.update_segments(ids, starts, scores)
    direct = metric.compute()["segment_map"]

    rated = read_label_ids(segdata / "segment_label_ids.csv")
    order = {vid: i for i, vid in enumerate(dict.fromkeys(ids))}
    keys = (np.asarray([order[i] for i in ids], np.uint32) << np.uint32(6)) | (starts // 5).astype(np.uint32)
    top = TopSegments(rated, 100_000)
    top.add(scores, keys)
    path = tmp_path / "submission.csv"
    written = write_top(path, top, list(order), 6)
    assert written["classes"] == len(rated)
    scored, _ = score_segment_submission(path, rated_videos(segdata, {}), num_classes=CLASSES)
    assert scored["segment_map"] == pytest.approx(direct, abs=1e-12)
    assert scored["segment_map"] == pytest.approx(official_map(path, videos), abs=1e-12)
    # capped at 3 per class: the official script's top_n
    top3 = TopSegments(rated, 3)
    top3.add(scores, keys)
    write_top(tmp_path / "top3.csv", top3, list(order), 6)
    capped, _ = score_segment_submission(
        tmp_path / "top3.csv", rated_videos(segdata, {}), num_classes=CLASSES
    )
    assert capped["segment_map"] < direct
    # the CLI
    code = zoo_main(
        [
            "score",
            "--segments",
            str(path),
            "--data",
            str(segdata / "validate"),
            "--num-classes",
            str(CLASSES),
            "--json",
        ]
    )
    assert code == 0


def test_segment_mode_batches_give_the_ground_truth_paths_segment_map(segdata, tmp_path):
    """Metric.update(scores, labels, mask=label_mask) on segment-mode batches (zoo eval / zoo bench with
    eval.metric: yt8m-segment) scores the same rated pairs as add_ground_truth + update_segments."""
    import pickle

    from zoo.data.pipeline import batches

    videos = rated_videos(segdata)
    ids, starts, scores = scores_for(videos)
    truth = zoo.build_metric("yt8m-segment", spec=SPEC)
    for v in videos:
        truth.add_ground_truth(v)
    truth.update_segments(ids, starts, scores)
    want = truth.compute()

    row_of = {f"{vid}:{int(s)}": i for i, (vid, s) in enumerate(zip(ids, starts))}
    reader = zoo.build_reader("yt8m-segment", paths=[str(segdata / "validate")], spec=SPEC, segments=True)
    fed = []
    for batch in batches(reader, spec=SPEC, batch_size=13):
        rows = scores[[row_of[i] for i in batch["ids"]]]  # the same score for the same segment
        fed.append((rows, batch["labels"], 0.5, batch["label_mask"]))
    one = zoo.build_metric("yt8m-segment", spec=SPEC)
    for rows, labels, loss, mask in fed:
        one.update(rows, labels, loss=loss, mask=mask)
    got = one.compute()
    assert got["segment_map"] == pytest.approx(want["segment_map"], abs=1e-12)
    assert {k: got[k] for k in ("segment_classes", "rated_pairs", "rated_pairs_scored")} == {
        k: want[k] for k in ("segment_classes", "rated_pairs", "rated_pairs_scored")
    }
    # the official script on the submission those scores make agrees too
    rated = read_label_ids(segdata / "segment_label_ids.csv")
    order = {vid: i for i, vid in enumerate(dict.fromkeys(ids))}
    keys = (np.asarray([order[i] for i in ids], np.uint32) << np.uint32(6)) | (starts // 5).astype(np.uint32)
    top = TopSegments(rated, 100_000)
    top.add(scores, keys)
    write_top(tmp_path / "s.csv", top, list(order), 6)
    assert got["segment_map"] == pytest.approx(official_map(tmp_path / "s.csv", videos), abs=1e-12)
    # rank states of either path merge into the same result
    ranks = []
    for r in range(2):
        part = zoo.build_metric("yt8m-segment", spec=SPEC)
        for rows, labels, loss, mask in fed[r::2]:
            part.update(rows, labels, loss=loss, mask=mask)
        ranks.append(pickle.loads(pickle.dumps(part.state())))
    merged = zoo.build_metric("yt8m-segment", spec=SPEC)
    merged.merge(ranks)
    assert merged.compute() == pytest.approx(got, abs=1e-12)
    both = zoo.build_metric("yt8m-segment", spec=SPEC)
    both.merge([truth.state(), one.state()])  # the two paths' states have one form
    assert both.compute()["rated_pairs"] == 2 * want["rated_pairs"]
    # a batch without a mask, and mixing the two ways of feeding one metric, are errors
    with pytest.raises(DataError, match="no label_mask"):
        zoo.build_metric("yt8m-segment", spec=SPEC).update(*fed[0][:3])
    with pytest.raises(ValueError, match="use one way per metric"):
        truth.update(*fed[0][:3], mask=fed[0][3])
    with pytest.raises(ValueError, match="use one way per metric"):
        one.add_ground_truth({**videos[0], "id": "another"})


BAD_ROWS = [
    ("Class,Segment\n1,aaaa:0\n", "line 1"),
    ("Class,Segments\n1 aaaa:0\n", "line 2: malformed row"),
    ("Class,Segments\nx,aaaa:0\n", "line 2: malformed row"),
    ("Class,Segments\n1,aaaa:0\n2,aaaa\n", "line 3: malformed entry"),
    ("Class,Segments\n1,aaaa:x\n", "line 2: malformed entry"),
    ("Class,Segments\n1,aaaa:0\n1,aaaa:5\n", "line 3: class 1 is listed again (first on line 2)"),
    ("Class,Segments\n1,aaaa:7\n", "line 2: entry 'aaaa:7': segment start 7 is not on a 5-frame boundary"),
    ("Class,Segments\n1,aaaa:0 aaaa:0\n", "line 2: entry aaaa:0 is listed twice"),
    ("Class,Segments\n1,a:0 b:0 c:0 d:0\n", "line 2: class 1 has 4 entries; at most 3"),
]


@pytest.mark.parametrize("text,message", BAD_ROWS)
def test_submission_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        list(iter_segment_submission(path, max_entries=3))
    assert message in str(err.value) and str(path) in str(err.value)


def test_unknown_video_is_an_error_naming_the_line(segdata, tmp_path):
    videos = rated_videos(segdata, {})
    path = tmp_path / "s.csv"
    path.write_text(f"Class,Segments\n1,{videos[0]['id']}:0\n2,{videos[1]['id']}:0 zzzz:5\n")
    with pytest.raises(DataError, match=r"line 3: video 'zzzz' is not in the rated data"):
        score_segment_submission(path, videos, num_classes=CLASSES)
    assert (
        zoo_main(
            [
                "score",
                "--segments",
                str(path),
                "--data",
                str(segdata / "validate"),
                "--num-classes",
                str(CLASSES),
            ]
        )
        == 1
    )


# -- the workflow ----------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(1800)
@pytest.mark.slow
def test_zoo_run_segments_finetuning_helps_and_submission_round_trips(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert zoo_main(["run", "mean-max-pool", "--segments", "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    before = float(out.split("segment MAP before fine-tuning")[1].split()[0])
    after = float(out.split("segment MAP after fine-tuning")[1].split()[0])
    assert after > before, out
    from zoo.engine.build import SAMPLE_VERSION
    from zoo.paths import cache_dir

    seg = cache_dir(SAMPLE_VERSION) / "yt8m-sample-segments"
    rated_classes = read_label_ids(seg / "segment_label_ids.csv")
    rows = list(iter_segment_submission(tmp_path / "run" / "segment_submission.csv"))
    assert [cls for _, cls, _ in rows] == rated_classes.tolist() and all(entries for _, _, entries in rows)
    # eval --segments and predict --segments + score --segments agree on the same rated data
    rated = sorted((seg / "validate").glob("*.tfrecord"))[-1]
    weights = str(tmp_path / "run" / "segments")
    common = ["--weights", weights]  # the run's saved config (200 classes)
    assert zoo_main(["eval", *common, "--segments", "-o", f"data.valid=[{rated}]", "--output", "ev"]) == 0
    evaluated = json.loads(Path("ev/segment_eval_results.json").read_text())["metrics"]
    assert (
        zoo_main(
            [
                "predict",
                *common,
                "--segments",
                "--filelist",
                str(rated),
                "--output",
                "pr",
                "--segment-classes",
                str(seg / "segment_label_ids.csv"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        zoo_main(
            [
                "score",
                "--segments",
                "pr/segment_submission.csv",
                "--data",
                str(rated),
                "--num-classes",
                "200",
                "--json",
            ]
        )
        == 0
    )
    scored = json.loads(capsys.readouterr().out)
    assert scored["segment_map"] == pytest.approx(evaluated["segment_map@100K"], abs=1e-6)
    assert scored["segment_map"] == pytest.approx(evaluated["segment_map"], abs=1e-6)


def test_score_prints_both_maps_and_writes_per_class_segment_ap(segdata, tmp_path, capsys):
    """Kaggle's MAP averages over every class with rated positives (a class without a row counts 0); google's
    segment_eval_inference.py over the classes the file lists. With a quarter of the rows dropped they differ,
    and each agrees with its definition; --per-class writes the segment AP of each class."""
    videos = rated_videos(segdata)
    ids, starts, scores = scores_for(videos, seed=2)
    rated = read_label_ids(segdata / "segment_label_ids.csv")
    order = {vid: i for i, vid in enumerate(dict.fromkeys(ids))}
    keys = (np.asarray([order[i] for i in ids], np.uint32) << np.uint32(6)) | (starts // 5).astype(np.uint32)
    top = TopSegments(rated, 100_000)
    top.add(scores, keys)
    full = tmp_path / "full.csv"
    write_top(full, top, list(order), 6)
    lines = full.read_text().splitlines()
    kept = [line for i, line in enumerate(lines[1:]) if i % 4 != 3]
    dropped = tmp_path / "dropped.csv"
    dropped.write_text("\n".join([lines[0], *kept]) + "\n")
    per_class = tmp_path / "per_class.csv"
    argv = [
        "score",
        "--segments",
        str(dropped),
        "--data",
        str(segdata / "validate"),
        "--num-classes",
        str(CLASSES),
    ]
    assert zoo_main([*argv, "--per-class", str(per_class)]) == 0
    out = capsys.readouterr().out
    scored, metric = score_segment_submission(dropped, rated_videos(segdata, {}), num_classes=CLASSES)
    assert scored["segment_map_listed"] == pytest.approx(official_map(dropped, videos), abs=1e-12)
    assert scored["segment_map"] < scored["segment_map_listed"]
    assert f"segment MAP {scored['segment_map']:.6f} over the" in out and "(Kaggle 2019)" in out
    assert (
        f"segment MAP {scored['segment_map_listed']:.6f} over the" in out and "segment_eval_inference" in out
    )
    import csv

    rows = list(csv.DictReader(per_class.open()))
    aps = {int(r["class"]): r for r in rows}
    expected = metric.per_class_ap()
    positives = metric.rated_positives()
    assert set(aps) == set(np.flatnonzero(positives > 0).tolist())
    for cls, row in aps.items():
        assert float(row["ap"]) == pytest.approx(expected[cls], abs=1e-6)
        assert int(row["listed"]) == any(k.startswith(f"{cls},") for k in kept)
    kaggle = np.mean([float(r["ap"]) for r in rows])
    assert kaggle == pytest.approx(scored["segment_map"], abs=1e-5)


def test_a_row_for_an_unrated_class_is_reported(segdata, tmp_path, capsys):
    videos = rated_videos(segdata)
    positives = np.zeros(CLASSES, np.int64)
    for v in videos:
        np.add.at(positives, v["segment_labels"][v["segment_scores"] > 0], 1)
    unrated = int(np.flatnonzero(positives == 0)[0])
    rated = int(np.flatnonzero(positives > 0)[0])
    v = videos[0]
    path = tmp_path / "sub.csv"
    path.write_text(
        f"Class,Segments\n{rated},{v['id']}:{int(v['segment_start_times'][0])}\n{unrated},{v['id']}:0\n"
    )
    messages: list[str] = []
    scored, _ = score_segment_submission(path, videos, num_classes=CLASSES, warn=messages.append)
    assert scored["unrated_rows"] == 1 and scored["segment_classes_listed"] == 1
    assert (
        len(messages) == 1 and f"{unrated} (line 3)" in messages[0] and "segment_label_ids.csv" in messages[0]
    )
    argv = [
        "score",
        "--segments",
        str(path),
        "--data",
        str(segdata / "validate"),
        "--num-classes",
        str(CLASSES),
    ]
    assert zoo_main(argv) == 0
    err = capsys.readouterr().err
    assert "without rated segments" in err
    listed_ids = set(read_label_ids(segdata / "segment_label_ids.csv").tolist())
    if unrated not in listed_ids:  # segment_label_ids.csv beside --data names the rated classes
        assert f"classes outside {segdata / 'segment_label_ids.csv'}: {unrated}" in err
    other = tmp_path / "ids.csv"
    other.write_text(f"Index\n{unrated}\n")
    assert zoo_main([*argv, "--segment-classes", str(other)]) == 0
    assert f"1 row(s) for classes outside {other}: {rated}" in capsys.readouterr().err
