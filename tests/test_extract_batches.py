"""zoo extract's pipeline: frames through the network in batches (bit for bit the one-frame run's features),
decoding threads started ahead of the network (a failure there names the video and the others go on; an
interrupt leaves only whole shards and the rerun finishes the job), and the ONNX conversion's memory bound.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration
tf = pytest.importorskip("tensorflow")
pytest.importorskip("av")

from test_extract_support import google_preprocessing, inception_standin, model_dir, write_video  # noqa: E402
from zoo_yt8m_extract.extract import Extractor, Options, run  # noqa: E402
from zoo_yt8m_extract.models import ModelFiles  # noqa: E402
from zoo_yt8m_extract.networks import InceptionGraph  # noqa: E402
from zoo_yt8m_extract.sources import expand  # noqa: E402

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("batches")
    models = model_dir(root / "models", archives=False)
    videos = root / "videos"
    videos.mkdir()
    # 11 frames (a batch of 8 and 3 left), 3 frames (fewer than a batch), 17 frames, 8 frames (one batch)
    clips = [
        write_video(videos / "a.mp4", seconds=11.0, fps=5, size=(64, 48)),
        write_video(videos / "b.mp4", seconds=3.0, fps=10, size=(96, 64), codec="libx264"),
        write_video(videos / "c.mp4", seconds=17.0, fps=4, size=(50, 30)),
        write_video(videos / "d.mp4", seconds=8.0, fps=5, size=(80, 60)),
    ]
    return {"root": root, "models": models, "clips": clips}


@pytest.fixture(scope="module")
def graphs(workspace):
    graph = (workspace["models"] / "classify_image_graph_def.pb").read_bytes()
    return {"graph": graph, "batched": InceptionGraph(graph, batch=8), "one": InceptionGraph(graph, batch=1)}


def _extractor(workspace, network, **options) -> Extractor:
    opts = Options(audio=False, **options)
    return Extractor(ModelFiles(model_dir=workspace["models"], quiet=True), opts, inception=network)


def _records(path: Path) -> dict[bytes, bytes]:
    out = {}
    for file in sorted(path.glob("*.tfrecord")) if path.is_dir() else [path]:
        for raw in tf.compat.v1.io.tf_record_iterator(str(file)):
            ex = tf.train.SequenceExample.FromString(raw)
            out[ex.context.feature["id"].bytes_list.value[0]] = raw
    return out


def test_batches_are_used_where_they_give_the_one_frame_features_bit_for_bit(workspace, graphs, tmp_path):
    """Where this CPU's batched convolutions round as its one-frame ones (seen on an Intel Xeon), frames go
    through the network 8 at a time; where they do not (an AMD EPYC: 3.8e-6 apart), the probe refuses batches
    and says why. Either way the features and the records are the one-frame run's, bit for bit."""
    batched, one = graphs["batched"], graphs["one"]
    assert one.batch == 1
    if batched.batch == 8:
        assert batched.batch_note == ""
    else:
        assert batched.batch == 1
        assert "do not give the one-frame activations bit for bit" in batched.batch_note
    videos = expand([str(c) for c in workspace["clips"]])
    a, b = _extractor(workspace, batched), _extractor(workspace, one)
    for video in videos:
        fa, fb = a.features(video), b.features(video)
        assert len(fa.rgb) == len(fb.rgb) > 0
        assert np.array_equal(fa.rgb, fb.rgb), video.path  # floats, not only their 8-bit codes
        assert fa.stamps == fb.stamps
    frames = [len(a.features(v).rgb) for v in videos]
    assert frames == [11, 3, 17, 8]
    # whole runs: batches and two videos in the network at once write the records of one frame per run
    s1 = run(
        videos, _extractor(workspace, batched, jobs=2), tmp_path / "batched", Options(audio=False, jobs=2)
    )
    s2 = run(videos, b, tmp_path / "one", Options(audio=False))
    assert s1.network["frames_per_run"] == batched.batch and s2.network["frames_per_run"] == 1
    assert _records(tmp_path / "batched") == _records(tmp_path / "one")
    report = json.loads((tmp_path / "batched" / "extract_report.json").read_text())
    assert report["network"] == {
        "runtime": "tensorflow",
        "frames_per_run": batched.batch,
        "note": batched.batch_note,
    }


def test_a_batch_gives_each_frame_its_own_activations(workspace, graphs, monkeypatch):
    """The batches themselves, on any CPU (the probe's verdict set aside): 11 frames as a batch of 8 and 3 one
    by one, 17 as 8, 8 and 1, each frame's activations its own, equal to the one-frame run's up to the
    rounding of a batched convolution (a frame out of place would be off by the activations' own size)."""
    monkeypatch.setattr(InceptionGraph, "_check_batches", lambda self, batch: "")
    forced = InceptionGraph(graphs["graph"], batch=8)
    assert forced.batch == 8
    videos = expand([str(c) for c in workspace["clips"]])
    a, b = _extractor(workspace, forced), _extractor(workspace, graphs["one"])
    for video in videos:
        fa, fb = a.features(video), b.features(video)
        assert len(fa.rgb) == len(fb.rgb) > 0 and fa.stamps == fb.stamps
        np.testing.assert_allclose(fa.rgb, fb.rgb, rtol=1e-4, atol=1e-4, err_msg=str(video.path))
        assert np.abs(fb.rgb[1:] - fb.rgb[:-1]).max() > 1e-2  # the frames differ: a mix-up would show


def test_a_graph_without_batches_runs_one_frame_at_a_time(workspace):
    fixed = InceptionGraph(inception_standin(batch_free=False), batch=8)
    assert fixed.batch == 1
    assert "batches of the graph fail" in fixed.batch_note
    assert "Input to reshape" in fixed.batch_note and "Traceback" not in fixed.batch_note
    frame = np.full((40, 30, 3), 200, np.uint8)
    assert fixed.run([frame] * 8).shape == (8, 2048)


def _coupled_graph() -> bytes:
    """Google's interface, but ``pool_3`` mixes the frames of a batch (a batch mean): batches must be refused."""
    rng = np.random.default_rng(5)
    graph = tf.Graph()
    with graph.as_default():
        x = google_preprocessing()  # DecodeJpeg:0 ... Mul:0
        w = rng.normal(0, 0.2, (13, 13, 3, 2048)).astype(np.float32)
        x = tf.nn.relu(tf.nn.conv2d(x, w, strides=23, padding="VALID"))  # [n, 13, 13, 2048]
        x = tf.nn.avg_pool2d(x, 13, 1, "VALID")
        pool = tf.add(x, tf.reduce_mean(x, axis=0, keepdims=True), name="pool_3")
        tf.reshape(pool, [1, 2048], name="pool_3/_reshape")
    return graph.as_graph_def().SerializeToString()


def test_batches_that_differ_from_one_frame_are_not_used():
    coupled = InceptionGraph(_coupled_graph(), batch=4)
    assert coupled.batch == 1
    assert "do not give the one-frame activations bit for bit" in coupled.batch_note


class FaultyNetwork:
    """The real batched graph, failing while one video is being decoded (in its decoding thread)."""

    def __init__(self, network: InceptionGraph, video_name: str, exc: BaseException, after: int = 2) -> None:
        self.network, self.video_name, self.exc, self.after = network, video_name, exc, after
        self.batch, self.batch_note = network.batch, network.batch_note
        self.seen = 0

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        if threading.current_thread().name == f"decode {self.video_name}":
            self.seen += 1
            if self.seen > self.after:
                raise self.exc
        return self.network.prepare(frame)

    def run(self, prepared):
        return self.network.run(prepared)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failure_in_the_decoding_thread_names_the_video_and_the_others_go_on(
    workspace, graphs, tmp_path, jobs
):
    videos = expand([str(c) for c in workspace["clips"]])
    network = FaultyNetwork(graphs["batched"], "c.mp4", RuntimeError("out of luck"))
    extractor = _extractor(workspace, network, jobs=jobs)
    summary = run(videos, extractor, tmp_path / "out", Options(audio=False, jobs=jobs))
    assert summary.done == 3
    [(path, reason)] = summary.failed
    assert path.endswith("c.mp4")
    assert reason == "decoding failed (RuntimeError: out of luck)"
    assert set(_records(tmp_path / "out")) == {b"a.mp4", b"b.mp4", b"d.mp4"}
    assert not [t for t in threading.enumerate() if t.name.startswith("decode ")]


def test_an_interrupt_in_the_pipeline_leaves_whole_shards_and_the_rerun_finishes(workspace, graphs, tmp_path):
    videos = expand([str(c) for c in workspace["clips"]])
    out = tmp_path / "out"
    options = Options(audio=False, shard_size=1)
    network = FaultyNetwork(graphs["batched"], "c.mp4", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run(videos, _extractor(workspace, network, shard_size=1), out, options)
    assert not [t for t in threading.enumerate() if t.name.startswith("decode ")]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["part-00000.json", "part-00000.tfrecord", "part-00001.json", "part-00001.tfrecord"]
    assert set(_records(out)) == {b"a.mp4", b"b.mp4"}
    summary = run(videos, _extractor(workspace, graphs["batched"], shard_size=1), out, options)
    assert (summary.skipped, summary.done, summary.failed) == (2, 2, [])
    clean = tmp_path / "clean"
    run(videos, _extractor(workspace, graphs["one"]), clean, Options(audio=False))
    assert _records(out) == _records(clean)


def _graph_with_big_constants(layers: int = 3) -> bytes:
    """Google's interface with ``layers`` 2048x2048 1x1 convolutions: 16 MB of weights each."""
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = google_preprocessing()  # DecodeJpeg:0 ... Mul:0
        w = rng.normal(0, 0.1, (8, 8, 3, 2048)).astype(np.float32)
        x = tf.nn.relu(tf.nn.conv2d(x, w, strides=32, padding="VALID"))  # [1, 10, 10, 2048]
        for _ in range(layers):
            w = rng.normal(0, 0.02, (1, 1, 2048, 2048)).astype(np.float32)
            x = tf.nn.relu(tf.nn.conv2d(x, w, strides=1, padding="VALID"))
        pool = tf.nn.avg_pool2d(x, 10, 1, "VALID", name="pool_3")
        tf.reshape(pool, [1, 2048], name="pool_3/_reshape")
    return graph.as_graph_def().SerializeToString()


def test_the_onnx_conversion_memory_is_bounded(tmp_path):
    """tf2onnx under protobuf's default backend kept one more copy of every weight per optimizer pass (3.5 GB
    above the start for these 49 MB); in its own process with pure-Python protobuf it stays within a few."""
    pytest.importorskip("tf2onnx")
    onnx = pytest.importorskip("onnx")
    from zoo_yt8m_extract import onnx_conversion

    data = _graph_with_big_constants()
    graph = tmp_path / "classify_image_graph_def.pb"
    graph.write_bytes(data)
    numbers = onnx_conversion.convert(graph, tmp_path / "out.onnx", "big.pb")
    size_mib = len(data) / 2**20
    assert size_mib > 45
    assert numbers["peak_rss_mib"] - numbers["rss_before_mib"] < 16 * size_mib, numbers
    model = onnx.load(str(tmp_path / "out.onnx"))
    assert [o.name for o in model.graph.output] == ["pool_3/_reshape:0"]


def test_a_graph_tf2onnx_cannot_convert_is_named(tmp_path):
    pytest.importorskip("tf2onnx")
    from zoo_yt8m_extract import onnx_conversion

    from zoo.errors import DataError

    graph = tmp_path / "classify_image_graph_def.pb"
    graph.write_bytes(b"\x0a\x05not a graph")
    with pytest.raises(
        DataError, match=r"^odd\.pb: cannot be converted to ONNX \(.+\); use --runtime tensorflow"
    ):
        onnx_conversion.convert(graph, tmp_path / "out.onnx", "odd.pb")
    assert not (tmp_path / "out.onnx").exists()
