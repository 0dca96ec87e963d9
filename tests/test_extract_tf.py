"""zoo extract with its networks in TensorFlow: equal to Google's extractor on stand-in model files, MediaPipe's
PCA files, VGGish, and the command end to end (failures listed, resume, ``zoo data inspect``).

Google's ``feature_extractor/extract_tfrecords_main.py`` is run (under TensorFlow 2's compat.v1) when
``ZOO_GOOGLE_FEATURE_EXTRACTOR`` names a folder holding it and its ``feature_extractor.py`` (a checkout of
google/youtube-8m's ``feature_extractor/``; its code is not part of this project). Without it the same
comparison runs against an independent reimplementation of Google's loop in this file (OpenCV decoding, the
graph in a session, numpy PCA, Python's ``round``).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration
tf = pytest.importorskip("tensorflow")
pytest.importorskip("av")

from test_extract_support import (  # noqa: E402
    audio_pca_npz,
    inception_standin,
    matrix_data,
    model_dir,
    vggish_checkpoint,
    vggish_frozen_graph,
    write_frames,
    write_tgz,
    write_video,
    write_without_frames,
)
from zoo_yt8m_extract.extract import Extractor, Options, run  # noqa: E402
from zoo_yt8m_extract.frames import VideoError  # noqa: E402
from zoo_yt8m_extract.models import ModelFiles  # noqa: E402
from zoo_yt8m_extract.networks import VGGish, read_vggish_checkpoint  # noqa: E402
from zoo_yt8m_extract.sources import expand  # noqa: E402

GOOGLE_ENV = "ZOO_GOOGLE_FEATURE_EXTRACTOR"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, real_eigenvalues):
    root = tmp_path_factory.mktemp("extract")
    # random orthonormal vectors with the real spectrum where ../shared has it, else a spectrum of its shape
    models = model_dir(root / "models", archives=False, eigenvals=real_eigenvalues)
    # Google's extractor also wants the archives beside their contents (it checks for them before extracting)
    write_tgz(models / "inception-2015-12-05.tgz", {"classify_image_graph_def.pb": b""})
    write_tgz(models / "yt8m_pca.tgz", {"mean.npy": b""})
    videos = root / "videos"
    videos.mkdir()
    clips = [
        write_video(videos / "a.mp4", seconds=3.2, fps=25, size=(64, 48)),
        write_video(
            videos / "clip é 30.mp4", seconds=2.5, fps=30, size=(96, 64), codec="libx264", audio=True
        ),
        write_video(videos / "c.webm", seconds=2.0, fps=10, size=(80, 60), codec="libvpx"),
        write_video(videos / "d.mp4", seconds=1.5, fps=29.97, size=(50, 30)),
    ]
    return {"root": root, "models": models, "videos": videos, "clips": clips}


@pytest.fixture(scope="module")
def extractor(workspace):
    return Extractor(ModelFiles(model_dir=workspace["models"], quiet=True), Options(audio=False))


def _parse(*paths: Path) -> list[dict]:
    out = []
    for raw in (r for path in paths for r in tf.compat.v1.io.tf_record_iterator(str(path))):
        ex = tf.train.SequenceExample.FromString(raw)
        ctx = ex.context.feature
        lists = ex.feature_lists.feature_list
        out.append(
            {
                "id": ctx["id"].bytes_list.value[0],
                "labels": list(ctx["labels"].int64_list.value),
                "mean_rgb": np.array(ctx["mean_rgb"].float_list.value, np.float32),
                "rgb": [f.bytes_list.value[0] for f in lists["rgb"].feature],
                "audio": [f.bytes_list.value[0] for f in lists["audio"].feature],
            }
        )
    return out


def _googles_script(folder: Path, csv_path: Path, models: Path, output: Path) -> list[dict]:
    runner = output.parent / "run_google.py"
    runner.write_text(
        "import runpy, sys\n"
        "import tensorflow as tf\n"
        "sys.modules['tensorflow'] = tf.compat.v1  # the script is TensorFlow 1 code\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "script = sys.argv[1] + '/extract_tfrecords_main.py'\n"
        "sys.argv = [script] + sys.argv[2:]\n"
        "runpy.run_path(script, run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, str(runner), str(folder), f"--input_videos_csv={csv_path}"]
        + [f"--output_tfrecords_file={output}", f"--model_dir={models}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Successfully encoded" in result.stdout
    return _parse(output)


def _reimplementation(csv_path: Path, models: Path) -> list[dict]:
    """Google's extract_tfrecords_main + feature_extractor, written again from their definitions."""
    cv2 = pytest.importorskip("cv2")
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.import_graph_def(
            v1.GraphDef.FromString((models / "classify_image_graph_def.pb").read_bytes()), name=""
        )
    session = v1.Session(graph=graph)
    mean = np.load(models / "mean.npy")[:, 0]
    vals = np.load(models / "eigenvals.npy")[:1024, 0]
    vecs = np.load(models / "eigenvecs.npy").T[:, :1024]
    out = []
    for path, labels in csv.reader(open(csv_path)):
        cap = cv2.VideoCapture()
        assert cap.open(path)
        last, rgb, total = -99999, [], None
        while len(rgb) < 300:
            ended = False
            while cap.get(cv2.CAP_PROP_POS_MSEC) < 1000 + last:
                if not cap.read()[0]:
                    ended = True
                    break
            if ended:
                break
            last = cap.get(cv2.CAP_PROP_POS_MSEC)
            ok, frame = cap.read()
            if not ok:
                break
            raw = session.run("pool_3/_reshape:0", {"DecodeJpeg:0": frame[:, :, ::-1]})[0]
            feats = ((raw - mean).reshape(1, 2048) @ vecs).reshape(1024).astype(np.float32)
            feats = (feats / np.sqrt(vals + 1e-4)).astype(np.float32)
            total = feats.copy() if total is None else total + feats
            clipped = np.clip(feats, -2.0, 2.0)
            rgb.append(bytes(int(round(f)) for f in (clipped + 2.0) * (255.0 / 4.0)))
        out.append(
            {
                "id": bytes(map(ord, path)),
                "labels": sorted(map(int, labels.split(";"))),
                "mean_rgb": total / len(rgb),
                "rgb": rgb,
                "audio": [bytes(128)] * len(rgb),
            }
        )
    return out


def test_equal_to_googles_extractor(workspace, extractor, tmp_path):
    pytest.importorskip("cv2")  # Google's extractor decodes with OpenCV
    csv_path = tmp_path / "videos.csv"
    labels = ["3;1", "7", "2;5;11", "0"]
    csv_path.write_text("".join(f"{clip},{lab}\n" for clip, lab in zip(workspace["clips"], labels)), "utf-8")
    ours_path = tmp_path / "ours.tfrecord"
    summary = run(expand([str(csv_path)]), extractor, ours_path, extractor.options)
    assert summary.done == 4 and not summary.failed
    folder = os.environ.get(GOOGLE_ENV)
    if folder:
        google = _googles_script(Path(folder), csv_path, workspace["models"], tmp_path / "google.tfrecord")
    else:
        google = _reimplementation(csv_path, workspace["models"])
    ours = _parse(ours_path)
    assert len(ours) == len(google) == 4
    for mine, theirs, clip in zip(ours, google, workspace["clips"]):
        assert theirs["id"] == bytes(map(ord, str(clip)))  # Google: the path as code points
        assert mine["id"] == clip.name.encode("utf-8")  # here: the file name as UTF-8
        assert mine["labels"] == theirs["labels"]
        assert len(mine["rgb"]) == len(theirs["rgb"]) > 0
        a = np.frombuffer(b"".join(mine["rgb"]), np.uint8).astype(int)
        b = np.frombuffer(b"".join(theirs["rgb"]), np.uint8).astype(int)
        assert np.abs(a - b).max() <= 1, clip
        assert (
            0 < len(set(a.tolist())) and a.std() > 10
        )  # the stand-ins give spread-out codes, not a clipped edge
        assert mine["audio"] == theirs["audio"] == [bytes(128)] * len(mine["rgb"])
        assert np.allclose(mine["mean_rgb"], theirs["mean_rgb"], atol=1e-4)
    assert [len(r["rgb"]) for r in ours] == [4, 3, 2, 2]


def test_mediapipe_pca_files_give_the_same_features(workspace, extractor, tmp_path):
    mp = tmp_path / "mediapipe"
    mp.mkdir()
    (mp / "classify_image_graph_def.pb").write_bytes(inception_standin())
    pca = extractor.rgb_pca
    (mp / "inception3_mean_matrix_data.pb").write_bytes(matrix_data(pca.mean.reshape(-1, 1)))
    (mp / "inception3_projection_matrix_data.pb").write_bytes(matrix_data(pca.matrix / pca.scale[:, None]))
    other = Extractor(
        ModelFiles(model_dir=mp, quiet=True), Options(audio=False), inception=extractor.inception
    )
    [video] = expand([str(workspace["clips"][0])])
    a, b = extractor.features(video), other.features(video)
    from zoo_yt8m_extract.pca import quantize

    diff = np.abs(quantize(a.rgb).astype(int) - quantize(b.rgb))
    assert diff.max() <= 1 and diff.mean() < 0.01


def _np_vggish(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """VGGish forward pass in numpy (an independent check of the TensorFlow graph)."""
    from numpy.lib.stride_tricks import sliding_window_view

    def conv(x, scope):
        n, h, w, c = x.shape
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        windows = sliding_window_view(padded, (3, 3), axis=(1, 2))  # [N, H, W, C, 3, 3]
        columns = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, 9 * c)  # im2col
        kernel = weights[f"vggish/{scope}/weights"].reshape(9 * c, -1)
        out = (columns @ kernel).reshape(n, h, w, -1)
        return np.maximum(out + weights[f"vggish/{scope}/biases"], 0)

    def pool(x):
        n, h, w, c = x.shape
        return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    net = x[..., None].astype(np.float32)
    net = pool(conv(net, "conv1"))
    net = pool(conv(net, "conv2"))
    net = pool(conv(conv(net, "conv3/conv3_1"), "conv3/conv3_2"))
    net = pool(conv(conv(net, "conv4/conv4_1"), "conv4/conv4_2"))
    net = net.reshape(len(x), -1)
    for scope in ("fc1/fc1_1", "fc1/fc1_2"):
        net = np.maximum(net @ weights[f"vggish/{scope}/weights"] + weights[f"vggish/{scope}/biases"], 0)
    return net @ weights["vggish/fc2/weights"] + weights["vggish/fc2/biases"]


@pytest.fixture(scope="module")
def vggish_dir(workspace):
    folder = workspace["root"] / "with_audio"
    folder.mkdir()
    for name in ("classify_image_graph_def.pb", "mean.npy", "eigenvals.npy", "eigenvecs.npy"):
        (folder / name).symlink_to(workspace["models"] / name)
    vggish_checkpoint(folder / "vggish_model.ckpt")
    audio_pca_npz(folder / "vggish_pca_params.npz")
    return folder


def test_vggish_network_and_audio_features(vggish_dir, workspace, extractor):
    weights = read_vggish_checkpoint(vggish_dir / "vggish_model.ckpt")
    net = VGGish(weights)
    examples = np.random.default_rng(0).normal(-2, 2, (2, 96, 64)).astype(np.float32)
    assert np.allclose(net.embeddings(examples), _np_vggish(weights, examples), rtol=1e-3, atol=1e-3)

    files = ModelFiles(model_dir=vggish_dir, quiet=True)
    with_audio = Extractor(files, Options(audio=True), inception=extractor.inception, vggish=net)
    assert files.used["vggish-pca"]["path"].endswith("vggish_pca_params.npz")
    [tone] = expand([str(workspace["clips"][1])])
    feats = with_audio.features(tone)
    assert feats.audio_present and feats.audio.shape == (len(feats.rgb), 128)
    record_audio = np.stack([feats.audio[0]])
    assert np.isfinite(record_audio).all() and record_audio.std() > 0
    [silent] = expand([str(workspace["clips"][0])])
    with pytest.raises(VideoError, match="has no audio track; pass --no-audio"):
        with_audio.features(silent)


def test_mediapipe_audio_files_give_the_same_features(vggish_dir, workspace, extractor, tmp_path):
    """MediaPipe's set (its frozen VGGish graph ``vggish_new.pb`` and ``vggish_{mean,projection}_matrix_data.pb``)
    holding the numbers of AudioSet's set (``vggish_model.ckpt``, ``vggish_pca_params.npz``) gives its features."""
    from zoo_yt8m_extract.networks import VGGishGraph
    from zoo_yt8m_extract.pca import quantize

    mp = tmp_path / "mediapipe"
    mp.mkdir()
    for name in ("classify_image_graph_def.pb", "mean.npy", "eigenvals.npy", "eigenvecs.npy"):
        (mp / name).symlink_to(workspace["models"] / name)
    (mp / "vggish_new.pb").write_bytes(vggish_frozen_graph(vggish_dir / "vggish_model.ckpt"))
    with np.load(vggish_dir / "vggish_pca_params.npz") as npz:
        (mp / "vggish_mean_matrix_data.pb").write_bytes(matrix_data(npz["pca_means"]))
        (mp / "vggish_projection_matrix_data.pb").write_bytes(matrix_data(npz["pca_eigen_vectors"]))
    audioset_files, mediapipe_files = (
        ModelFiles(model_dir=vggish_dir, quiet=True),
        ModelFiles(model_dir=mp, quiet=True),
    )
    audioset = Extractor(audioset_files, Options(audio=True), inception=extractor.inception)
    mediapipe = Extractor(mediapipe_files, Options(audio=True), inception=extractor.inception)
    assert isinstance(mediapipe.vggish, VGGishGraph) and not isinstance(audioset.vggish, VGGishGraph)
    assert mediapipe_files.used["vggish"]["path"].endswith("vggish_new.pb")
    assert mediapipe_files.used["vggish-pca"]["path"].endswith("vggish_projection_matrix_data.pb")
    examples = np.random.default_rng(1).normal(-2, 2, (3, 96, 64)).astype(np.float32)
    a, b = audioset.vggish.embeddings(examples), mediapipe.vggish.embeddings(examples)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-4) and a.std() > 0
    [tone] = expand([str(workspace["clips"][1])])
    ours, theirs = audioset.features(tone), mediapipe.features(tone)
    assert np.array_equal(quantize(ours.rgb), quantize(theirs.rgb))
    diff = np.abs(quantize(ours.audio).astype(int) - quantize(theirs.audio))
    assert diff.max() <= 1 and diff.mean() < 0.01 and quantize(ours.audio).std() > 10


def test_mediapipe_vggish_graph_problems_are_named(vggish_dir, tmp_path):
    from zoo_yt8m_extract.networks import VGGishGraph

    from zoo.errors import DataError

    graph = vggish_frozen_graph(vggish_dir / "vggish_model.ckpt")
    with pytest.raises(DataError, match="vggish_new.pb: not a TensorFlow GraphDef"):
        VGGishGraph(b"\xff\xfe damaged" + graph[:50], where="vggish_new.pb")
    with pytest.raises(
        DataError, match="no tensor vggish/fc2/BiasAdd:0; this is not MediaPipe's frozen VGGish"
    ):
        VGGishGraph(graph.replace(b"vggish/fc2/BiasAdd", b"vggish/fc2/BiasAdX"), where="vggish_new.pb")
    v1 = tf.compat.v1
    evil = tf.Graph()
    with evil.as_default():
        x = v1.placeholder(tf.float32, [None, 96, 64], name="vggish/input_features")
        leak = tf.strings.length(tf.io.read_file("/etc/hostname"))
        w = v1.get_variable("w", [96 * 64, 128])
        out = tf.matmul(tf.reshape(x, [-1, 96 * 64]), w) + tf.cast(leak, tf.float32)
        tf.identity(out, name="vggish/fc2/BiasAdd")
    with pytest.raises(DataError, match=r"ops that touch files or run code \(ReadFile\)"):
        VGGishGraph(evil.as_graph_def().SerializeToString(), where="evil.pb")
    unfrozen = tf.Graph()
    with unfrozen.as_default():
        x = v1.placeholder(tf.float32, [None, 96, 64], name="vggish/input_features")
        w = v1.get_variable("w", [96 * 64, 128])
        tf.identity(tf.matmul(tf.reshape(x, [-1, 96 * 64]), w), name="vggish/fc2/BiasAdd")
    with pytest.raises(DataError, match="not a frozen graph"):
        VGGishGraph(unfrozen.as_graph_def().SerializeToString(), where="vggish_new.pb")
    narrow = tf.Graph()
    with narrow.as_default():
        x = v1.placeholder(tf.float32, [None, 96, 64], name="vggish/input_features")
        w = tf.constant(np.zeros((96 * 64, 64), np.float32))
        tf.identity(tf.matmul(tf.reshape(x, [-1, 96 * 64]), w), name="vggish/fc2/BiasAdd")
    with pytest.raises(
        DataError, match=r"vggish/fc2/BiasAdd:0 has shape \(None, 64\), expected \[None, 128\]"
    ):
        VGGishGraph(narrow.as_graph_def().SerializeToString(), where="vggish_new.pb")
    (tmp_path / "vggish_new.pb").write_bytes(graph)
    (tmp_path / "vggish_mean_matrix_data.pb").write_bytes(matrix_data(np.zeros((128, 1), np.float32)))
    (tmp_path / "vggish_projection_matrix_data.pb").write_bytes(matrix_data(np.zeros((128, 64), np.float32)))
    with pytest.raises(
        DataError, match=r"vggish_projection_matrix_data.pb: the projection has shape \(128, 64\)"
    ):
        ModelFiles(model_dir=tmp_path, quiet=True).audio_pca()
    with pytest.raises(DataError, match="SHA-256"):
        ModelFiles(model_dir=tmp_path, sha256={"vggish": "0" * 64}, quiet=True).vggish_graph()


def test_the_command_lists_failures_and_resumes(workspace, extractor, tmp_path):

    folder = tmp_path / "in"
    folder.mkdir()
    for clip in workspace["clips"][:2]:
        (folder / clip.name).symlink_to(clip)
    (folder / "garbage.mp4").write_bytes(b"not a video at all" * 50)
    write_without_frames(folder / "sound only.mp4", video_stream=False)  # a file without a video stream
    output = tmp_path / "out"
    command = [sys.executable, "-m", "zoo.cli", "extract", str(folder), "--output", str(output)]
    command += [
        "--model-dir",
        str(workspace["models"]),
        "--no-audio",
        "-j",
        "2",
        "--shard-size",
        "1",
        "--quiet",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stderr[-2000:]
    assert "garbage.mp4: cannot be read as a video" in first.stderr
    assert "sound only.mp4: has no video stream" in first.stderr
    assert "2 done, 2 failed" in first.stdout and "128 zero bytes per frame" in first.stdout
    report = json.loads((output / "extract_report.json").read_text())
    assert report["videos_done"] == 2 and report["audio"].startswith("zeros")
    assert len(report["models"]["inception"]["sha256"]) == 64
    assert sorted(p.name for p in output.glob("*.tfrecord")) == ["part-00000.tfrecord", "part-00001.tfrecord"]
    again = run(expand([str(folder)]), extractor, output, Options(audio=False, shard_size=1))  # resumed
    assert (again.done, len(again.failed), again.skipped) == (0, 2, 2)
    inspect = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "data", "inspect", str(output), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    assert '"records": 1' in inspect.stdout.replace(" ", "").replace('"records":1', '"records": 1')


def test_bad_videos_fail_by_name_and_the_others_go_on(workspace, tmp_path):
    """The issue's list of bad input, in one run from Google's CSV: each bad video fails with its file and
    reason, the good ones (non-ASCII names with spaces, a variable frame rate, rotation metadata) are
    extracted, and the exit code is 1 with the list."""

    folder = tmp_path / "in"
    folder.mkdir()
    good = {"a.mp4": workspace["clips"][0], "日本の 動画 é.mp4": workspace["clips"][3]}
    for name, clip in good.items():
        (folder / name).write_bytes(clip.read_bytes())
    portrait = [np.full((64, 40, 3), 40, np.uint8) for _ in range(15)]
    for i, image in enumerate(portrait):
        image[: 8 + i, :8] = 250  # a growing bar at the top left
    lossless = {"codec": "png", "pix_fmt": "rgb24"}
    write_frames(folder / "upright.mp4", portrait, **lossless)
    write_frames(folder / "phone -90.mp4", [np.rot90(i, 1) for i in portrait], rotation=-90, **lossless)
    stamps = [0, 120, 450, 1300, 1350, 2600, 2610, 2700, 4100]
    write_frames(
        folder / "variable rate.mkv",
        [np.full((48, 64, 3), 30 * i, np.uint8) for i in range(9)],
        stamps_ms=stamps,
    )
    (folder / "garbage.mp4").write_bytes(b"not a video at all" * 50)
    (folder / "empty.mp4").write_bytes(b"")
    whole = write_video(tmp_path / "whole.mkv", seconds=4, fps=10)
    (folder / "cut.mkv").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    write_frames(folder / "huge.mp4", [np.zeros((4336, 7696, 3), np.uint8)], codec="mpeg4")
    write_without_frames(folder / "sound only.mp4", video_stream=False)
    write_without_frames(folder / "no frames.mkv", video_stream=True)
    rows = {
        "a.mp4": "3;1",
        "日本の 動画 é.mp4": "7",
        "upright.mp4": "2",
        "phone -90.mp4": "2",
        "variable rate.mkv": "5;11",
        "garbage.mp4": "1",
        "empty.mp4": "1",
        "cut.mkv": "1",
        "huge.mp4": "1",
        "sound only.mp4": "1",
        "no frames.mkv": "1",
        "missing.mp4": "1",
    }
    csv_path = folder / "videos.csv"
    lines = [f"{name},{labels}" for name, labels in rows.items()] + ["a.mp4,4;x", "upright.mp4,3862"]
    csv_path.write_text("\n".join(lines) + "\n", "utf-8")
    output = tmp_path / "out"
    command = [sys.executable, "-m", "zoo.cli", "extract", str(csv_path), "--output", str(output)]
    command += ["--model-dir", str(workspace["models"]), "--no-audio", "--quiet", "-j", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "5 done, 9 failed" in result.stdout
    listed = result.stderr.split("9 video(s) failed:\n", 1)[1]
    expected = {
        "garbage.mp4": "cannot be read as a video",
        "empty.mp4": "is empty (0 bytes)",
        "cut.mkv": "truncated: its frames end at",
        "huge.mp4": "resolution 7696x4336 is above the limit of 33177600 pixels per frame (--max-pixels)",
        "sound only.mp4": "has no video stream",
        "no frames.mkv": "no frame could be decoded (an empty or zero-length video)",
        "missing.mp4": f"no such file, from the current folder or beside {csv_path} (line 12)",
        "a.mp4": f"{csv_path} line 13: label 'x' is not an integer (labels are class indices joined by ';')",
        "upright.mp4": f"{csv_path} line 14: label 3862 is outside 0 .. 3861",
    }
    for name, reason in expected.items():
        where = folder / name if name != "missing.mp4" else Path(name)
        assert f"  {where}: {reason}" in listed, (name, listed)
    report = json.loads((output / "extract_report.json").read_text())
    assert sorted(Path(f["path"]).name for f in report["failed"]) == sorted(expected)
    records = {r["id"].decode("utf-8"): r for r in _parse(*sorted(output.glob("*.tfrecord")))}
    assert sorted(records) == sorted(
        ["a.mp4", "日本の 動画 é.mp4", "upright.mp4", "phone -90.mp4", "variable rate.mkv"]
    )
    assert records["a.mp4"]["labels"] == [1, 3] and records["日本の 動画 é.mp4"]["labels"] == [7]
    assert records["phone -90.mp4"]["rgb"] == records["upright.mp4"]["rgb"]  # turned upright: the same frames
    # frame_iterator on 0, 0.12, 0.45, 1.3, 1.35, 2.6, 2.61, 2.7, 4.1 s takes 0, 1.35 and 2.61 s (the frame after
    # the first one at least 1 s past the last position; nothing follows 4.1 s)
    assert len(records["variable rate.mkv"]["rgb"]) == 3


def test_video_level_mode_and_zoo_data_inspect(workspace, extractor, tmp_path):
    """``--level video``: Examples with the means of the float features that the frame-level records hold;
    ``zoo data inspect`` reads both kinds of extracted records like any others."""
    clips = [str(c) for c in workspace["clips"][:3]]
    frame_level, video_level = tmp_path / "frames", tmp_path / "videos"
    run(expand(clips), extractor, frame_level, Options(audio=False))
    run(expand(clips), extractor, video_level, Options(audio=False, level="video"))
    frames = {r["id"]: r for r in _parse(*frame_level.glob("*.tfrecord"))}
    examples = [
        tf.train.Example.FromString(raw)
        for path in sorted(video_level.glob("*.tfrecord"))
        for raw in tf.compat.v1.io.tf_record_iterator(str(path))
    ]
    assert len(examples) == 3
    for example in examples:
        feature = example.features.feature
        assert sorted(feature) == ["id", "labels", "mean_audio", "mean_rgb"]
        vid = feature["id"].bytes_list.value[0]
        mean_rgb = np.array(feature["mean_rgb"].float_list.value, np.float32)
        assert mean_rgb.shape == (1024,) and np.array_equal(mean_rgb, frames[vid]["mean_rgb"])
        assert list(feature["mean_audio"].float_list.value) == [0.0] * 128
    for folder, reader, frame_counts in (
        (frame_level, "yt8m-frame", [2, 3, 4]),
        (video_level, "yt8m-video", [1, 1, 1]),
    ):
        inspect = subprocess.run(
            [sys.executable, "-m", "zoo.cli", "data", "inspect", str(folder), "--reader", reader, "--json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert inspect.returncode == 0, inspect.stderr[-2000:]
        report = json.loads(inspect.stdout)
        assert (report["records"], report["damaged_records"], report["duplicate_ids"]["count"]) == (3, 0, 0)
        assert report["frames"]["total"] == sum(frame_counts), reader


@pytest.mark.slow
def test_zoo_predict_videos_with_a_tiny_trained_model(workspace, tmp_path):
    """A tiny model trained on the sample data classifies generated videos through `zoo predict --videos`."""
    from data_helpers import tiny_dataset, tiny_run_overrides

    data = tiny_dataset(tmp_path / "data")
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_run_overrides(data, run_dir, "train.epoch=1") if not o.startswith("model.")]
    train = [sys.executable, "-m", "zoo.cli", "train", "mean-pool"] + [
        a for o in overrides for a in ("-o", o)
    ]
    trained = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    vocabulary = tmp_path / "vocabulary.csv"
    vocabulary.write_text(
        "Index,TrainVideoCount,KnowledgeGraphId,Name\n"
        + "".join(f"{i},1,/m/{i},Class {i}\n" for i in range(12))
    )
    output = tmp_path / "predicted"
    command = [
        sys.executable,
        "-m",
        "zoo.cli",
        "predict",
        "--weights",
        str(run_dir),
        "--vocabulary",
        str(vocabulary),
    ]
    # `zoo predict VIDEO` (a video in the place of the model name) and --videos together
    command += [str(workspace["clips"][0]), "--videos", str(workspace["clips"][1]), "--output", str(output)]
    command += ["--timeline"]
    command += ["--window", "2", "--overlap", "1", "--model-dir", str(workspace["models"]), "--no-audio"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(c.name for c in workspace["clips"][:2])
    assert all(r["names"][0] == f"Class {r['classes'][0]}" for r in rows)
    assert f"{rows[0]['id']}: Class {rows[0]['classes'][0]} (" in result.stdout
    assert (output / "predictions.csv").is_file() and (output / "features" / "part-00000.tfrecord").is_file()
    timeline = json.loads((output / "timeline.json").read_text())
    assert (timeline["window_seconds"], timeline["overlap_seconds"]) == (2.0, 1.0)
    first = timeline["videos"][workspace["clips"][0].name]  # 4 frames (0, 1.04, 2.04, 3.04 s)
    assert [(w["start"], w["end"]) for w in first] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 4.04)]
    assert all(len(w["classes"]) == len(w["names"]) == 5 for w in first)


def test_onnx_runtime_gives_the_same_features(workspace, extractor):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from zoo_yt8m_extract.networks import InceptionGraph, OnnxInception
    from zoo_yt8m_extract.pca import quantize

    onnx = Extractor(
        ModelFiles(model_dir=workspace["models"], quiet=True), Options(audio=False, runtime="onnx")
    )
    assert isinstance(onnx.inception, OnnxInception)
    for video in expand([str(c) for c in workspace["clips"]]):
        a, b = extractor.features(video), onnx.features(video)
        diff = np.abs(quantize(a.rgb).astype(int) - quantize(b.rgb))
        assert diff.max() <= 1 and diff.mean() < 0.01
    with pytest.raises(Exception, match="gives other activations than TensorFlow"):
        OnnxInception(inception_standin(seed=0), reference=InceptionGraph(inception_standin(seed=7)))


def test_model_files_of_the_wrong_kind_are_refused(tmp_path):
    from zoo_yt8m_extract.networks import InceptionGraph

    from zoo.errors import DataError

    with pytest.raises(DataError, match="not a TensorFlow GraphDef"):
        InceptionGraph(b"\xff\xfe not a graph", where="classify_image_graph_def.pb")
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.uint8, [None, None, 3], name="DecodeJpeg")
        tf.io.read_file("/etc/passwd", name="steal")
        tf.reshape(
            tf.cast(tf.reduce_mean(tf.cast(image, tf.float32)), tf.float32) * tf.ones([2048]), [1, 2048]
        )
    with pytest.raises(DataError, match=r"ops that touch files or run code \(ReadFile\)"):
        InceptionGraph(graph.as_graph_def().SerializeToString(), where="evil.pb")
    with pytest.raises(DataError, match="no tensor pool_3/_reshape:0"):
        InceptionGraph(inception_standin().replace(b"pool_3/_reshape", b"pool_3/_reshapX"), where="other.pb")
    wrong = {
        "vggish/conv1/weights": tf.Variable(np.zeros((3, 3, 1, 32), np.float32), name="vggish/conv1/weights")
    }
    tf.compat.v1.train.Saver(var_list=wrong).save(
        None, str(tmp_path / "vggish_model.ckpt"), write_meta_graph=False
    )
    with pytest.raises(
        DataError, match=r"vggish/conv1/weights has shape \(3, 3, 1, 32\), expected \(3, 3, 1, 64\)"
    ):
        read_vggish_checkpoint(tmp_path / "vggish_model.ckpt")
    (tmp_path / "broken.ckpt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable TensorFlow checkpoint"):
        read_vggish_checkpoint(tmp_path / "broken.ckpt")
