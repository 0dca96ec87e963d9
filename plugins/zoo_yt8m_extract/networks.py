"""The networks of the extraction, run in TensorFlow's compat.v1 (the ``extract`` extra).

Inception: Google's frozen graph ``classify_image_graph_def.pb``, fed one RGB uint8 frame of any size at
``DecodeJpeg:0`` and read at ``pool_3/_reshape:0`` (the graph resizes to 299x299 and normalizes inside, so it
takes one image per run). For batches, the same GraphDef is imported a second time with its normalized image
``Mul:0`` (``[1, 299, 299, 3]``, the first convolution's input) mapped to a ``[n, 299, 299, 3]`` placeholder and
read at ``pool_3:0`` (``[n, 1, 1, 2048]``, before the fixed ``[1, 2048]`` reshape): each frame is resized and
normalized by the graph's own ops, one at a time, then ``n`` of them go through the network at once. The
batches are used only when, on probe frames, they give bit for bit the one-frame run's activations.
VGGish: AudioSet's architecture built here from the checkpoint's arrays (``vggish/conv1/weights`` ... ``vggish/fc2``),
fed ``[n, 96, 64]`` log-mel examples. A graph is imported only after its ops are checked: file, Python and
other side-effecting ops are refused, so a model file cannot run code or touch files.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from zoo.errors import DataError, UsageError

INPUT = "DecodeJpeg:0"
OUTPUT = "pool_3/_reshape:0"
NORMALIZED = "Mul:0"  # [1, 299, 299, 3]: the resized, normalized image, the first convolution's input
POOLED = "pool_3:0"  # [n, 1, 1, 2048]: the activations before the reshape to [1, 2048]

_REFUSED_OPS = (
    "PyFunc",
    "PyFuncStateless",
    "EagerPyFunc",
    "ReadFile",
    "WriteFile",
    "MatchingFiles",
    "Save",
    "SaveV2",
    "SaveSlices",
    "Restore",
    "RestoreV2",
    "RestoreSlice",
    "MergeV2Checkpoints",
    "ShardedFilename",
    "PrintV2",
    "Print",
    "DebugIdentity",
    "ImmutableConst",
)

# VGGish (tensorflow/models research/audioset/vggish, vggish_slim.py): variables and shapes
VGGISH_VARIABLES: dict[str, tuple[int, ...]] = {
    "vggish/conv1/weights": (3, 3, 1, 64),
    "vggish/conv1/biases": (64,),
    "vggish/conv2/weights": (3, 3, 64, 128),
    "vggish/conv2/biases": (128,),
    "vggish/conv3/conv3_1/weights": (3, 3, 128, 256),
    "vggish/conv3/conv3_1/biases": (256,),
    "vggish/conv3/conv3_2/weights": (3, 3, 256, 256),
    "vggish/conv3/conv3_2/biases": (256,),
    "vggish/conv4/conv4_1/weights": (3, 3, 256, 512),
    "vggish/conv4/conv4_1/biases": (512,),
    "vggish/conv4/conv4_2/weights": (3, 3, 512, 512),
    "vggish/conv4/conv4_2/biases": (512,),
    "vggish/fc1/fc1_1/weights": (12288, 4096),
    "vggish/fc1/fc1_1/biases": (4096,),
    "vggish/fc1/fc1_2/weights": (4096, 4096),
    "vggish/fc1/fc1_2/biases": (4096,),
    "vggish/fc2/weights": (4096, 128),
    "vggish/fc2/biases": (128,),
}


def _tf():
    try:
        import tensorflow as tf
    except ImportError:
        raise UsageError(
            "zoo extract runs Google's networks in TensorFlow: pip install 'yt8m-zoo[extract]'"
        ) from None
    return tf


def _session_config(tf, threads: int):
    return tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=threads, inter_op_parallelism_threads=max(1, threads)
    )


class InceptionGraph:
    """Google's frozen Inception graph in a compat.v1 session; :meth:`features` is thread-safe."""

    def __init__(
        self, graph_bytes: bytes, *, where: str = "the Inception graph", threads: int = 0, batch: int = 8
    ) -> None:
        tf = _tf()
        v1 = tf.compat.v1
        try:
            graph_def = v1.GraphDef.FromString(graph_bytes)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise DataError(f"{where}: not a TensorFlow GraphDef ({exc}); is the archive damaged?") from None
        refused = sorted({node.op for node in graph_def.node if node.op in _REFUSED_OPS})
        if refused:
            raise DataError(
                f"{where}: the graph holds ops that touch files or run code ({', '.join(refused)}); refused"
            )
        names = {node.name for node in graph_def.node}
        for tensor in (INPUT, OUTPUT):
            if tensor.split(":")[0] not in names:
                raise DataError(
                    f"{where}: no tensor {tensor}; this is not Google's classify_image_graph_def.pb"
                )
        self.graph = imported_graph(graph_def, where)
        out = self.graph.get_tensor_by_name(OUTPUT)
        if out.shape.rank is not None and out.shape[-1] is not None and int(out.shape[-1]) != 2048:
            raise DataError(f"{where}: {OUTPUT} has shape {out.shape}, expected [1, 2048]")
        self._batched = self._import_batched(tf, graph_def, batch) if batch > 1 else None
        self.session = v1.Session(graph=self.graph, config=_session_config(tf, threads))
        self.batch = 1
        self.batch_note = "one frame per run (--batch-frames 1)" if batch <= 1 else ""
        if self._batched is not None:
            self.batch_note = self._check_batches(batch)
            self.batch = batch if not self.batch_note else 1
        elif batch > 1:
            self.batch_note = (
                f"one frame per run: the graph has no {NORMALIZED} [1, 299, 299, 3] and {POOLED} "
                "to batch between"
            )

    def _import_batched(self, tf, graph_def, batch: int):
        """The same GraphDef again under ``batched/``, its ``Mul:0`` fed by a placeholder of any batch size."""
        v1 = tf.compat.v1
        try:
            normalized = self.graph.get_tensor_by_name(NORMALIZED)
            self.graph.get_tensor_by_name(POOLED)
        except (KeyError, ValueError):
            return None
        if normalized.shape.as_list() != [1, 299, 299, 3]:
            return None
        with self.graph.as_default():
            images = v1.placeholder(tf.float32, [None, 299, 299, 3], name="batched_images")
            try:
                (pooled,) = v1.import_graph_def(
                    graph_def, input_map={NORMALIZED: images}, return_elements=[POOLED], name="batched"
                )
            except (ValueError, tf.errors.OpError):
                return None
        return images, pooled

    def _check_batches(self, batch: int) -> str:
        """ "" (batches give the one-frame run's activations bit for bit on probe frames) or why not."""
        rng = np.random.default_rng(0)
        probes = [rng.integers(0, 256, (97 + 31 * i, 61 + 53 * i, 3), dtype=np.uint8) for i in range(batch)]
        want = np.stack([self.features(p) for p in probes])
        normalized = [self.normalize(p) for p in probes]
        try:
            whole = self.features_of_normalized(np.concatenate(normalized))
        except DataError as exc:
            return f"one frame per run: batches of the graph fail ({exc})"
        if not np.array_equal(whole, want):
            return (
                "one frame per run: batches of the graph do not give the one-frame activations bit for bit "
                f"(max difference {float(np.abs(whole - want).max()):.3g})"
            )
        return ""

    def features(self, frame: np.ndarray) -> np.ndarray:
        """``pool_3/_reshape:0`` for one RGB uint8 frame ``[H, W, 3]``: float32 ``[2048]``."""
        out = self.session.run(OUTPUT, feed_dict={INPUT: frame})
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        if out.size != 2048:
            raise DataError(f"the Inception graph gave {out.size} values for a frame, expected 2048")
        return out

    def normalize(self, frame: np.ndarray) -> np.ndarray:
        """The graph's own resize and normalization of one frame: ``Mul:0``, float32 ``[1, 299, 299, 3]``."""
        return self.session.run(NORMALIZED, feed_dict={INPUT: frame})

    def features_of_normalized(self, images: np.ndarray) -> np.ndarray:
        """``pool_3:0`` for ``[n, 299, 299, 3]`` normalized images, one run: float32 ``[n, 2048]``."""
        assert self._batched is not None
        holder, pooled = self._batched
        try:
            out = self.session.run(pooled, feed_dict={holder: images})
        except Exception as exc:  # tf.errors.OpError: a graph whose network is not batch-free
            raise DataError(
                f"the Inception graph failed on a batch of {len(images)} ({_first_reason(exc)})"
            ) from None
        out = np.asarray(out, dtype=np.float32).reshape(len(images), -1)
        if out.shape[1] != 2048:
            raise DataError(f"the Inception graph gave {out.shape[1]} values per frame, expected 2048")
        return out

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """What the decoding thread does to a frame before :meth:`run` takes it: nothing. (The graph's own
        normalization runs in :meth:`run`: a session run from the decoding thread would wait for the
        network's ops on the session's one inter-op thread, and hold the decoding back.)"""
        return frame

    def run(self, frames: list[np.ndarray]) -> np.ndarray:
        """``[n, 2048]`` activations of RGB uint8 frames: a full batch in one run of the network, fewer
        frames (a video's last ones) each by the one-frame run, so every run has a shape checked to give the
        one-frame run's activations."""
        if self.batch > 1 and len(frames) == self.batch:
            return self.features_of_normalized(np.concatenate([self.normalize(f) for f in frames]))
        return np.stack([self.features(f) for f in frames])

    def close(self) -> None:
        self.session.close()


def _first_reason(exc: Exception) -> str:
    """The line of a TensorFlow error that says what went wrong (not the node and stack lines around it)."""
    noise = ("[[", "Detected at", "Node:", "Original stack", "Graph execution error", "File ")
    lines = [line.strip() for line in str(exc).splitlines()]
    reasons = [line for line in lines if line and not line.startswith(noise)]
    return reasons[0] if reasons else type(exc).__name__


class OnnxInception:
    """The same graph converted to ONNX (tf2onnx) and run by ONNX Runtime (``--runtime onnx``).

    The conversion is cached by the graph's SHA-256 (``<cache>/extract/onnx``) and checked against the
    TensorFlow run of the graph on probe frames each time it is loaded: a conversion that does not give
    the same activations (within float rounding) is refused, so this runtime never changes the features.
    """

    TOLERANCE = 1e-3  # of the largest activation

    def __init__(
        self, graph_bytes: bytes, *, reference: InceptionGraph, threads: int = 0, where: str = ""
    ) -> None:
        import hashlib

        try:
            import onnxruntime as ort
        except ImportError:
            raise UsageError(
                "--runtime onnx needs ONNX Runtime and tf2onnx: pip install 'yt8m-zoo[extract]'"
            ) from None
        from zoo.paths import cache_dir

        path = cache_dir("extract", "onnx") / f"{hashlib.sha256(graph_bytes).hexdigest()}.onnx"
        self.conversion: dict | None = None  # seconds and peak memory of the conversion, when done here
        if not path.exists():
            self.conversion = _convert(graph_bytes, path, where or "the Inception graph")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # idle workers sleep instead of spinning: they would take the CPU from the decoding threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own error types
            raise DataError(
                f"{path}: ONNX Runtime cannot load the converted graph ({exc}); delete it"
            ) from None
        self.input = self.session.get_inputs()[0].name
        self.batch = 1
        self.batch_note = "one frame per run (the converted graph takes one image, as Google's)"
        rng = np.random.default_rng(0)
        for shape in ((299, 299, 3), (360, 640, 3), (97, 61, 3)):
            probe = rng.integers(0, 256, shape, dtype=np.uint8)
            want, got = reference.features(probe), self.features(probe)
            if np.abs(want - got).max() > self.TOLERANCE * max(1.0, float(np.abs(want).max())):
                raise DataError(
                    f"{where or 'the Inception graph'}: its ONNX conversion gives other activations than "
                    f"TensorFlow (max difference {np.abs(want - got).max():.3g}); use --runtime tensorflow"
                )

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        return frame

    def run(self, prepared: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.features(f) for f in prepared])

    def features(self, frame: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input: frame})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def _convert(graph_bytes: bytes, path, where: str) -> dict:
    """tf2onnx's conversion of the graph into ``path``, in a child process (``onnx_conversion``: why)."""
    import tempfile
    from pathlib import Path

    from zoo_yt8m_extract import onnx_conversion

    try:
        import tf2onnx  # noqa: F401 - only to name the missing extra here rather than in the child
    except ImportError:
        raise UsageError("--runtime onnx needs tf2onnx: pip install 'yt8m-zoo[extract]'") from None
    with tempfile.TemporaryDirectory(prefix="zoo-onnx-") as tmp:
        graph = Path(tmp) / "classify_image_graph_def.pb"
        graph.write_bytes(graph_bytes)
        return onnx_conversion.convert(graph, Path(path), where)


def read_vggish_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """VGGish's variables from a checkpoint (V1 single file or V2 prefix), shapes checked."""
    tf = _tf()
    try:
        reader = tf.train.load_checkpoint(os.fspath(path))
        shapes = reader.get_variable_to_shape_map()
    except Exception as exc:  # tf.errors.* and the like: a damaged or foreign file
        raise DataError(f"{path}: not a readable TensorFlow checkpoint ({exc}); download it again") from None
    weights = {}
    for name, shape in VGGISH_VARIABLES.items():
        if name not in shapes:
            raise DataError(f"{path}: no variable {name}; this is not AudioSet's vggish_model.ckpt")
        if tuple(shapes[name]) != shape:
            raise DataError(f"{path}: {name} has shape {tuple(shapes[name])}, expected {shape}")
        weights[name] = np.asarray(reader.get_tensor(name), dtype=np.float32)
    return weights


class VGGish:
    """VGGish (``vggish_slim.define_vggish_slim``): 3x3 convolutions with ReLU, 2x2 max pools (SAME), two
    ReLU fully connected layers of 4096 and the 128-d embedding layer without activation."""

    def __init__(self, weights: dict[str, np.ndarray], *, threads: int = 0) -> None:
        tf = _tf()
        v1 = tf.compat.v1
        self.graph = tf.Graph()
        feeds = {}
        with self.graph.as_default():
            # the weights enter as variables fed once (not as constants: 290 MB inside a GraphDef is slow)
            params = {}
            for name, array in weights.items():
                holder = v1.placeholder(tf.float32, array.shape)
                params[name] = v1.Variable(holder, trainable=False, name=name)
                feeds[holder] = array
            self.input = v1.placeholder(tf.float32, [None, 96, 64], name="vggish/input_features")
            net = tf.reshape(self.input, [-1, 96, 64, 1])

            def conv(x, scope):
                x = tf.nn.conv2d(x, params[f"vggish/{scope}/weights"], strides=1, padding="SAME")
                return tf.nn.relu(x + params[f"vggish/{scope}/biases"])

            def pool(x):
                return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")

            net = pool(conv(net, "conv1"))
            net = pool(conv(net, "conv2"))
            net = pool(conv(conv(net, "conv3/conv3_1"), "conv3/conv3_2"))
            net = pool(conv(conv(net, "conv4/conv4_1"), "conv4/conv4_2"))
            net = tf.reshape(net, [-1, 12288])
            for scope in ("fc1/fc1_1", "fc1/fc1_2"):
                net = tf.nn.relu(
                    tf.matmul(net, params[f"vggish/{scope}/weights"]) + params[f"vggish/{scope}/biases"]
                )
            self.output = tf.matmul(net, params["vggish/fc2/weights"]) + params["vggish/fc2/biases"]
            init = v1.variables_initializer(list(params.values()))
        self.session = v1.Session(graph=self.graph, config=_session_config(tf, threads))
        self.session.run(init, feed_dict=feeds)

    def embeddings(self, examples: np.ndarray) -> np.ndarray:
        """float32 ``[n, 128]`` for log-mel examples ``[n, 96, 64]``."""
        if len(examples) == 0:
            return np.zeros((0, 128), np.float32)
        return np.asarray(self.session.run(self.output, {self.input: examples}), dtype=np.float32)

    def close(self) -> None:
        self.session.close()


# MediaPipe's frozen VGGish (its youtube8m feature_extraction graph: tag INPUT -> VGGISH)
VGGISH_INPUT = "vggish/input_features:0"
VGGISH_OUTPUT = "vggish/fc2/BiasAdd:0"
_VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "Assign")


def imported_graph(graph_def: Any, where: str) -> Any:
    """A TensorFlow graph holding ``graph_def`` (names as they are), or a DataError naming ``where``."""
    tf = _tf()
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as exc:
            raise DataError(f"{where}: cannot be imported ({exc})") from None
    return graph


def checked_graph_def(graph_bytes: bytes, where: str, tensors: tuple[str, ...], what: str):
    """A GraphDef parsed from ``graph_bytes`` after its checks: no file, Python or side-effecting op, no
    variable (a frozen graph holds its weights as constants), and the named tensors' nodes present."""
    tf = _tf()
    try:
        graph_def = tf.compat.v1.GraphDef.FromString(graph_bytes)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise DataError(f"{where}: not a TensorFlow GraphDef ({exc}); is the file damaged?") from None
    ops = {node.op for node in graph_def.node}
    refused = sorted(ops.intersection(_REFUSED_OPS))
    if refused:
        raise DataError(
            f"{where}: the graph holds ops that touch files or run code ({', '.join(refused)}); refused"
        )
    variables = sorted(ops.intersection(_VARIABLE_OPS))
    if variables:
        raise DataError(f"{where}: not a frozen graph (it holds {', '.join(variables)}); expected {what}")
    names = {node.name for node in graph_def.node}
    for tensor in tensors:
        if tensor.split(":")[0] not in names:
            raise DataError(f"{where}: no tensor {tensor}; this is not {what}")
    return graph_def


class VGGishGraph:
    """MediaPipe's frozen VGGish graph (``vggish_new.pb``: ``vggish_slim`` frozen with AudioSet's checkpoint),
    fed ``[n, 96, 64]`` log-mel examples at ``vggish/input_features:0``, read at ``vggish/fc2/BiasAdd:0``
    (the embedding before any activation, as MediaPipe reads it)."""

    def __init__(self, graph_bytes: bytes, *, where: str = "vggish_new.pb", threads: int = 0) -> None:
        tf = _tf()
        v1 = tf.compat.v1
        what = "MediaPipe's frozen VGGish graph"
        graph_def = checked_graph_def(graph_bytes, where, (VGGISH_INPUT, VGGISH_OUTPUT), what)
        self.graph = imported_graph(graph_def, where)
        self.input = self.graph.get_tensor_by_name(VGGISH_INPUT)
        self.output = self.graph.get_tensor_by_name(VGGISH_OUTPUT)
        for tensor, want in ((self.input, [None, 96, 64]), (self.output, [None, 128])):
            shape = tensor.shape
            if shape.rank is not None and (
                shape.rank != len(want) or any(w and s is not None and s != w for s, w in zip(shape, want))
            ):
                raise DataError(f"{where}: {tensor.name} has shape {shape}, expected {want}; {what}?")
        self.session = v1.Session(graph=self.graph, config=_session_config(tf, threads))

    def embeddings(self, examples: np.ndarray) -> np.ndarray:
        """float32 ``[n, 128]`` for log-mel examples ``[n, 96, 64]``."""
        if len(examples) == 0:
            return np.zeros((0, 128), np.float32)
        out = self.session.run(self.output, {self.input: np.asarray(examples, np.float32)})
        return np.asarray(out, dtype=np.float32).reshape(len(examples), 128)

    def close(self) -> None:
        self.session.close()


def load_vggish(files, *, threads: int = 0) -> VGGish | VGGishGraph:
    """VGGish from the model files: AudioSet's checkpoint, or MediaPipe's frozen graph when ``--model-dir``
    holds that instead (``files``: a :class:`~zoo_yt8m_extract.models.ModelFiles`)."""
    graph = files.vggish_graph()
    if graph is not None:
        return VGGishGraph(graph, where=files.used["vggish"]["path"], threads=threads)
    return VGGish(read_vggish_checkpoint(files.vggish_checkpoint()), threads=threads)
