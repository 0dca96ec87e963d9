"""Other record layouts people have on disk, written with TensorFlow's own protos (needs the tf extra):
MediaPipe's YouTube-8M extraction output (MediaSequence keys, float features), the 2017 release's
``video_id`` context key, and float frame features under the YouTube-8M keys. Each must read with the
values TensorFlow parses, be reported by ``zoo data inspect``, pack, train and evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import TINY_CLASSES, tiny_run_overrides

import zoo
from zoo import DatasetSpec

# paddle before TensorFlow (see test_data_tf.py)
pytest.importorskip("paddle")
tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf

from zoo_yt8m_data.inspection import inspect_sources  # noqa: E402
from zoo_yt8m_data.packing import pack  # noqa: E402
from zoo_yt8m_data.readers import dequantize, quantize  # noqa: E402

ZOO = str(Path(sys.executable).with_name("zoo"))
CLASSES = TINY_CLASSES
FEATURES = {"rgb": 1024, "audio": 128}
SPEC = DatasetSpec(num_classes=CLASSES, features=FEATURES)


def _read(paths, spec=SPEC, **options):
    return list(zoo.build_reader("yt8m-frame", paths=[str(p) for p in paths], spec=spec, **options))


def _mediapipe_example(video, floats, *, with_id=True, labels=True, audio_frames=None):
    """A SequenceExample as MediaPipe's feature_extraction.pbtxt writes it, plus the clip labels a user adds."""
    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    if with_id:
        ctx["example/id"].bytes_list.value.append(video["id"].encode())
    ctx["clip/data_path"].bytes_list.value.append(f"/videos/{video['id']}.mp4".encode())
    ctx["clip/start/timestamp"].int64_list.value.append(0)
    ctx["clip/end/timestamp"].int64_list.value.append(len(floats["rgb"]) * 1_000_000)
    if labels:
        ctx["clip/label/index"].int64_list.value.extend(video["labels"])
        ctx["clip/label/string"].bytes_list.value.extend(f"class{c}".encode() for c in video["labels"])
    for name, values in floats.items():
        prefix = name.upper()
        n = len(values) if audio_frames is None or name != "audio" else audio_frames
        ctx[f"{prefix}/feature/dimensions"].int64_list.value.append(values.shape[1])
        ctx[f"{prefix}/feature/rate"].float_list.value.append(1.0)
        fl = ex.feature_lists.feature_list[f"{prefix}/feature/floats"]
        ts = ex.feature_lists.feature_list[f"{prefix}/feature/timestamp"]
        for t, row in enumerate(values[:n]):
            fl.feature.add().float_list.value.extend(row.tolist())
            ts.feature.add().int64_list.value.append(t * 1_000_000)
    return ex.SerializeToString()


def _yt8m_example(video, frames, *, id_key="id"):
    """The releases' layout; uint8 frames as bytes (quantized), float frames as float lists."""
    ex = tf.train.SequenceExample()
    ex.context.feature[id_key].bytes_list.value.append(video["id"].encode())
    ex.context.feature["labels"].int64_list.value.extend(video["labels"])
    for name, values in frames.items():
        fl = ex.feature_lists.feature_list[name]
        for row in values:
            if values.dtype == np.uint8:
                fl.feature.add().bytes_list.value.append(row.tobytes())
            else:
                fl.feature.add().float_list.value.extend(row.tolist())
    return ex.SerializeToString()


def _write(path: Path, serialized: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for raw in serialized:
            writer.write(raw)
    return path


def _floats_of(video, rng):
    """Real-valued features: the synthetic video's values plus noise (not on the quantization grid)."""
    return {
        name: (video[name] + rng.normal(0, 0.01, video[name].shape)).astype(np.float32) for name in FEATURES
    }


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, tiny_data):
    """The tiny synthetic dataset, and the same videos in the MediaPipe, video_id and float layouts."""
    root = tmp_path_factory.mktemp("layouts")
    official = root / "official"
    official.symlink_to(tiny_data, target_is_directory=True)
    rng = np.random.default_rng(0)
    floats: dict[str, dict[str, np.ndarray]] = {}
    for split in ("train", "validate", "test"):
        for path in sorted((official / split).glob("*.tfrecord")):
            videos = _read([path])
            quantized = [_read_raw(path)[i] for i in range(len(videos))]
            mp, vid, flt = [], [], []
            for video, codes in zip(videos, quantized):
                f = floats[video["id"]] = _floats_of(video, rng)
                mp.append(_mediapipe_example(video, f))
                vid.append(_yt8m_example(video, codes, id_key="video_id"))
                flt.append(_yt8m_example(video, f))
            _write(root / "mediapipe" / split / path.name, mp)
            _write(root / "video_id" / split / path.name, vid)
            _write(root / "float" / split / path.name, flt)
    return root, floats


def _read_raw(path):
    """uint8 frames per video, as the official file holds them."""
    from zoo_yt8m_data.readers import FrameFeatureReader

    reader = FrameFeatureReader(FrameFeatureReader.Config(paths=[str(path)]), SPEC)
    return [{name: np.asarray(r[name]) for name in FEATURES} for r in reader.read_part(str(path), 0, 1)]


def _tf_parse_floats(raw):
    ctx, seq = tf.io.parse_single_sequence_example(
        raw,
        context_features={
            "example/id": tf.io.FixedLenFeature([], tf.string),
            "clip/label/index": tf.io.VarLenFeature(tf.int64),
        },
        sequence_features={
            f"{name.upper()}/feature/floats": tf.io.FixedLenSequenceFeature([size], tf.float32)
            for name, size in FEATURES.items()
        },
    )
    out = {
        "id": ctx["example/id"].numpy().decode(),
        "labels": ctx["clip/label/index"].values.numpy().tolist(),
    }
    for name in FEATURES:
        out[name] = seq[f"{name.upper()}/feature/floats"].numpy()
    return out


def test_mediapipe_records_equal_tensorflow_parse(layouts):
    root, floats = layouts
    path = root / "mediapipe" / "train" / "train0000.tfrecord"
    auto = _read([path])
    explicit = _read([path], layout="mediapipe")
    keyed = _read(
        [path],
        layout="yt8m",  # every key given explicitly overrides the layout
        feature_keys={"rgb": "RGB/feature/floats", "audio": "AUDIO/feature/floats"},
        id_key="example/id",
        label_key="clip/label/index",
        dtype="float32",
    )
    theirs = [_tf_parse_floats(raw.numpy()) for raw in tf.data.TFRecordDataset(str(path))]
    assert len(auto) == len(theirs) == 30
    for got_auto, got_explicit, got_keyed, want in zip(auto, explicit, keyed, theirs):
        for got in (got_auto, got_explicit, got_keyed):
            assert got["id"] == want["id"] and got["labels"] == want["labels"]
            assert got["num_frames"] == len(want["rgb"])
            for name in FEATURES:
                assert got[name].dtype == np.float32 and got[name].flags.aligned
                np.testing.assert_array_equal(got[name], want[name])
                np.testing.assert_array_equal(got[name], floats[got["id"]][name])


def test_video_id_records_read_like_the_official_ones(layouts):
    root, _ = layouts
    for split in ("train", "validate"):
        official = _read(sorted((root / "official" / split).glob("*.tfrecord")))
        old = _read(sorted((root / "video_id" / split).glob("*.tfrecord")))
        keyed = _read(
            sorted((root / "video_id" / split).glob("*.tfrecord")), id_key="video_id", dtype="uint8"
        )
        assert [v["id"] for v in old] == [v["id"] for v in official] == [v["id"] for v in keyed]
        for a, b, c in zip(official, old, keyed):
            assert a["labels"] == b["labels"] == c["labels"]
            for name in FEATURES:
                np.testing.assert_array_equal(a[name], b[name])
                np.testing.assert_array_equal(a[name], c[name])


def test_video_level_reader_takes_video_id(tmp_path):
    ex = tf.train.Example()
    ex.features.feature["video_id"].bytes_list.value.append(b"-09K4OPZSSo")
    ex.features.feature["labels"].int64_list.value.extend([66])
    ex.features.feature["mean_rgb"].float_list.value.extend([0.5] * 1024)
    ex.features.feature["mean_audio"].float_list.value.extend([-0.25] * 128)
    path = _write(tmp_path / "video2017.tfrecord", [ex.SerializeToString()])
    (got,) = zoo.build_reader(
        "yt8m-video", paths=[str(path)], spec=DatasetSpec(num_classes=4716, features=FEATURES)
    )
    assert got["id"] == "-09K4OPZSSo" and got["labels"] == [66]
    assert float(got["mean_rgb"][3]) == 0.5 and float(got["mean_audio"][0]) == -0.25


def test_float_frames_under_the_yt8m_keys(layouts):
    root, floats = layouts
    path = root / "float" / "test" / "test0000.tfrecord"
    for options in ({}, {"dtype": "float32"}, {"layout": "yt8m"}):
        got = _read([path], **options)
        assert len(got) == 24
        for video in got:
            for name in FEATURES:
                assert video[name].dtype == np.float32
                np.testing.assert_array_equal(video[name], floats[video["id"]][name])
    with pytest.raises(
        zoo.errors.DataError,
        match=r"'rgb': frame 0 is a float feature, expected bytes.*data\.dtype says uint8",
    ):
        _read([path], dtype="uint8")
    # quantized files refuse dtype float32 the same way
    with pytest.raises(zoo.errors.DataError, match="frame 0 is a bytes feature, expected float"):
        _read([root / "official" / "test" / "test0000.tfrecord"], dtype="float32")


def test_mediapipe_id_fallback_unaligned_streams_and_clear_errors(tmp_path, layouts):
    _, floats = layouts
    rng = np.random.default_rng(5)
    video = {"id": "clip7", "labels": [1, 4]}
    f = {
        "rgb": rng.standard_normal((6, 1024)).astype(np.float32),
        "audio": rng.standard_normal((6, 128)).astype(np.float32),
    }
    # the extraction graph sets no example/id; VGGish's audio framing can give a frame less than the video
    raw = _mediapipe_example(video, f, with_id=False, labels=False, audio_frames=5)
    path = _write(tmp_path / "features.tfrecord", [raw])
    (got,) = _read([path])
    assert got["id"] == "/videos/clip7.mp4" and got["labels"] == [] and got["num_frames"] == 5
    np.testing.assert_array_equal(got["rgb"], f["rgb"][:5])
    np.testing.assert_array_equal(got["audio"], f["audio"][:5])
    (media,) = _read([path], id_key="clip/data_path", align="shortest")
    assert media["num_frames"] == 5
    with pytest.raises(zoo.errors.DataError, match=r"'audio' has 5 frames but 'rgb' has 6.*data\.align"):
        _read([path], align="strict")
    with pytest.raises(
        zoo.errors.DataError, match=r"no feature list 'rgb'.*RGB/feature/floats.*data\.feature_keys"
    ):
        _read([path], layout="yt8m", id_key="clip/data_path")
    with pytest.raises(
        zoo.errors.DataError, match=r"no 'video_id' feature \(it has: .*clip/data_path.*data\.id_key"
    ):
        _read([path], id_key="video_id")
    with pytest.raises(zoo.errors.ConfigError, match="feature_keys.*'depth' not in dataset.features"):
        _read([path], feature_keys={"depth": "DEPTH/feature/floats"})


def test_wire_float_frames_fast_and_general_paths():
    from zoo_yt8m_data import wire

    frames = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    buf = wire.encode_sequence_example({"id": b"v"}, {"rgb": frames})
    _, lists = wire.parse_sequence_example(buf)
    got = wire.decode_frame_values(buf, *lists["rgb"], 3)
    np.testing.assert_array_equal(got, frames)
    # the same frames with unpacked floats (a valid, non-canonical encoding) take the general path
    unpacked = b"".join(
        wire._len_field(1, wire._len_field(2, b"".join(b"\x0d" + v.tobytes() for v in row))) for row in frames
    )
    np.testing.assert_array_equal(wire.decode_frame_values(unpacked, 0, len(unpacked), 3), frames)
    with pytest.raises(wire.WireError, match="frame 0 has 3 values, expected 4"):
        wire.decode_frame_values(buf, *lists["rgb"], 4)
    # and TensorFlow parses what we encode
    _, seq = tf.io.parse_single_sequence_example(
        buf, sequence_features={"rgb": tf.io.FixedLenSequenceFeature([3], tf.float32)}
    )
    np.testing.assert_array_equal(seq["rgb"].numpy(), frames)


def test_quantize_inverts_dequantize():
    codes = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(quantize(dequantize(codes)), codes)
    x = np.random.default_rng(1).uniform(-2, 2, 10000).astype(np.float32)
    assert np.abs(dequantize(quantize(x)) - x).max() <= 2 / 255 + 1e-6
    np.testing.assert_array_equal(quantize(np.array([-9.0, 9.0], np.float32)), [0, 255])


@pytest.mark.timeout(600)
@pytest.mark.integration
def test_inspect_reports_the_layout_it_found(layouts):
    root, _ = layouts
    expected = {
        "official": ("yt8m", "id", "labels", "rgb", "uint8"),
        "video_id": ("yt8m", "video_id", "labels", "rgb", "uint8"),
        "float": ("yt8m", "id", "labels", "rgb", "float32"),
        "mediapipe": ("mediapipe", "example/id", "clip/label/index", "RGB/feature/floats", "float32"),
    }
    for kind, (layout, id_key, label_key, rgb_key, dtype) in expected.items():
        result = inspect_sources([str(root / kind / "validate")], num_classes=CLASSES)
        assert result["damaged_files"] == 0 and result["records"] == 24
        (found,) = result["files"][0]["layouts"]
        assert (found["layout"], found["id_key"], found["label_key"]) == (layout, id_key, label_key)
        assert found["features"]["rgb"] == {"key": rgb_key, "dtype": dtype} and found["records"] == 24
        assert result["layouts"][0]["records"] == 24 and layout in result["layouts"][0]["layout"]
    out = subprocess.run(
        [ZOO, "data", "inspect", str(root / "mediapipe" / "validate"), "--num-classes", str(CLASSES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (
        "layout: mediapipe (id 'example/id', labels 'clip/label/index', rgb 'RGB/feature/floats' float32"
        in out.stdout
    )


def test_pack_keeps_floats_or_quantizes_on_request(layouts, tmp_path):
    root, floats = layouts
    src = root / "mediapipe" / "validate"
    kept = pack([str(src)], tmp_path / "float", num_classes=CLASSES, jobs=1, progress=False)
    index = json.loads((tmp_path / "float" / "index.json").read_text())
    assert index["version"] == 2 and index["dtypes"] == {"rgb": "float32", "audio": "float32"}
    assert index["quantize"] is False and kept.records == 24
    assert (tmp_path / "float" / "validate0000" / "rgb.f32").stat().st_size == 4 * 1024 * index["frames"]
    packed_floats = _read([tmp_path / "float"])
    assert [v["id"] for v in packed_floats] == [v["id"] for v in _read([src])]
    for video in packed_floats:
        np.testing.assert_array_equal(video["rgb"], floats[video["id"]]["rgb"])
        np.testing.assert_array_equal(video["audio"], floats[video["id"]]["audio"])

    small = pack([str(src)], tmp_path / "u8", num_classes=CLASSES, jobs=1, progress=False, quantize=True)
    index = json.loads((tmp_path / "u8" / "index.json").read_text())
    assert index["version"] == 1 and index["dtypes"] == {"rgb": "uint8", "audio": "uint8"}
    assert index["quantize"] is True and index["quantized_at_pack"] == ["audio", "rgb"]
    assert small.bytes < kept.bytes / 3
    for video in _read([tmp_path / "u8"]):
        for name in FEATURES:
            np.testing.assert_array_equal(video[name], dequantize(quantize(floats[video["id"]][name])))
    # the packed readers read both; inspect re-checks both
    for out in ("float", "u8"):
        result = inspect_sources([str(tmp_path / out)], num_classes=CLASSES)
        assert result["damaged_files"] == 0 and result["files"][0]["layouts"][0]["layout"] == "packed"
    # packing again with other settings does not reuse the shards
    again = pack([str(src)], tmp_path / "float", num_classes=CLASSES, jobs=1, progress=False, quantize=True)
    assert again.packed == ["validate0000"] and not again.reused
    same = pack([str(src)], tmp_path / "float", num_classes=CLASSES, jobs=1, progress=False, quantize=True)
    assert same.reused == ["validate0000"]


@pytest.mark.timeout(600)
@pytest.mark.integration
def test_pack_video_id_records_like_the_official_ones(layouts, tmp_path):
    root, _ = layouts
    pack([str(root / "official" / "train")], tmp_path / "a", num_classes=CLASSES, jobs=1, progress=False)
    out = subprocess.run(
        [
            ZOO,
            "data",
            "pack",
            str(root / "video_id" / "train"),
            "-o",
            str(tmp_path / "b"),
            "-j",
            "1",
            "--num-classes",
            str(CLASSES),
            "--id-key",
            "video_id",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for shard in ("train0000", "train0001"):
        for name in ("rgb.u8", "audio.u8", "ids.npy", "labels.npy", "offsets.npy"):
            assert (tmp_path / "a" / shard / name).read_bytes() == (
                tmp_path / "b" / shard / name
            ).read_bytes()
    meta = json.loads((tmp_path / "b" / "train0000" / "meta.json").read_text())
    assert meta["reader_options"] == {"id_key": "video_id"}


def _config(root: Path, kind: str, run_dir: Path, *extra: str):
    from zoo.config import load_config

    overrides = tiny_run_overrides(root / kind, run_dir, "data.num_workers=0", "train.num_gpus=1", *extra)
    return load_config(None, overrides, model="nextvlad")


@pytest.mark.timeout(900)
@pytest.mark.integration
def test_mediapipe_and_video_id_records_train_and_evaluate(layouts, tmp_path, paddle):
    from zoo.engine.train.trainer import Trainer

    root, _ = layouts
    histories = {}
    for kind, extra in (
        ("official", ()),
        ("mediapipe", ("data.layout=mediapipe",)),
        ("video_id", ("data.id_key=video_id",)),
    ):
        run = tmp_path / kind
        result = Trainer(_config(root, kind, run, *extra), progress=False).fit()
        assert result.steps == 16
        rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        assert all(0.0 <= r["valid_gap"] <= 1.0 and np.isfinite(r["train_loss"]) for r in rows)
        histories[kind] = rows
    # video_id records are the official values under another key: the very same training
    assert histories["video_id"] == histories["official"] or all(
        a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        for a, b in zip(histories["video_id"], histories["official"])
    )
    # zoo eval with the saved config reads the MediaPipe test split with the layout it was trained with
    out = subprocess.run(
        [ZOO, "eval", "--weights", str(tmp_path / "mediapipe"), "--output", str(tmp_path / "eval")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert results["metrics"]["num_videos"] == 24 and 0.0 <= results["metrics"]["gap"] <= 1.0


@pytest.mark.integration
def test_packed_float_records_train(layouts, tmp_path, paddle):
    from zoo.engine.train.trainer import Trainer

    root, _ = layouts
    for split in ("train", "validate"):
        pack([str(root / "mediapipe" / split)], tmp_path / split, num_classes=CLASSES, jobs=1, progress=False)
    cfg = _config(
        root,
        "mediapipe",
        tmp_path / "run",
        f"data.train={json.dumps(str(tmp_path / 'train'))}",
        f"data.valid={json.dumps(str(tmp_path / 'validate'))}",
        "train.epoch=1",
    )
    result = Trainer(cfg, progress=False).fit()
    assert result.steps == 8
