"""Extraction speed (``zoo extract``): decoding alone, the network alone, and the whole extraction, in one run.

    python benchmarks/bench_extract.py [--videos 3] [--seconds 8] [--size 640x360] [--fps 25] [--repeat 2]
                                       [--json out.json] [--small]

The network is an Inception-v3-sized stand-in with the real graph's interface: Keras' InceptionV3
architecture with random weights (``include_top=False, pooling="avg"``: 2048 outputs), frozen into a
GraphDef behind ``DecodeJpeg:0`` (uint8 ``[H, W, 3]``, cast, bilinear resize to 299x299, ``(x - 128) / 128``)
and read at ``pool_3/_reshape:0``, exactly the interface of Google's ``classify_image_graph_def.pb``, which
cannot be downloaded here. ``--small`` uses the tiny stand-in of the tests instead (a quick smoke run).
PCA: random orthonormal with the dataset's shapes. Videos: generated with PyAV (H.264, ``--size``, ``--fps``).

Measured, each the best of ``--repeat`` after a warm-up:

- ``decode``: PyAV decoding and Google's frame choice to RGB arrays, no network (frames/s; video s/s);
- ``network tensorflow``: the graph alone on frames already decoded (frames/s), one frame per run as
  Google's graph takes it;
- ``network onnx``: the same graph converted by tf2onnx and run by ONNX Runtime (``--runtime onnx``),
  after the check that it gives TensorFlow's activations;
- ``extract RUNTIME -j 1`` / ``-j 2``: the whole extraction (decode, network, PCA, quantize, write) with
  one or two videos at once, per runtime;
- ``overlap``: ``extract tensorflow -j 1`` time / (decode time + network time): 1.0 means nothing overlaps, and
  network time / ``extract -j 1`` time near 1.0 means the extraction is bound by the network (decoding and
  writing hidden behind it) -- the goal; ``onnx_over_tensorflow``: the speed-up of the ONNX runtime
  (goal: at least 1.5x);
- peak resident memory after each phase (``ru_maxrss``, MiB).

The machine may be shared: the ratios measured in one run matter, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def keras_inception_graph() -> bytes:
    """Keras' InceptionV3 (random weights) frozen behind Google's graph interface."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    v1 = tf.compat.v1
    model = tf.keras.applications.InceptionV3(
        weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3)
    )

    @tf.function(input_signature=[tf.TensorSpec([1, 299, 299, 3], tf.float32)])
    def network(x):
        return model(x, training=False)

    frozen = convert_variables_to_constants_v2(network.get_concrete_function())
    inner = frozen.graph.as_graph_def()
    input_name = frozen.inputs[0].name
    output_name = frozen.outputs[0].name
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.uint8, [None, None, 3], name="DecodeJpeg")
        x = tf.expand_dims(tf.cast(image, tf.float32, name="Cast"), 0, name="ExpandDims")
        x = v1.image.resize_bilinear(x, [299, 299], name="ResizeBilinear")
        x = tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1.0 / 128.0, name="Mul")
        (out,) = v1.import_graph_def(
            inner, input_map={input_name: x}, return_elements=[output_name], name="v3"
        )
        pool = tf.reshape(out, [1, 1, 1, 2048], name="pool_3")
        tf.reshape(pool, [1, 2048], name="pool_3/_reshape")
    return graph.as_graph_def().SerializeToString()


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="the tests' tiny stand-in network")
    parser.add_argument("--no-onnx", action="store_true", help="TensorFlow only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from test_extract_support import inception_standin, npy_bytes, pca_arrays, write_video
    from zoo_yt8m_extract.extract import Extractor, Options, run
    from zoo_yt8m_extract.frames import decode_frames
    from zoo_yt8m_extract.models import ModelFiles
    from zoo_yt8m_extract.networks import InceptionGraph
    from zoo_yt8m_extract.sources import expand

    width, height = map(int, args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    clips = [
        write_video(
            work / f"v{i}.mp4", seconds=args.seconds, fps=args.fps, size=(width, height), codec="libx264"
        )
        for i in range(args.videos)
    ]
    models = work / "models"
    models.mkdir()
    graph = inception_standin() if args.small else keras_inception_graph()
    (models / "classify_image_graph_def.pb").write_bytes(graph)
    for name, array in pca_arrays().items():
        (models / name).write_bytes(npy_bytes(array))
    memory = {"setup": peak_mib()}

    frames: list[np.ndarray] = []

    def decode() -> None:
        frames.clear()
        for clip in clips:
            frames.extend(image for _, image in decode_frames(clip))

    t_decode = best(decode, args.repeat)
    memory["decode"] = peak_mib()
    n = len(frames)
    video_seconds = args.videos * args.seconds

    results: dict[str, dict[str, float]] = {}
    results["decode"] = {
        "seconds": t_decode,
        "frames_per_second": n / t_decode,
        "video_s_per_s": video_seconds / t_decode,
    }

    tf_graph = InceptionGraph(graph)
    t_net = best(lambda: [tf_graph.features(f) for f in frames], args.repeat)
    memory["network tensorflow"] = peak_mib()
    results["network tensorflow"] = {"seconds": t_net, "frames_per_second": n / t_net}

    runtimes = {"tensorflow": tf_graph}
    if not args.no_onnx:
        from zoo_yt8m_extract.networks import OnnxInception

        onnx = OnnxInception(graph, reference=tf_graph)  # converted, and checked against TensorFlow
        t_onnx = best(lambda: [onnx.features(f) for f in frames], args.repeat)
        memory["network onnx"] = peak_mib()
        results["network onnx"] = {"seconds": t_onnx, "frames_per_second": n / t_onnx}
        runtimes["onnx"] = onnx

    videos = expand([str(c) for c in clips])
    for (runtime, network), jobs in [(r, j) for r in runtimes.items() for j in (1, 2)]:
        options = Options(audio=False, jobs=jobs, runtime=runtime)
        extractor = Extractor(ModelFiles(model_dir=models, quiet=True), options, inception=network)

        def extract(options=options, extractor=extractor, runs=[]) -> None:  # noqa: B006 - counts the runs
            runs.append(1)
            out = work / f"out-{options.runtime}-{options.jobs}-{len(runs)}.tfrecord"
            summary = run(videos, extractor, out, options)
            assert summary.done == len(videos) and summary.frames == n

        t = best(extract, args.repeat)
        name = f"extract {runtime} -j {jobs}"
        memory[name] = peak_mib()
        results[name] = {"seconds": t, "frames_per_second": n / t, "video_s_per_s": video_seconds / t}

    t_j1 = results["extract tensorflow -j 1"]["seconds"]
    report = {
        "frames": n,
        "videos": args.videos,
        "video": f"{width}x{height} {args.fps:g} fps H.264, {args.seconds:g} s",
        "network": "tests' tiny stand-in"
        if args.small
        else "Keras InceptionV3 (random weights), Google's interface",
        "results": results,
        "overlap": {
            "extract_j1_over_decode_plus_network": t_j1 / (t_decode + t_net),
            "network_over_extract_j1": t_net / t_j1,
        },
        "onnx_over_tensorflow": None
        if args.no_onnx
        else {
            "network": t_net / results["network onnx"]["seconds"],
            "extract -j 1": t_j1 / results["extract onnx -j 1"]["seconds"],
        },
        "peak_rss_mib": memory,
    }
    for name, row in results.items():
        extra = f", {row['video_s_per_s']:.2f} video s/s" if "video_s_per_s" in row else ""
        print(f"{name:22s} {row['seconds']:8.2f} s  {row['frames_per_second']:8.2f} frames/s{extra}")
    print(
        f"overlap: extract -j 1 takes {report['overlap']['extract_j1_over_decode_plus_network']:.2f} of decode + "
        f"network; the network alone is {report['overlap']['network_over_extract_j1']:.2f} of it"
    )
    if report["onnx_over_tensorflow"]:
        speedup = report["onnx_over_tensorflow"]
        print(
            f"onnx runtime vs tensorflow: network {speedup['network']:.2f}x, extract -j 1 {speedup['extract -j 1']:.2f}x"
        )
    print("peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
