"""The contract kit (zoo.testing) over every registered model, the built-in readers and metrics, and the kit's
own ability to catch a broken plugin."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import zoo
from zoo.config import describe_fields
from zoo.plugins import get_plugins
from zoo.testing import MODEL_CHECKS, check_metric, check_model, check_reader, metric_batches

MODELS = get_plugins().registry("model").names()


@pytest.mark.parametrize(
    "check",
    # the export check traces, saves and loads the model in a fresh process
    [
        pytest.param(c, marks=[pytest.mark.integration, pytest.mark.timeout(900)]) if c == "export" else c
        for c in MODEL_CHECKS
    ],
)
@pytest.mark.parametrize("name", MODELS)
def test_model_contract(name, check):
    check_model(name, checks=[check])


@pytest.mark.parametrize("name", MODELS)
def test_config_is_typed_and_documented(name):
    cls = zoo.plugin_class("model", name)
    assert dataclasses.is_dataclass(cls.Config)
    cls.Config()  # every option has a default
    undocumented = [f["name"] for f in describe_fields(cls.Config) if not f["doc"]]
    assert not undocumented, f"{name}: options without a docstring: {undocumented}"
    assert (cls.__doc__ or "").strip(), f"{name}: the model class needs a docstring (shown by `zoo models`)"


# -- readers ------------------------------------------------------------------------------------------------
FRAME_SPEC = zoo.DatasetSpec(num_classes=9, features={"rgb": 16, "audio": 8}, max_frames=6)


def frame_records(path, videos):
    from zoo_yt8m_data.tfrecord import frame
    from zoo_yt8m_data.wire import encode_sequence_example

    rng = np.random.default_rng(len(videos))
    payloads = []
    for vid, labels, n in videos:
        lists = {
            name: rng.integers(0, 256, (n, size), dtype=np.uint8)
            for name, size in FRAME_SPEC.features.items()
        }
        payloads.append(encode_sequence_example({"id": vid.encode(), "labels": labels}, lists))
    path.write_bytes(b"".join(frame(p) for p in payloads))
    return str(path)


def test_frame_reader_contract(tmp_path):
    a = frame_records(tmp_path / "a.tfrecord", [("v1", [0, 3], 4), ("v2", [], 1), ("v3", [8], 9)])
    b = frame_records(tmp_path / "b.tfrecord", [("v4", [2], 6)])
    videos = check_reader("yt8m-frame", FRAME_SPEC, [a, b])
    assert [v["num_frames"] for v in videos] == [4, 1, 6, 6]


def test_reader_check_fails_uint8_frames_without_dequantization(tmp_path):
    """A reader that yields uint8 codes must say what they mean (zoo.contracts.DequantizingReader): without
    dequantize_into the kit fails it, instead of training failing later."""
    from zoo_yt8m_data.readers import FrameFeatureReader

    class CodesOnly:  # the frame reader's raw records (uint8 codes), without its dequantize_into
        name = "codes-only"
        Config = FrameFeatureReader.Config

        def __init__(self, config, spec):
            self._inner = FrameFeatureReader(config, spec)

        def sources(self):
            return self._inner.sources()

        def read(self, source):
            return self._inner.read_part(source, 0, 1)  # the records as stored: uint8 codes

        def __iter__(self):
            return (video for source in self.sources() for video in self.read(source))

    a = frame_records(tmp_path / "a.tfrecord", [("v1", [0], 3), ("v2", [1], 2)])
    with pytest.raises(AssertionError, match=r"yields uint8 codes for audio, rgb but has no dequantize_into"):
        check_reader(CodesOnly, FRAME_SPEC, [a])


def test_reader_check_catches_an_error_that_does_not_name_the_file(tmp_path, monkeypatch):
    from zoo_yt8m_data import readers

    a = frame_records(tmp_path / "a.tfrecord", [("v1", [0], 3), ("v2", [1], 2)])

    def anonymous(self, error):
        raise zoo.DataError("something is wrong")

    monkeypatch.setattr(readers.FrameFeatureReader, "corrupt", anonymous)
    with pytest.raises(AssertionError, match="does not name it"):
        check_reader("yt8m-frame", FRAME_SPEC, [a])


# -- metrics ------------------------------------------------------------------------------------------------
def tied(label: int) -> tuple:
    labels = np.zeros((1, 11), np.float32)
    labels[0, label] = 1
    return (np.full((1, 11), 0.5, np.float32), labels, 0.3)


def test_yt8m_metric_contract_and_its_tie_rule():
    # Documented: equal scores rank by class index (lowest first) for Hit@1 and PERR; the pooled GAP counts a
    # tie with its expected value (one positive among 11 tied classes: mean of 1/rank = H(11) / 11).
    gap = sum(1 / r for r in range(1, 12)) / 11
    ties = [
        (tied(0), {"hit_at_1": 1.0, "perr": 1.0, "gap": gap}),
        (tied(3), {"hit_at_1": 0.0, "perr": 0.0, "gap": gap}),
    ]
    results = check_metric("yt8m", ties=ties)
    assert results["num_videos"] == 15


def segment_batches(num_classes: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(4):
        truth, ids, starts = [], [], []
        for v in range(3):
            vid = f"b{b}v{v}"
            segs = [0, 5, 10]
            classes = rng.integers(0, num_classes, 3)
            truth.append(
                {
                    "id": vid,
                    "segment_start_times": segs,
                    "segment_labels": classes.tolist(),
                    "segment_scores": (rng.uniform(size=3) < 0.5).astype(float).tolist(),
                }
            )
            ids += [vid] * 3
            starts += segs
        scores = np.round(rng.uniform(size=(len(ids), num_classes)), 1)
        out.append({"truth": truth, "ids": ids, "starts": starts, "scores": scores})
    return out


def feed_segments(metric, batch):
    for video in batch["truth"]:
        metric.add_ground_truth(video)
    metric.update_segments(batch["ids"], batch["starts"], batch["scores"])


def test_segment_metric_contract():
    results = check_metric("yt8m-segment", batches=segment_batches(11), feed=feed_segments)
    assert results["rated_pairs"] == 36


def test_segment_metric_contract_on_segment_mode_batches():
    """The Metric contract (update(scores, labels, loss, mask)), as zoo eval/bench feed it."""
    batches = metric_batches(zoo.testing.SPEC, masked=True)
    results = check_metric("yt8m-segment", batches=batches)
    assert results["rated_pairs"] == results["rated_pairs_scored"] == sum(int(b[3].sum()) for b in batches)
    # the same pairs as rated ground truth: one video per row, its rated classes one 0-frame segment each
    truth = zoo.build_metric("yt8m-segment", spec=zoo.testing.SPEC)
    row = 0
    for scores, labels, _, mask in batches:
        for s, y, m in zip(scores, labels, mask):
            rated = np.flatnonzero(m)
            truth.add_ground_truth(
                {
                    "id": f"v{row}",
                    "segment_start_times": [0] * rated.size,
                    "segment_labels": rated,
                    "segment_scores": y[rated],
                }
            )
            truth.update_segments([f"v{row}"], [0], s[None])
            row += 1
    assert truth.compute() == pytest.approx(results, abs=1e-12)
    with pytest.raises(zoo.DataError, match="no label_mask"):
        check_metric("yt8m-segment")  # unmasked batches: which pairs are rated is unknown


def test_video_metric_refuses_a_partial_mask_and_accepts_a_full_one():
    scores, labels, loss, mask = metric_batches(zoo.testing.SPEC, masked=True)[0]
    metric = zoo.build_metric("yt8m", spec=zoo.testing.SPEC)
    with pytest.raises(zoo.DataError, match="yt8m-segment"):
        metric.update(scores, labels, loss=loss, mask=mask)
    metric.update(scores, labels, loss=loss, mask=np.ones_like(mask))
    plain = zoo.build_metric("yt8m", spec=zoo.testing.SPEC)
    plain.update(scores, labels, loss=loss)
    assert metric.compute() == pytest.approx(plain.compute())


def test_metric_check_requires_the_mask_argument():
    from zoo_yt8m_metrics.video import Yt8mMetric

    class OldUpdate(Yt8mMetric):
        """Tie rule: as yt8m's."""

        def update(self, scores, labels, loss=None):
            super().update(scores, labels, loss)

    with pytest.raises(AssertionError, match="must accept mask=None"):
        check_metric(OldUpdate)


def test_metric_check_catches_a_merge_that_loses_data():
    from zoo_yt8m_metrics.video import Yt8mMetric

    class ForgetfulMerge(Yt8mMetric):
        """Tie rule: as yt8m's."""

        def merge(self, states):
            super().merge(states[:1])

    with pytest.raises(AssertionError, match="merged rank states differ"):
        check_metric(ForgetfulMerge, batches=metric_batches(zoo.testing.SPEC))


# -- the kit catches broken models --------------------------------------------------------------------------
def _layer(forward, extra=None):
    import paddle

    @dataclasses.dataclass
    class Config:
        pass

    class Broken(paddle.nn.Layer):
        """A deliberately broken model."""

        name = "broken"

        def __init__(self, config, spec):
            super().__init__()
            self.fc = paddle.nn.Linear(sum(spec.features.values()), spec.num_classes)
            self.unused = paddle.nn.Linear(2, 2) if extra == "unused" else None
            self.bn = paddle.nn.BatchNorm1D(spec.features["rgb"]) if extra == "bn" else None

        def forward(self, batch):
            return forward(self, batch)

    Broken.Config = Config
    return Broken


def _sum_frames(self, batch):
    import paddle

    x = paddle.concat([batch["rgb"], batch["audio"]], axis=-1)
    return self.fc(x.sum(axis=1) / batch["mask"].sum(axis=1, keepdim=True))


def _masked(self, batch):
    import paddle

    x = paddle.concat([batch["rgb"], batch["audio"]], axis=-1) * batch["mask"].unsqueeze(-1)
    return self.fc(x.sum(axis=1) / batch["mask"].sum(axis=1, keepdim=True))


def _bn_over_all_frames(self, batch):
    rgb = self.bn(batch["rgb"].transpose([0, 2, 1])).transpose([0, 2, 1]) * batch["mask"].unsqueeze(-1)
    return _masked(self, {**batch, "rgb": rgb})


@pytest.mark.parametrize(
    "forward, extra, check, message",
    [
        (_sum_frames, None, "padding", "padding frames change the logits"),
        (_masked, "unused", "gradients", "without a gradient: unused.weight"),
        (_bn_over_all_frames, "bn", "batchnorm", "BatchNorm statistic"),
        (lambda self, batch: _masked(self, batch)[:, :3], None, "output_shape", "expected \\[3, 11\\]"),
        (lambda self, batch: _masked(self, batch) / 0.0, None, "finite", "NaN or inf"),
    ],
)
def test_model_checks_catch_broken_models(forward, extra, check, message):
    with pytest.raises(AssertionError, match=message):
        check_model(_layer(forward, extra), checks=[check])
    check_model(_layer(_masked), checks=["output_shape", "finite", "padding", "gradients", "batchnorm"])
