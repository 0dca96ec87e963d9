"""Cross-checks against TensorFlow's own writer and parser (needs the tf extra; CI installs it).

Our readers must decode exactly what ``tf.io.parse_single_sequence_example`` + ``decode_raw`` + the starter
code's dequantization give, and files we write must read back in TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from zoo import DatasetSpec

# paddle must be loaded before TensorFlow: importing paddle's core after TF crashes the process, and the
# plugin registry imports paddle (model plugins) when the first reader is built.
pytest.importorskip("paddle")
tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf

from zoo_yt8m_data.synth import SynthSpec, generate  # noqa: E402

YT8M_FEATURES = {"rgb": 1024, "audio": 128}


def _starter_dequantize(x):
    """google/youtube-8m utils.Dequantize on a float32 tensor."""
    max_q, min_q = 2.0, -2.0
    scalar = (max_q - min_q) / 255.0
    bias = (max_q - min_q) / 512.0 + min_q
    return x * scalar + bias


def _tf_sequence_example(vid, labels, rgb, audio, extra=None):
    ex = tf.train.SequenceExample()
    ex.context.feature["id"].bytes_list.value.append(vid)
    ex.context.feature["labels"].int64_list.value.extend(labels)
    for key, values in (extra or {}).items():
        if isinstance(values[0], float):
            ex.context.feature[key].float_list.value.extend(values)
        else:
            ex.context.feature[key].int64_list.value.extend(values)
    for name, frames in (("rgb", rgb), ("audio", audio)):
        fl = ex.feature_lists.feature_list[name]
        for row in frames:
            fl.feature.add().bytes_list.value.append(row.tobytes())
    return ex.SerializeToString()


def _tf_parse(serialized, max_frames, extra_context=()):
    context = {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)}
    for key in extra_context:
        context[key] = tf.io.VarLenFeature(tf.float32 if key == "segment_scores" else tf.int64)
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized,
        context_features=context,
        sequence_features={
            name: tf.io.FixedLenSequenceFeature([], dtype=tf.string) for name in ("rgb", "audio")
        },
    )
    out = {"id": ctx["id"].numpy().decode(), "labels": sorted(ctx["labels"].values.numpy().tolist())}
    for name, size in (("rgb", 1024), ("audio", 128)):
        decoded = tf.reshape(tf.cast(tf.io.decode_raw(seq[name], tf.uint8), tf.float32), [-1, size])
        out[name] = _starter_dequantize(decoded).numpy()[:max_frames]
    for key in extra_context:
        out[key] = ctx[key].values.numpy()
    return out


@pytest.fixture(scope="module")
def tf_written(tmp_path_factory):
    rng = np.random.default_rng(1)
    lengths = [1, 2, 17, 300, 301, 0, 40]
    records, expected = [], []
    for i, n in enumerate(lengths):
        rgb = rng.integers(0, 256, (n, 1024), dtype=np.uint8)
        audio = rng.integers(0, 256, (n, 128), dtype=np.uint8)
        labels = sorted(rng.choice(3862, size=i % 4, replace=False).tolist())
        serialized = _tf_sequence_example(f"v{i:03d}".encode(), labels, rgb, audio)
        records.append(serialized)
        expected.append(serialized)
    path = tmp_path_factory.mktemp("tf") / "frame0000.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for r in records:
            writer.write(r)
    return path, expected


def test_frame_reader_equals_tensorflow_parse(tf_written):
    path, serialized = tf_written
    spec = DatasetSpec(num_classes=3862, features=YT8M_FEATURES)
    ours = list(zoo.build_reader("yt8m-frame", paths=[str(path)], spec=spec))
    assert len(ours) == len(serialized)
    for got, raw in zip(ours, serialized):
        want = _tf_parse(raw, spec.max_frames)
        assert got["id"] == want["id"]
        assert sorted(got["labels"]) == want["labels"]
        assert got["num_frames"] == len(want["rgb"]) <= 300
        for name in ("rgb", "audio"):
            assert got[name].dtype == np.float32
            np.testing.assert_array_equal(got[name], want[name])


def test_batches_equal_tensorflow_values(tf_written):
    from zoo.data import batches

    path, serialized = tf_written
    spec = DatasetSpec(num_classes=3862, max_frames=20, features=YT8M_FEATURES)
    reader = zoo.build_reader("yt8m-frame", paths=[str(path)], spec=spec)
    (batch,) = list(batches(reader, spec=spec, batch_size=len(serialized)))
    for i, raw in enumerate(serialized):
        want = _tf_parse(raw, 20)
        n = len(want["rgb"])
        assert batch["num_frames"][i] == n
        np.testing.assert_array_equal(batch["rgb"][i, :n], want["rgb"])
        np.testing.assert_array_equal(batch["audio"][i, :n], want["audio"])


def test_files_we_write_read_back_in_tensorflow(tmp_path):
    root = tmp_path / "synth"
    generate(
        root, SynthSpec(train_videos=12, valid_videos=0, test_videos=0, classes=30, train_shards=1, seed=3)
    )
    path = root / "train" / "train0000.tfrecord"
    spec = DatasetSpec(num_classes=30, features=YT8M_FEATURES)
    ours = list(zoo.build_reader("yt8m-frame", paths=[str(path)], spec=spec))
    theirs = [_tf_parse(r, 300) for r in tf.data.TFRecordDataset(str(path))]  # TF checks the CRCs too
    assert len(theirs) == 12
    for got, want in zip(ours, theirs):
        assert got["id"] == want["id"] and sorted(got["labels"]) == want["labels"]
        np.testing.assert_array_equal(got["rgb"], want["rgb"])
        np.testing.assert_array_equal(got["audio"], want["audio"])


def test_video_level_reader_equals_tensorflow(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "video.tfrecord"
    want = []
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(5):
            ex = tf.train.Example()
            ex.features.feature["id"].bytes_list.value.append(f"x{i}".encode())
            ex.features.feature["labels"].int64_list.value.extend([i, 100 + i])
            mean_rgb = rng.standard_normal(1024).astype(np.float32)
            mean_audio = rng.standard_normal(128).astype(np.float32)
            ex.features.feature["mean_rgb"].float_list.value.extend(mean_rgb.tolist())
            ex.features.feature["mean_audio"].float_list.value.extend(mean_audio.tolist())
            writer.write(ex.SerializeToString())
            parsed = tf.io.parse_single_example(
                ex.SerializeToString(),
                {
                    "mean_rgb": tf.io.FixedLenFeature([1024], tf.float32),
                    "mean_audio": tf.io.FixedLenFeature([128], tf.float32),
                },
            )
            want.append((f"x{i}", [i, 100 + i], parsed["mean_rgb"].numpy(), parsed["mean_audio"].numpy()))
    got = list(zoo.build_reader("yt8m-video", paths=[str(path)]))
    assert len(got) == 5
    for record, (vid, labels, rgb, audio) in zip(got, want):
        assert record["id"] == vid and record["labels"] == labels
        np.testing.assert_array_equal(record["mean_rgb"], rgb)
        np.testing.assert_array_equal(record["mean_audio"], audio)


def test_segment_reader_equals_tensorflow(tmp_path):
    rng = np.random.default_rng(3)
    extra = {
        "segment_start_times": [0, 5, 35],
        "segment_end_times": [5, 10, 40],
        "segment_labels": [12, 12, 900],
        "segment_scores": [1.0, 0.0, 1.0],
    }
    rgb = rng.integers(0, 256, (42, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (42, 128), dtype=np.uint8)
    raw = _tf_sequence_example(b"seg1", [12, 900], rgb, audio, extra)
    path = tmp_path / "segment.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(raw)
    (got,) = list(zoo.build_reader("yt8m-segment", paths=[str(path)]))
    want = _tf_parse(raw, 300, extra_context=list(extra))
    for key in extra:
        np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_array_equal(got["rgb"], want["rgb"])
    assert got["segment_scores"].dtype == np.float32 and got["segment_start_times"].dtype == np.int64
