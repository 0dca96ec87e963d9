"""zoo extract without TensorFlow: frame selection, quantization, records, model files, inputs, front end.

The networks and the comparison with Google's extractor are in test_extract_tf.py (integration)."""

from __future__ import annotations

import http.server
import json
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from test_extract_support import (  # noqa: E402
    matrix_data,
    npy_bytes,
    pca_arrays,
    write_frames,
    write_tgz,
    write_video,
    write_without_frames,
)
from zoo_yt8m_extract import audio, records  # noqa: E402
from zoo_yt8m_extract.extract import Features, ShardedOutput  # noqa: E402
from zoo_yt8m_extract.frames import VideoError, decode_audio, decode_frames, select_positions  # noqa: E402
from zoo_yt8m_extract.models import ModelFiles, parse_matrix_data, read_member  # noqa: E402
from zoo_yt8m_extract.pca import quantize, whitening_pca  # noqa: E402
from zoo_yt8m_extract.sources import Video, expand  # noqa: E402

import zoo  # noqa: E402
from zoo.contracts import DatasetSpec  # noqa: E402
from zoo.errors import DataError, UsageError  # noqa: E402

SPEC = DatasetSpec(num_classes=3862, features={"rgb": 1024, "audio": 128}, max_frames=300)


def google_frame_iterator(
    stamps_ms: list[float], every_ms: float = 1000.0, max_frames: int = 300
) -> list[int]:
    """Google's loop over an OpenCV capture, with the capture played by a list of frame timestamps:
    ``get(POS_MSEC)`` is the timestamp of the last frame read (0 before the first)."""
    pos, read = 0.0, 0

    def grab():
        nonlocal pos, read
        if read == len(stamps_ms):
            return False
        pos = stamps_ms[read]
        read += 1
        return True

    out, last = [], -99999
    while len(out) < max_frames:
        while pos < every_ms + last:
            if not grab():
                return out
        last = pos
        if not grab():
            break
        out.append(read - 1)
    return out


@pytest.mark.parametrize("fps", [1, 7.5, 10, 24, 25, 29.97, 30, 60])
def test_frame_selection_is_googles_loop(fps):
    stamps = [i * 1000.0 / fps for i in range(int(fps * 20))]
    assert list(select_positions(iter(stamps), 1000.0, 300)) == google_frame_iterator(stamps)
    assert list(select_positions(iter(stamps), 1000.0, 3)) == google_frame_iterator(stamps, max_frames=3)


def test_frame_selection_variable_frame_rate():
    rng = np.random.default_rng(0)
    stamps = np.cumsum(rng.uniform(5, 400, 200)).tolist()
    assert list(select_positions(iter(stamps), 1000.0, 300)) == google_frame_iterator(stamps)
    assert google_frame_iterator([0.0, 40.0, 1000.0, 1040.0, 2100.0]) == [0, 3]
    assert list(select_positions(iter([]), 1000.0, 300)) == []


def test_decoded_frames_follow_the_timestamps(tmp_path):
    path = write_video(tmp_path / "clip 25 fps é.mp4", seconds=3.2, fps=25, size=(48, 32))
    frames = list(decode_frames(path))
    assert [round(t * 1000) for t, _ in frames] == [0, 1040, 2040, 3040]
    assert frames[0][1].shape == (32, 48, 3) and frames[0][1].dtype == np.uint8
    assert len(list(decode_frames(path, max_frames=2))) == 2
    assert [round(t * 1000) for t, _ in decode_frames(path, every_ms=500)][:3] == [0, 560, 1080]


def test_bad_videos_are_named(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(VideoError, match="garbage.mp4: cannot be read as a video"):
        list(decode_frames(garbage))
    good = write_video(tmp_path / "good.mp4", seconds=2, fps=10)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoError, match="truncated.mp4"):
        list(decode_frames(truncated))
    with pytest.raises(VideoError, match="above the limit of 100 pixels"):
        list(decode_frames(good, max_pixels=100))
    assert decode_audio(good, 2) is None


def test_audio_decoding_and_the_front_end_on_a_tone(tmp_path):
    path = write_video(tmp_path / "tone.mkv", seconds=2.5, fps=10, audio=True, tone_hz=1000.0)
    samples = decode_audio(path, 10)
    assert samples.dtype == np.float32 and abs(len(samples) - 2.5 * 16000) < 2048
    examples = audio.examples_per_second(samples, 3)
    assert examples.shape == (3, 96, 64)
    # the band holding 1 kHz is the loudest of the example; the padding after the end is the log of silence
    centers = audio.np.linspace(audio.hertz_to_mel(125.0), audio.hertz_to_mel(7500.0), 66)[1:-1]
    band = int(np.argmin(np.abs(centers - audio.hertz_to_mel(1000.0))))
    assert abs(int(np.argmax(examples[0].mean(axis=0))) - band) <= 1
    assert np.allclose(examples[2, -1], np.log(0.01))
    mel = audio.mel_matrix(257)
    assert mel.shape == (257, 64) and not mel[0].any()


def test_quantize_is_googles():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1.5, 5000), [-3, -2, 2, 3, 0.0]]).astype(np.float32)
    x = np.concatenate([x, (np.arange(256, dtype=np.float32) + 0.5) * np.float32(4 / 255) - 2])  # halves
    clipped = np.clip(x, -2.0, 2.0)
    google = bytes(int(round(f)) for f in (clipped - -2.0) * (255.0 / 4.0))
    assert quantize(x).tobytes() == google


def test_records_read_back_with_the_zoo_reader(tmp_path):
    rng = np.random.default_rng(1)
    feats = Features(
        rng.normal(0, 1, (5, 1024)).astype(np.float32),
        np.zeros((5, 128), np.float32),
        4.0,
        audio_present=False,
    )
    video = Video(tmp_path / "v.mp4", "vidéo 1.mp4", [3, 17])
    out = tmp_path / "one.tfrecord"
    writer = ShardedOutput(out, 100)
    writer.write(feats.record(video, "frame"), {"key": video.key})
    writer.close()
    [item] = list(zoo.build_reader("yt8m-frame", paths=[str(out)], spec=SPEC))
    assert item["id"] == "vidéo 1.mp4" and list(item["labels"]) == [3, 17] and item["num_frames"] == 5
    dequantized = quantize(feats.rgb).astype(np.float32) * (4 / 255) + (4 / 512 - 2)
    assert np.allclose(item["rgb"], dequantized, atol=1e-5)
    assert np.allclose(item["audio"], 0 * (4 / 255) + (4 / 512 - 2), atol=1e-5)  # 128 zero bytes, as Google's
    video_level = tmp_path / "video.tfrecord"
    (w := ShardedOutput(video_level, 100)).write(feats.record(video, "video"), {})
    w.close()
    [item] = list(zoo.build_reader("yt8m-video", paths=[str(video_level)], spec=SPEC))
    assert np.allclose(item["mean_rgb"], feats.rgb.mean(axis=0), atol=1e-6) and not item["mean_audio"].any()


def test_sharded_output_resumes(tmp_path):
    out = ShardedOutput(tmp_path, 2)
    for i in range(5):
        out.write(records.example(f"v{i}".encode(), [], {}), {"key": f"k{i}"})
    out.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"part-0000{i}.{ext}" for i in range(3) for ext in ("json", "tfrecord")]
    # killed between a shard and its sidecar, and in the middle of a shard
    (tmp_path / "part-00002.json").unlink()
    (tmp_path / ".part-00003.tfrecord.x1.partial").write_bytes(b"half")
    again = ShardedOutput(tmp_path, 2)
    assert again.finished() == {"k0", "k1", "k2", "k3"}
    assert not (tmp_path / "part-00002.tfrecord").exists()
    assert not list(tmp_path.glob("*.partial"))
    again.write(records.example(b"v4", [], {}), {"key": "k4"})
    again.close(ok=False)  # an interrupted run leaves no shard behind
    assert sorted(p.name for p in tmp_path.glob("*.tfrecord")) == [
        "part-00000.tfrecord",
        "part-00001.tfrecord",
    ]


def test_inputs_folders_globs_and_googles_csv(tmp_path):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    for name in ("b c.mp4", "sub/ä.webm", "notes.txt"):
        (folder / name).write_bytes(b"x")
    found = expand([str(folder)])
    assert [v.id for v in found] == ["b c.mp4", "ä.webm"]
    assert [v.id for v in expand([str(folder / "*.mp4")])] == ["b c.mp4"]
    csv = tmp_path / "videos.csv"
    csv.write_text(
        f"{folder / 'b c.mp4'},3;1\nclips/sub/ä.webm,\nclips/b c.mp4,7;x\nclips/b c.mp4,99999\nsub/no.mp4,1\n",
        "utf-8",
    )
    rows = expand([str(csv)], num_classes=3862)
    assert [(v.id, v.labels, v.problem is None) for v in rows[:2]] == [
        ("b c.mp4", [1, 3], True),
        ("ä.webm", [], True),
    ]
    assert "line 3: label 'x' is not an integer" in rows[2].problem
    assert "line 4: label 99999 is outside 0 .. 3861" in rows[3].problem
    assert rows[4].problem == f"no such file, from the current folder or beside {csv} (line 5)"
    with pytest.raises(UsageError, match="matches no file"):
        expand([str(tmp_path / "*.nothing")])


def test_mediapipe_matrix_files_give_googles_pca():
    arrays = pca_arrays(seed=4)
    google = whitening_pca(arrays["mean.npy"], arrays["eigenvecs.npy"], arrays["eigenvals.npy"], 1024)
    projection = google.matrix / google.scale[:, None]
    for row_major in (False, True):
        parsed = parse_matrix_data(matrix_data(projection, row_major=row_major), "p.pb")
        assert np.array_equal(parsed, projection)
    x = np.random.default_rng(0).uniform(0, 2, (20, 2048)).astype(np.float32)
    from zoo_yt8m_extract.pca import projection_pca

    mediapipe = projection_pca(parse_matrix_data(matrix_data(arrays["mean.npy"]), "m.pb"), projection)
    assert np.abs(quantize(mediapipe.apply(x)).astype(int) - quantize(google.apply(x))).max() <= 1
    with pytest.raises(DataError, match="truncated"):
        parse_matrix_data(matrix_data(projection)[:100], "p.pb")


def test_model_dir_problems_are_named(tmp_path):
    arrays = pca_arrays(seed=5)
    (tmp_path / "mean.npy").write_bytes(npy_bytes(arrays["mean.npy"][:1000]))
    (tmp_path / "eigenvals.npy").write_bytes(npy_bytes(arrays["eigenvals.npy"]))
    (tmp_path / "eigenvecs.npy").write_bytes(npy_bytes(arrays["eigenvecs.npy"]))
    with pytest.raises(DataError, match=r"mean.npy has shape \(1000, 1\), expected \(2048, 1\)"):
        ModelFiles(model_dir=tmp_path).rgb_pca()
    (tmp_path / "mean.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="mean.npy is not a readable .npy"):
        ModelFiles(model_dir=tmp_path).rgb_pca()
    with pytest.raises(DataError, match="no Inception graph"):
        ModelFiles(model_dir=tmp_path).inception_graph()
    archive = write_tgz(tmp_path / "inception-2015-12-05.tgz", {"classify_image_graph_def.pb": b"graph"})
    assert ModelFiles(model_dir=tmp_path).inception_graph() == b"graph"
    archive.write_bytes(archive.read_bytes()[:20])
    with pytest.raises(DataError, match="damaged archive"):
        read_member(archive, "classify_image_graph_def.pb")
    with pytest.raises(DataError, match="SHA-256"):
        ModelFiles(model_dir=tmp_path, sha256={"pca": "0" * 64}).rgb_pca()


@pytest.fixture
def model_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving a folder."""
    root = tmp_path / "served"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_downloads_record_and_check_their_hash(model_server, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    root, url = model_server
    arrays = {name: npy_bytes(a) for name, a in pca_arrays(seed=6).items()}
    write_tgz(root / "yt8m_pca.tgz", arrays)
    files = ModelFiles(urls={"pca": f"{url}/yt8m_pca.tgz"}, quiet=True)
    pca = files.rgb_pca()
    assert pca.matrix.shape == (1024, 2048)
    recorded = json.loads((tmp_path / "cache" / "extract" / "sha256.json").read_text())
    cached = tmp_path / "cache" / "extract" / "yt8m_pca.tgz"
    assert recorded == {"yt8m_pca.tgz": files.used["pca"]["sha256"]}
    ModelFiles(urls={"pca": f"{url}/missing.tgz"}, quiet=True).rgb_pca()  # cached: no second download
    cached.write_bytes(cached.read_bytes() + b"tampered")
    with pytest.raises(DataError, match="differs from the hash recorded at its first download"):
        ModelFiles(urls={"pca": f"{url}/yt8m_pca.tgz"}, quiet=True).rgb_pca()
    cached.unlink()
    with pytest.raises(DataError, match="not the 0000.* given by --model-sha256; the download was deleted"):
        ModelFiles(urls={"pca": f"{url}/yt8m_pca.tgz"}, sha256={"pca": "0" * 64}, quiet=True).rgb_pca()
    assert not cached.exists()
    with pytest.raises(DataError, match="HTTP 404"):
        ModelFiles(urls={"pca": f"{url}/missing.tgz"}, quiet=True).rgb_pca()


def test_downloaded_hashes_are_printed_and_a_given_hash_is_accepted(
    model_server, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    root, url = model_server
    write_tgz(root / "yt8m_pca.tgz", {name: npy_bytes(a) for name, a in pca_arrays(seed=7).items()})
    import hashlib

    digest = hashlib.sha256((root / "yt8m_pca.tgz").read_bytes()).hexdigest()
    cached = tmp_path / "cache" / "extract" / "yt8m_pca.tgz"
    # the hash the user gives, checked at the download: accepted, printed and recorded
    files = ModelFiles(urls={"pca": f"{url}/yt8m_pca.tgz"}, sha256={"pca": digest})
    files.rgb_pca()
    err = capsys.readouterr().err
    assert f"downloading pca from {url}/yt8m_pca.tgz" in err
    assert f"pca: {cached} sha256 {digest} (recorded; checked on every later use)" in err
    assert json.loads((cached.parent / "sha256.json").read_text()) == {"yt8m_pca.tgz": digest}
    # every later use checks it and prints it, against the recorded hash or the one given
    ModelFiles(urls={"pca": f"{url}/gone.tgz"}).rgb_pca()
    assert f"pca: {cached} sha256 {digest} (checked against the hash recorded at its first download)" in (
        capsys.readouterr().err
    )
    ModelFiles(urls={"pca": f"{url}/gone.tgz"}, sha256={"pca": digest}).rgb_pca()
    assert f"sha256 {digest} (checked against --model-sha256)" in capsys.readouterr().err
    with pytest.raises(DataError, match=f"differs from --model-sha256: {'1' * 64}"):
        ModelFiles(urls={"pca": f"{url}/gone.tgz"}, sha256={"pca": "1" * 64}).rgb_pca()
    # files of --model-dir: hashed, printed, and checked against a given hash
    local = tmp_path / "local"
    local.mkdir()
    (local / "yt8m_pca.tgz").write_bytes(cached.read_bytes())
    ModelFiles(model_dir=local, sha256={"pca": digest}).rgb_pca()
    assert f"pca: {local / 'yt8m_pca.tgz'} sha256 {digest} (checked against --model-sha256)" in (
        capsys.readouterr().err
    )


def test_a_damaged_model_archive_fails_the_command_by_name(tmp_path, capsys):
    from zoo.cli import main

    video = write_video(tmp_path / "v.mp4", seconds=1, fps=5)
    models = tmp_path / "models"
    models.mkdir()
    archive = write_tgz(models / "yt8m_pca.tgz", {n: npy_bytes(a) for n, a in pca_arrays(seed=8).items()})
    archive.write_bytes(archive.read_bytes()[:5000])
    command = [
        "extract",
        str(video),
        "--output",
        str(tmp_path / "out"),
        "--model-dir",
        str(models),
        "--quiet",
    ]
    assert main([*command, "--no-audio"]) == 1
    err = capsys.readouterr().err
    assert f"{archive}: damaged archive" in err and "Traceback" not in err
    write_tgz(archive, {"mean.npy": npy_bytes(np.zeros((2048, 1), np.float32))})
    assert main([*command, "--no-audio"]) == 1
    assert f"{archive}: holds no eigenvals.npy; is it the right archive?" in capsys.readouterr().err
    (models / "vggish_pca_params.npz").write_bytes(b"PK\x03\x04 damaged zip")
    with pytest.raises(DataError, match="vggish_pca_params.npz: not VGGish's PCA parameters"):
        ModelFiles(model_dir=models, quiet=True).audio_pca()
    np.savez(
        models / "vggish_pca_params.npz", pca_means=np.zeros((128, 1)), pca_eigen_vectors=np.zeros((64, 128))
    )
    with pytest.raises(DataError, match=r"pca_eigen_vectors has shape \(64, 128\), expected \(128, 128\)"):
        ModelFiles(model_dir=models, quiet=True).audio_pca()
    (models / "vggish_pca_params.npz").unlink()
    (models / "vggish_mean_matrix_data.pb").write_bytes(matrix_data(np.zeros((128, 1), np.float32))[:30])
    (models / "vggish_projection_matrix_data.pb").write_bytes(matrix_data(np.eye(128, dtype=np.float32)))
    with pytest.raises(DataError, match="vggish_mean_matrix_data.pb: truncated MatrixData proto"):
        ModelFiles(model_dir=models, quiet=True).audio_pca()
    with pytest.raises(
        DataError, match="no VGGish model .AudioSet's vggish_model.ckpt or MediaPipe's vggish_new.pb"
    ):
        ModelFiles(model_dir=models, quiet=True).vggish_checkpoint()


VGGISH_ENV = "ZOO_VGGISH_SOURCE"


def _published_mel_features() -> Path | None:
    """VGGish's published ``mel_features.py`` (tensorflow/models ``research/audioset/vggish``): in the folder
    named by ZOO_VGGISH_SOURCE, else the unmodified copy an installed ``torchvggish`` ships (found without
    importing that package, which needs torch). Its code is not part of this project."""
    import os
    from importlib import metadata

    folder = os.environ.get(VGGISH_ENV)
    if folder:
        return Path(folder) / "mel_features.py"
    try:
        located = Path(str(metadata.distribution("torchvggish").locate_file("torchvggish/mel_features.py")))
    except metadata.PackageNotFoundError:
        return None
    return located if located.is_file() else None


def _log_mel_from_the_definitions(samples: np.ndarray) -> np.ndarray:
    """VGGish's log-mel written again from its documented definitions, independently of audio.py: 400-sample
    frames every 160 samples, periodic Hann, |DFT| of 512 points by an explicit complex exponential, HTK mel
    triangles between 125 and 7500 Hz over the DFT bins' frequencies (no weight on the DC bin), log(x + 0.01)."""
    n, hop, size = 400, 160, 512
    count = 1 + (len(samples) - n) // hop
    window = np.array([0.5 - 0.5 * np.cos(2 * np.pi * k / n) for k in range(n)])
    bins = size // 2 + 1
    dft = np.exp(
        -2j * np.pi * np.outer(np.arange(n), np.arange(bins)) / size
    )  # zero padding to 512 drops out
    magnitude = np.stack([np.abs((samples[i * hop : i * hop + n] * window) @ dft) for i in range(count)])

    def mel(hz):
        return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)

    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    freqs = mel(np.arange(bins) * (8000.0 / (bins - 1)))
    weights = np.zeros((bins, 64))
    for band in range(64):
        low, mid, high = edges[band], edges[band + 1], edges[band + 2]
        for k in range(1, bins):
            if low < freqs[k] <= mid:
                weights[k, band] = (freqs[k] - low) / (mid - low)
            elif mid < freqs[k] < high:
                weights[k, band] = (high - freqs[k]) / (high - mid)
    return np.log(magnitude @ weights + 0.01)


def _tone() -> np.ndarray:
    t = np.arange(int(3.3 * 16000)) / 16000
    return 0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)


def test_front_end_equals_its_definitions_written_again():
    tone = _tone()
    ours, again = audio.log_mel(tone), _log_mel_from_the_definitions(tone)
    assert ours.shape == again.shape == (328, 64) and np.allclose(ours, again, atol=1e-9)
    examples = audio.examples_per_second(tone, 3)  # one 0.96 s example starting at each second
    assert np.array_equal(
        examples, np.stack([ours[100 * k : 100 * k + 96] for k in range(3)]).astype(np.float32)
    )


def test_front_end_equals_vggishs_published_definitions():
    """Our log-mel front end against VGGish's published ``mel_features.py`` with ``vggish_params``' settings
    on a generated tone (ZOO_VGGISH_SOURCE names its folder, or torchvggish is installed)."""
    import importlib.util

    published = _published_mel_features()
    if published is None:
        pytest.skip(
            f"VGGish's mel_features.py is not at hand (set {VGGISH_ENV} or pip install --no-deps torchvggish)"
        )
    tone = _tone()
    spec = importlib.util.spec_from_file_location("vggish_mel_features", published)
    mel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mel)
    reference = mel.log_mel_spectrogram(
        tone,
        audio_sample_rate=16000,
        log_offset=0.01,
        window_length_secs=0.025,
        hop_length_secs=0.010,
        num_mel_bins=64,
        lower_edge_hertz=125,
        upper_edge_hertz=7500,
    )
    ours = audio.log_mel(tone)
    assert ours.shape == reference.shape and np.allclose(ours, reference, atol=1e-9)
    examples = audio.examples_per_second(tone, 3)
    assert np.allclose(examples, np.stack([reference[100 * k : 100 * k + 96] for k in range(3)]), atol=1e-5)


def test_timeline_windows():
    from zoo_yt8m_extract.windows import check_window, window_bounds, window_id

    stamps = [0.0, 1.04, 2.04, 3.04, 4.04, 5.04, 6.04]
    windows = window_bounds(stamps, 5.0, check_window(5.0, 4.0))
    assert [(s, e) for s, e, _ in windows] == [(0.0, 5.0), (1.0, 6.0), (2.0, 7.0), (3.0, 7.04)]
    assert windows[0][2] == [0, 1, 2, 3, 4] and windows[-1][2] == [3, 4, 5, 6]
    assert [(s, e) for s, e, _ in window_bounds([0.0, 1.04], 5.0, 1.0)] == [(0.0, 2.04)]
    assert window_id("a b.mp4", 3.0, 7.04) == "a b.mp4#t=3,7.04"
    with pytest.raises(UsageError, match="overlap < window"):
        check_window(5.0, 5.0)


def test_rotation_turns_frames_upright():
    """The display matrix (FFmpeg's, 16.16 fixed point) maps a stored pixel (x, y) to (a x + c y, b x + d y):
    a phone's portrait video recorded sideways has the matrix of -90 degrees (shown turned clockwise)."""
    from zoo_yt8m_extract.frames import _upright

    def matrix(a, b, c, d):
        return np.array([[a, b, 0], [c, d, 0], [0, 0, 1 << 30]], np.int64) * 65536

    image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, axis=2)  # 2 rows, 3 columns
    clockwise = _upright(image, matrix(0, 1, -1, 0))  # -90 degrees
    assert clockwise.shape == (3, 2, 3) and clockwise[0, :, 0].tolist() == [3, 0]  # left column, bottom up
    assert _upright(image, matrix(0, -1, 1, 0))[0, :, 0].tolist() == [2, 5]  # +90: right column on top
    assert _upright(image, matrix(-1, 0, 0, -1))[0, :, 0].tolist() == [5, 4, 3]  # 180
    assert _upright(image, matrix(-1, 0, 0, 1))[0, :, 0].tolist() == [2, 1, 0]  # mirrored, not turned
    assert _upright(image, matrix(0, -1, -1, 0))[:, :, 0].tolist() == [
        [5, 2],
        [4, 1],
        [3, 0],
    ]  # +90, mirrored
    assert _upright(image, None) is image and np.array_equal(_upright(image, matrix(1, 0, 0, 1)), image)


def _opencv_frames(path: Path, auto_rotate: bool) -> list[np.ndarray]:
    """Every frame as Google's extractor reads it (OpenCV, BGR turned to RGB), with OpenCV's automatic
    rotation on (OpenCV 4.5 to 4.10 and 5.x by default) or off (OpenCV 3, which Google's 2017 extractor ran)."""
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1 if auto_rotate else 0)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame[:, :, ::-1])


def _portrait(n: int) -> list[np.ndarray]:
    """Upright frames of a portrait video (40 wide, 64 high) with nothing symmetric about them."""
    yy, xx = np.mgrid[0:64, 0:40]
    frames = []
    for i in range(n):
        image = np.stack([(xx * 6 + i * 9) % 256, (yy * 4) % 256, (xx * yy + i) % 256], axis=-1)
        image[:8, :8] = 255  # a white top-left corner
        frames.append(image.astype(np.uint8))
    return frames


@pytest.mark.parametrize("rotation, mirror", [(90, False), (-90, False), (180, False), (0, True), (90, True)])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_rotation_metadata_turns_frames_upright(tmp_path, rotation, mirror, suffix):
    """A phone stores a portrait video sideways with a display matrix (rotation metadata) that players apply.
    The frames taken are upright, as a player (and YouTube, whose videos the dataset's features come from)
    shows them; Google's 2017 extractor ran OpenCV 3, which ignored the metadata and took the stored frames.
    A matrix may also mirror (turn, then flip left to right): applied too."""
    upright = _portrait(25)
    turns = rotation // 90
    stored = [np.rot90(image[:, ::-1] if mirror else image, -turns) for image in upright]  # what was written
    # lossless RGB frames, so that upright and stored videos hold exactly the same pixels
    lossless = (
        {"codec": "png", "pix_fmt": "rgb24"} if suffix == ".mp4" else {"codec": "ffv1", "pix_fmt": "bgr0"}
    )
    straight = write_frames(tmp_path / f"upright{suffix}", upright, **lossless)
    sideways = write_frames(
        tmp_path / f"phone {rotation}{suffix}", stored, rotation=rotation, mirror=mirror, **lossless
    )
    ours = list(decode_frames(sideways))
    assert [round(t, 1) for t, _ in ours] == [0.0, 1.1, 2.1]
    for (_, mine), (_, plain) in zip(ours, decode_frames(straight)):
        assert mine.shape == (64, 40, 3) and np.array_equal(mine, plain)
    assert np.array_equal(ours[0][1], upright[0]) and ours[0][1][:8, :8].min() == 255
    # OpenCV: without its automatic rotation (Google's 2017 extractor) the stored, sideways frames; with it the
    # same upright frames, except that it reads a mirroring matrix as a rotation only (a mirror alone as 180)
    cv_auto, cv_raw = _opencv_frames(sideways, True), _opencv_frames(sideways, False)
    assert np.array_equal(cv_raw[0], stored[0]) and np.array_equal(cv_raw[11], stored[11])
    if not mirror:
        assert np.array_equal(cv_auto[0], upright[0]) and np.array_equal(cv_auto[11], ours[1][1])
    else:
        assert not np.array_equal(cv_auto[0], upright[0])


@pytest.mark.parametrize("suffix, codec", [(".mkv", "libx264"), (".mp4", "libx264"), (".webm", "libvpx")])
def test_variable_frame_rate_is_followed(tmp_path, suffix, codec):
    """Frames 30 to 400 ms apart: the frames taken follow their own timestamps, as OpenCV's position does."""
    rng = np.random.default_rng(0)
    stamps = [0, *np.cumsum(rng.integers(30, 400, 40)).tolist()]
    images = [np.full((48, 64, 3), i * 6, np.uint8) for i in range(len(stamps))]
    path = write_frames(tmp_path / f"variable rate{suffix}", images, stamps_ms=stamps, codec=codec)
    taken = [round(t * 1000) for t, _ in decode_frames(path)]
    assert taken == [stamps[i] for i in google_frame_iterator(stamps)]
    assert taken[:4] == [0, 1145, 2515, 3720]  # irregular, not every 1000 ms
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    positions = []
    while cap.read()[0]:
        positions.append(round(cap.get(cv2.CAP_PROP_POS_MSEC)))
    assert positions == stamps  # OpenCV's positions: the same timestamps, so the same frames taken


def test_short_empty_and_cut_files_are_named(tmp_path):
    import av

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty.mp4: is empty \(0 bytes\)"):
        list(decode_frames(empty))
    # a video stream without a frame (beside a sound track): nothing to take; the extractor names it
    assert list(decode_frames(write_without_frames(tmp_path / "no frames.mkv", video_stream=True))) == []
    # cut in the middle: a streamable file still decodes its first half, which must not pass for the video
    for suffix, codec in ((".mkv", "mpeg4"), (".webm", "libvpx"), (".mp4", "libx264")):
        good = write_video(tmp_path / f"whole{suffix}", seconds=4, fps=10, codec=codec)
        assert [round(t, 1) for t, _ in decode_frames(good)] == [0.0, 1.1, 2.1, 3.1]
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        reason = "truncated: its frames end at" if suffix != ".mp4" else "cannot be read as a video"
        with pytest.raises(VideoError, match=f"cut{suffix}: {reason}"):
            list(decode_frames(cut))
    # an MP4 whose index comes first (faststart) decodes its first half too
    frames = [np.full((48, 64, 3), i, np.uint8) for i in range(40)]
    with av.open(str(tmp_path / "faststart.mp4"), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    whole = (tmp_path / "faststart.mp4").read_bytes()
    (tmp_path / "faststart cut.mp4").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(VideoError, match=r"faststart cut.mp4: truncated: .* of the 4.0 s it announces"):
        list(decode_frames(tmp_path / "faststart cut.mp4"))
    assert len(list(decode_frames(tmp_path / "faststart.mp4", max_frames=2))) == 2
    # a slide show whose last frame lasts 5 s ends with its last frame's duration: whole, not cut short
    for suffix in (".mkv", ".mp4"):
        with av.open(str(tmp_path / f"slides{suffix}"), "w") as out:
            stream = out.add_stream("mpeg4", rate=1)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
            for i, start in enumerate((0, 1000, 2000)):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * i, np.uint8), format="rgb24")
                frame.pts, frame.time_base, frame.duration = (
                    start,
                    Fraction(1, 1000),
                    5000 if i == 2 else 1000,
                )
                for packet in stream.encode(frame):
                    packet.duration = 5000 if packet.pts == 2000 else packet.duration
                    out.mux(packet)
            for packet in stream.encode():
                packet.duration = 5000 if packet.pts == 2000 else packet.duration
                out.mux(packet)
        with av.open(str(tmp_path / f"slides{suffix}")) as container:
            assert container.duration == 7_000_000  # 2 s + the last frame's 5 s
        assert [t for t, _ in decode_frames(tmp_path / f"slides{suffix}")] == [0.0, 2.0]


def test_usage_errors_exit_2_before_any_model_is_loaded(tmp_path, capsys):
    from zoo.cli import main

    video = write_video(tmp_path / "v.mp4", seconds=1, fps=5)
    base = ["extract", str(video), "--output", str(tmp_path / "out")]
    assert main([*base, "--model-sha256", "pca=xyz"]) == 2
    assert "is not a SHA-256" in capsys.readouterr().err
    assert main([*base, "--model-url", "resnet=http://127.0.0.1/x"]) == 2
    assert "NAME one of inception, pca, vggish, vggish-pca" in capsys.readouterr().err
    assert main([*base, "--model-dir", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert main(["extract", str(video), "--output", str(tmp_path / "notes.txt")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert main(["predict", "--timeline"]) == 2
    assert "give them with --videos" in capsys.readouterr().err
    assert main(["predict", "--videos", str(video), "--filelist", str(tmp_path)]) == 2
    assert "leave out --filelist" in capsys.readouterr().err
