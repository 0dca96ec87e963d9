"""Stand-ins for the extraction's inputs (no test here): videos written with PyAV, a small TensorFlow graph
with the real tensor names of Google's Inception graph, PCA files with the real shapes, and a VGGish
checkpoint with the real variable names and shapes. The real model files cannot be downloaded here."""

from __future__ import annotations

import io
import tarfile
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(
    path: Path,
    *,
    seconds: float = 3.0,
    fps: float = 25,
    size: tuple[int, int] = (64, 48),
    audio: bool = False,
    codec: str = "mpeg4",
    tone_hz: float = 440.0,
) -> Path:
    """A video whose frames all differ (a moving colour pattern), optionally with a tone."""
    import av

    width, height = size
    frames = int(round(seconds * fps))
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        astream = None
        if audio:
            astream = out.add_stream("aac", rate=44100)
            astream.layout = "stereo"
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(frames):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (xx * 4 + i * 7) % 256
            img[..., 1] = (yy * 5 + i * 3) % 256
            img[..., 2] = ((xx + yy) * 2 + i * 11) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            rate, chunk = 44100, 1024
            total = int(seconds * rate)
            t = np.arange(total) / rate
            wave = (0.4 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            for start in range(0, total, chunk):
                part = wave[start : start + chunk]
                samples = np.stack([part, part])  # planar stereo
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                frame.sample_rate = rate
                frame.pts = start
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return path


def google_preprocessing():
    """In the default TensorFlow graph, the front of Google's Inception graph: ``DecodeJpeg:0`` (uint8
    [H, W, 3]) cast, given a batch axis, resized to 299x299 (bilinear) and normalized to ``Mul:0`` =
    (x - 128) / 128, with the real graph's node names; returns ``Mul:0``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    image = v1.placeholder(tf.uint8, [None, None, 3], name="DecodeJpeg")
    x = tf.expand_dims(tf.cast(image, tf.float32, name="Cast"), 0, name="ExpandDims")
    x = v1.image.resize_bilinear(x, [299, 299], name="ResizeBilinear")
    return tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1.0 / 128.0, name="Mul")


def inception_standin(seed: int = 0, channels: int = 32, batch_free: bool = True) -> bytes:
    """A frozen GraphDef from ``DecodeJpeg:0`` (uint8 [H, W, 3]) to ``pool_3/_reshape:0`` ([1, 2048]) through
    the real graph's preprocessing (cast, resize to 299x299 bilinear, (x - 128) / 128) and a small network
    ending as Google's does: an average pool ``pool_3`` ([1, 1, 1, 2048]) then the reshape to [1, 2048], so
    the network from ``Mul:0`` to ``pool_3:0`` takes batches. ``batch_free=False``: ``pool_3`` is a reshape
    to [1, 1, 1, 2048] instead, a graph that cannot take batches."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = google_preprocessing()  # DecodeJpeg:0 ... Mul:0
        w1 = rng.normal(0, 0.2, (8, 8, 3, channels)).astype(np.float32)
        x = tf.nn.relu(tf.nn.conv2d(x, w1, strides=8, padding="VALID"))
        w2 = rng.normal(0, 0.3, (3, 3, channels, 64)).astype(np.float32)
        x = tf.nn.relu(tf.nn.conv2d(x, w2, strides=2, padding="SAME"))
        if batch_free:  # [1, 19, 19, 64] -> 1x1 convolution to 2048 channels -> average pool
            w3 = rng.normal(0, 1.0, (1, 1, 64, 2048)).astype(np.float32)
            x = tf.nn.relu(tf.nn.conv2d(x, w3, strides=1, padding="VALID"))
            pool = tf.nn.avg_pool2d(x, 19, 1, "VALID", name="pool_3")
        else:
            x = tf.reduce_mean(x, axis=[1, 2])
            w3 = rng.normal(0, 1.0, (64, 2048)).astype(np.float32)
            x = tf.nn.relu(tf.matmul(x, w3))
            pool = tf.reshape(x, [1, 1, 1, 2048], name="pool_3")
        tf.reshape(pool, [1, 2048], name="pool_3/_reshape")
    return graph.as_graph_def().SerializeToString()


def pca_arrays(eigenvals: np.ndarray | None = None, seed: int = 1) -> dict[str, np.ndarray]:
    """``mean.npy`` [2048, 1], ``eigenvecs.npy`` [2048, 2048] (random orthonormal rows), ``eigenvals.npy``."""
    rng = np.random.default_rng(seed)
    q = random_orthonormal(rng, 2048)
    if eigenvals is None:
        eigenvals = np.geomspace(14.7, 0.0015, 2048)
    return {
        "mean.npy": rng.uniform(0.5, 1.5, (2048, 1)).astype(np.float32),
        "eigenvecs.npy": q.astype(np.float32),
        "eigenvals.npy": np.asarray(eigenvals, np.float32).reshape(-1, 1),
    }


def random_orthonormal(rng: np.random.Generator, n: int, block: int = 64) -> np.ndarray:
    """A random orthonormal ``[n, n]``: random orthonormal blocks on the diagonal, rows and columns shuffled
    (a full QR of 2048x2048 takes minutes on a loaded 2-core machine)."""
    q = np.zeros((n, n))
    for start in range(0, n, block):
        size = min(block, n - start)
        q[start : start + size, start : start + size] = np.linalg.qr(rng.normal(size=(size, size)))[0]
    return q[rng.permutation(n)][:, rng.permutation(n)]


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def model_dir(root: Path, *, archives: bool, eigenvals: np.ndarray | None = None) -> Path:
    """Google's files for the stand-ins: the two .tgz archives, or their extracted contents."""
    root.mkdir(parents=True, exist_ok=True)
    graph = inception_standin()
    arrays = {name: npy_bytes(a) for name, a in pca_arrays(eigenvals).items()}
    if archives:
        write_tgz(root / "inception-2015-12-05.tgz", {"classify_image_graph_def.pb": graph})
        write_tgz(root / "yt8m_pca.tgz", arrays)
    else:
        (root / "classify_image_graph_def.pb").write_bytes(graph)
        for name, data in arrays.items():
            (root / name).write_bytes(data)
    return root


def matrix_data(matrix: np.ndarray, *, row_major: bool = False) -> bytes:
    """MediaPipe's MatrixData proto (rows 1, cols 2, packed floats 3, layout 4)."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    rows, cols = matrix.shape
    flat = np.asarray(matrix if row_major else matrix.T, dtype="<f4").tobytes()
    data = b"\x08" + varint(rows) + b"\x10" + varint(cols) + b"\x1a" + varint(len(flat)) + flat
    if row_major:
        data += b"\x20\x01"
    return data


def vggish_checkpoint(prefix: Path, seed: int = 2) -> Path:
    """A checkpoint with VGGish's variable names and shapes (random weights, scaled to keep activations sane)."""
    import tensorflow as tf
    from zoo_yt8m_extract.networks import VGGISH_VARIABLES

    rng = np.random.default_rng(seed)
    variables = {}
    for name, shape in VGGISH_VARIABLES.items():
        if name.endswith("biases"):
            value = rng.normal(0, 0.01, shape)
        else:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        variables[name] = tf.Variable(value.astype(np.float32), name=name)
    # name-based checkpoint (what tf.train.load_checkpoint reads back by variable name)
    saver = tf.compat.v1.train.Saver(var_list=variables)
    saver.save(None, str(prefix), write_meta_graph=False)
    return prefix


def audio_pca_npz(path: Path, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    q = random_orthonormal(rng, 128)
    np.savez(
        path,
        pca_eigen_vectors=q.astype(np.float32),
        pca_means=rng.normal(0, 0.1, (128, 1)).astype(np.float32),
    )
    return path


def vggish_frozen_graph(checkpoint: Path) -> bytes:
    """MediaPipe's ``vggish_new.pb`` made from a VGGish checkpoint as its ``generate_vggish_frozen_graph.py``
    makes it: ``vggish_slim``'s graph (its op names: ``vggish/conv1/Conv2D``, ``.../BiasAdd``, ``.../Relu``,
    ``vggish/pool1/MaxPool``, ``vggish/Flatten/flatten/Reshape``, ``vggish/fc1/fc1_1/MatMul``, ...), its
    variables restored from the checkpoint, then frozen into constants up to ``vggish/fc2/BiasAdd``."""
    import tensorflow as tf
    from zoo_yt8m_extract.networks import VGGISH_VARIABLES

    v1 = tf.compat.v1
    reader = tf.train.load_checkpoint(str(checkpoint))
    graph = tf.Graph()
    with graph.as_default():
        params = {
            name: v1.get_variable(name, shape, tf.float32, trainable=False)
            for name, shape in VGGISH_VARIABLES.items()
        }
        features = v1.placeholder(tf.float32, [None, 96, 64], name="vggish/input_features")
        net = tf.reshape(features, [-1, 96, 64, 1], name="vggish/Reshape")

        def conv(x, scope):
            x = tf.nn.conv2d(
                x, params[f"vggish/{scope}/weights"], [1, 1, 1, 1], "SAME", name=f"vggish/{scope}/Conv2D"
            )
            x = tf.nn.bias_add(x, params[f"vggish/{scope}/biases"], name=f"vggish/{scope}/BiasAdd")
            return tf.nn.relu(x, name=f"vggish/{scope}/Relu")

        def pool(x, name):
            return tf.nn.max_pool2d(x, 2, 2, "SAME", name=f"vggish/{name}/MaxPool")

        def dense(x, scope):
            x = tf.matmul(x, params[f"vggish/{scope}/weights"], name=f"vggish/{scope}/MatMul")
            return tf.nn.bias_add(x, params[f"vggish/{scope}/biases"], name=f"vggish/{scope}/BiasAdd")

        net = pool(conv(net, "conv1"), "pool1")
        net = pool(conv(net, "conv2"), "pool2")
        net = pool(conv(conv(net, "conv3/conv3_1"), "conv3/conv3_2"), "pool3")
        net = pool(conv(conv(net, "conv4/conv4_1"), "conv4/conv4_2"), "pool4")
        net = tf.reshape(net, [-1, 12288], name="vggish/Flatten/flatten/Reshape")
        net = tf.nn.relu(dense(net, "fc1/fc1_1"), name="vggish/fc1/fc1_1/Relu")
        net = tf.nn.relu(dense(net, "fc1/fc1_2"), name="vggish/fc1/fc1_2/Relu")
        tf.identity(dense(net, "fc2"), name="vggish/embedding")
        with v1.Session(graph=graph) as session:
            for name, variable in params.items():
                variable.load(reader.get_tensor(name), session)
            frozen = v1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), ["vggish/fc2/BiasAdd"]
            )
    return frozen.SerializeToString()


def write_frames(
    path: Path,
    images: list[np.ndarray],
    *,
    stamps_ms: list[int] | None = None,
    fps: float = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int | None = None,
    mirror: bool = False,
    options: dict[str, str] | None = None,
) -> Path:
    """A video of the given RGB images: at ``fps``, or at the timestamps ``stamps_ms`` (a variable frame
    rate: time base 1/1000 s); ``rotation`` writes a display matrix (the container's rotation metadata, the
    angle counter-clockwise, as phones write it) so that players turn the stored frames by that angle (then
    flip them left to right with ``mirror``); ``options``: the encoder's (``{"x264-params": "bframes=3"}``)."""
    import av

    height, width = images[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation, hflip=mirror)
        if stamps_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if stamps_ms is not None:
                frame.pts, frame.time_base = stamps_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_without_frames(path: Path, *, video_stream: bool) -> Path:
    """A file with a silent sound track and no video frame: without a video stream (``video_stream=False``)
    or with one that holds no frame."""
    import av

    with av.open(str(path), "w") as out:
        if video_stream:
            video = out.add_stream("mpeg4", rate=10)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*sound.encode(frame), *sound.encode()]:
            out.mux(packet)
    return path
