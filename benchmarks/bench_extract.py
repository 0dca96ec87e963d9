"""Extraction speed (``zoo extract``): decoding alone, the network alone and the whole extraction, in one run.

    python benchmarks/bench_extract.py [--videos 3] [--seconds 16] [--size 640x360] [--fps 25] [--repeat 2]
                                       [--batch 8] [--json out.json] [--small] [--no-onnx]

The network is an Inception-v3-sized stand-in with the real graph's interface: Keras' InceptionV3
architecture with random weights (``include_top=False``: [n, 8, 8, 2048]), frozen into a GraphDef behind
``DecodeJpeg:0`` (uint8 ``[H, W, 3]``, cast, bilinear resize to 299x299, ``(x - 128) / 128`` as ``Mul``) and
ending in the 8x8 average pool ``pool_3`` and the reshape ``pool_3/_reshape:0``, exactly the interface and the
structure of Google's ``classify_image_graph_def.pb``, which cannot be downloaded here. ``--small`` uses the
tiny stand-in of the tests instead (a quick smoke run). PCA: random orthonormal with the dataset's shapes.
Videos: generated with PyAV (H.264, ``--size``, ``--fps``).

Measured, each the best of ``--repeat`` after a warm-up, wall time and the process's CPU time:

- ``decode``: PyAV decoding and Google's frame choice to RGB arrays (what the decoding thread does): the frames
  to take found from the packets first, then only they and the frames other frames refer to decoded;
  ``decode, every frame``: every frame decoded (``skip_untaken=False``, the way before; the reference);
- ``network tensorflow 1/run``: the graph alone on decoded frames, one frame per run as Google's extractor
  runs it; ``network tensorflow B/run``: ``--batch`` frames at a time (each resized and normalized by the
  graph's own ops, then the batched import of the network), as the extraction runs it;
- ``network onnx 1/run``: the same graph converted by tf2onnx (in a child process: its time and peak memory
  are reported) and run by ONNX Runtime (``--runtime onnx``), after the check that it gives TensorFlow's
  activations; ``onnx variants``: ONNX Runtime with the options a user could change (its graph optimization
  level, intra-op threads, spinning workers);
- ``extract RUNTIME -j N``: the whole extraction (decode, network, PCA, quantize, write), one or two videos
  in the network at once, and ``extract tensorflow -j 1, 1/run``: with ``--batch-frames 1`` (the reference:
  the extraction as it was before batches); ``extract tensorflow -j 1, every frame decoded``: with every frame
  decoded (the reference for the decoding's share);
- ``overlap``: ``network_over_extract_j1`` = the network's time alone / the extraction's (1.0: the extraction
  is bound by the network, decoding and writing hidden behind it -- the goal); ``extract_j1_over_sum`` = the
  extraction's time / (decode + network) (1.0: nothing overlaps); ``cpu_bound_over_extract_j1`` = (CPU
  seconds of decode + network) / cores / the extraction's time: near 1.0, the cores are all busy and
  decoding can be hidden only as far as the network leaves a core idle;
- ``onnx_over_tensorflow``: the speed-up of the ONNX runtime (goal: at least 1.5x), per frame and per
  extraction;
- peak resident memory after each phase (``ru_maxrss``, MiB).

The phases are timed in rounds (each phase once per round, ``--repeat`` rounds, the best kept), so that a
load changing during the run weighs on all of them alike.

The machine may be shared: the ratios measured in one run matter, not the absolute numbers; the load average
(``os.getloadavg``) is reported before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def keras_inception_graph() -> bytes:
    """Keras' InceptionV3 (random weights, seeded) frozen behind Google's graph interface and structure: the
    network takes any batch from ``Mul:0`` and ends in an 8x8 average pool ``pool_3`` ([n, 1, 1, 2048]) then
    the reshape to [1, 2048], as in ``classify_image_graph_def.pb``."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from test_extract_support import google_preprocessing

    v1 = tf.compat.v1
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.InceptionV3(
        weights=None, include_top=False, pooling=None, input_shape=(299, 299, 3)
    )

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def network(x):
        return model(x, training=False)

    frozen = convert_variables_to_constants_v2(network.get_concrete_function())
    inner = frozen.graph.as_graph_def()
    input_name = frozen.inputs[0].name
    output_name = frozen.outputs[0].name
    graph = tf.Graph()
    with graph.as_default():
        x = google_preprocessing()  # DecodeJpeg:0 ... Mul:0
        (out,) = v1.import_graph_def(
            inner, input_map={input_name: x}, return_elements=[output_name], name="v3"
        )
        pool = tf.nn.avg_pool2d(out, 8, 1, "VALID", name="pool_3")
        tf.reshape(pool, [1, 2048], name="pool_3/_reshape")
    return graph.as_graph_def().SerializeToString()


def cpu_name() -> str:
    """The CPU's model name and whether it has AVX-512 (the numbers depend on both)."""
    from zoo.engine.bench import cpu_model

    try:
        avx512 = "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        avx512 = False
    return f"{cpu_model()} ({'AVX-512' if avx512 else 'no AVX-512'})"


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


def timed(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and the process CPU time of that run, after a warm-up."""
    fn()
    best_wall, best_cpu = float("inf"), 0.0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best_wall:
            best_wall, best_cpu = wall, cpu
    return best_wall, best_cpu


def onnx_variants(path: Path, frames: list[np.ndarray], repeat: int) -> dict[str, dict[str, float]]:
    """ONNX Runtime with the options a user could change, on the converted graph (frames/s)."""
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel
    variants = {
        "all optimizations, no spinning (zoo's)": (levels.ORT_ENABLE_ALL, 0, "0"),
        "all optimizations, spinning (ORT's default)": (levels.ORT_ENABLE_ALL, 0, "1"),
        "extended optimizations (no NCHWc layout)": (levels.ORT_ENABLE_EXTENDED, 0, "0"),
        "basic optimizations": (levels.ORT_ENABLE_BASIC, 0, "0"),
        "1 intra-op thread": (levels.ORT_ENABLE_ALL, 1, "0"),
    }
    rows = {}
    for name, (level, threads, spinning) in variants.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name_in = session.get_inputs()[0].name
        wall, cpu = timed(lambda s=session, i=name_in: [s.run(None, {i: f}) for f in frames], repeat)
        rows[name] = {"seconds": wall, "cpu_seconds": cpu, "frames_per_second": len(frames) / wall}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=16.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="frames per network run (--batch-frames)")
    parser.add_argument("--small", action="store_true", help="the tests' tiny stand-in network")
    parser.add_argument("--no-onnx", action="store_true", help="TensorFlow only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    os.environ["ZOO_CACHE_DIR"] = str(work / "cache")  # the ONNX conversion is done (and timed) here
    load_before = os.getloadavg()

    from test_extract_support import inception_standin, npy_bytes, pca_arrays, write_video
    from zoo_yt8m_extract import extract as extract_module
    from zoo_yt8m_extract.extract import Extractor, Options, run
    from zoo_yt8m_extract.frames import decode_frames
    from zoo_yt8m_extract.models import ModelFiles
    from zoo_yt8m_extract.networks import InceptionGraph
    from zoo_yt8m_extract.sources import expand

    width, height = map(int, args.size.split("x"))
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
    cores = len(os.sched_getaffinity(0))

    frames: list[np.ndarray] = []

    def decode(skip_untaken: bool = True) -> None:
        frames.clear()
        for clip in clips:
            frames.extend(image for _, image in decode_frames(clip, skip_untaken=skip_untaken))

    results: dict[str, dict[str, float]] = {}
    n = 0
    video_seconds = args.videos * args.seconds

    decode()
    n = len(frames)
    network = InceptionGraph(graph, batch=args.batch)
    if network.batch != args.batch:
        print(f"note: {network.batch_note}", file=sys.stderr)
    one_frame = InceptionGraph(graph, batch=1)
    b = network.batch
    batches = [frames[i : i + b] for i in range(0, n, b)]
    # every phase is timed once per round, the rounds one after the other: a load that changes during the
    # run (a shared machine) weighs on all the phases alike instead of on a few
    phases: dict[str, tuple] = {
        "decode": (decode, True),
        "decode, every frame": (lambda: decode(False), True),
        "network tensorflow 1/run": (lambda: [one_frame.features(f) for f in frames], False),
    }
    if b > 1:  # batches are used only when they give the one-frame run's activations bit for bit
        phases[f"network tensorflow {b}/run"] = (lambda: [network.run(x) for x in batches], False)
    report_extra: dict[str, object] = {}
    # (name, runtime, network, -j, frames per run, decode only the frames taken and their references)
    plans = [
        ("extract tensorflow -j 1", "tensorflow", network, 1, b, True),
        ("extract tensorflow -j 2", "tensorflow", network, 2, b, True),
        ("extract tensorflow -j 1, every frame decoded", "tensorflow", network, 1, b, False),
    ]
    if b > 1:
        plans.append(("extract tensorflow -j 1, 1/run", "tensorflow", one_frame, 1, 1, True))
    if not args.no_onnx:
        from zoo_yt8m_extract.networks import OnnxInception

        onnx = OnnxInception(graph, reference=one_frame)  # converted, and checked against TensorFlow
        report_extra["onnx_conversion"] = onnx.conversion
        memory["onnx conversion (its own process)"] = (onnx.conversion or {}).get("peak_rss_mib", 0.0)
        phases["network onnx 1/run"] = (lambda: [onnx.features(f) for f in frames], False)
        plans += [
            ("extract onnx -j 1", "onnx", onnx, 1, 1, True),
            ("extract onnx -j 2", "onnx", onnx, 2, 1, True),
        ]

    videos = expand([str(c) for c in clips])
    for name, runtime, inception, jobs, per_run, skip_untaken in plans:
        options = Options(audio=False, jobs=jobs, runtime=runtime, batch_frames=per_run)
        extractor = Extractor(ModelFiles(model_dir=models, quiet=True), options, inception=inception)

        def extract(options=options, extractor=extractor, skip=skip_untaken, runs=[]) -> None:  # noqa: B006
            runs.append(1)
            out = work / f"out-{len(runs)}.tfrecord"
            # the reference decodes every frame: the extraction's decoding threads call decode_frames so
            with mock.patch.object(
                extract_module, "decode_frames", partial(decode_frames, skip_untaken=skip)
            ):
                summary = run(videos, extractor, out, options)
            assert summary.done == len(videos) and summary.frames == n

        phases[name] = (extract, True)

    for fn, _ in phases.values():
        fn()  # warm-up
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, (fn, _) in phases.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
            memory[name] = peak_mib()
    for name, (_, video) in phases.items():
        wall, cpu = best[name]
        results[name] = {
            "seconds": wall,
            "cpu_seconds": cpu,
            "frames_per_second": n / wall,
            "cpu_ms_per_frame": 1000 * cpu / n,
        }
        if video:
            results[name]["video_s_per_s"] = video_seconds / wall
    if not args.no_onnx:
        converted = next((work / "cache" / "extract" / "onnx").glob("*.onnx"))
        report_extra["onnx_variants"] = onnx_variants(converted, frames[: min(n, 16)], args.repeat)

    net = results[f"network tensorflow {b}/run"]
    every = results["extract tensorflow -j 1, every frame decoded"]
    j1 = results["extract tensorflow -j 1"]
    side = [results["decode"]]
    cpu_work = sum(r["cpu_seconds"] for r in side) + net["cpu_seconds"]
    report = {
        "frames": n,
        "videos": args.videos,
        "video": f"{width}x{height} {args.fps:g} fps H.264, {args.seconds:g} s",
        "network": "tests' tiny stand-in"
        if args.small
        else "Keras InceptionV3 (random weights), Google's interface and pool_3",
        "frames_per_run": b,
        "cores": cores,
        "cpu": cpu_name(),
        "load_average_before_after": [round(x, 2) for x in load_before + os.getloadavg()],
        "results": results,
        "overlap": {
            "network_over_extract_j1": net["seconds"] / j1["seconds"],
            "extract_j1_over_sum": j1["seconds"] / (sum(r["seconds"] for r in side) + net["seconds"]),
            "cpu_bound_over_extract_j1": cpu_work / cores / j1["seconds"],
        },
        "overlap, every frame decoded": {
            "network_over_extract_j1": net["seconds"] / every["seconds"],
            "extract_j1_over_sum": every["seconds"]
            / (results["decode, every frame"]["seconds"] + net["seconds"]),
        },
        "skipping_over_every_frame": {
            "decode": results["decode, every frame"]["seconds"] / results["decode"]["seconds"],
            "decode, cpu": results["decode, every frame"]["cpu_seconds"] / results["decode"]["cpu_seconds"],
            "extract -j 1": every["seconds"] / j1["seconds"],
            "extract -j 1, cpu": every["cpu_seconds"] / j1["cpu_seconds"],
        },
        "batches_over_one_frame": None
        if b == 1
        else {
            "network": results["network tensorflow 1/run"]["seconds"] / net["seconds"],
            "network, cpu per frame": results["network tensorflow 1/run"]["cpu_seconds"] / net["cpu_seconds"],
            "extract -j 1": results["extract tensorflow -j 1, 1/run"]["seconds"] / j1["seconds"],
        },
        "batches_note": network.batch_note,
        "onnx_over_tensorflow": None
        if args.no_onnx
        else {
            "network, 1/run each": results["network tensorflow 1/run"]["seconds"]
            / results["network onnx 1/run"]["seconds"],
            f"network, onnx 1/run vs tensorflow {b}/run": net["seconds"]
            / results["network onnx 1/run"]["seconds"],
            "extract -j 1": j1["seconds"] / results["extract onnx -j 1"]["seconds"],
        },
        **report_extra,
        "peak_rss_mib": memory,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    for name, r in results.items():
        extra = f", {r['video_s_per_s']:.2f} video s/s" if "video_s_per_s" in r else ""
        print(
            f"{name:46s} {r['seconds']:7.2f} s  {r['frames_per_second']:7.2f} frames/s"
            f"  cpu {r['cpu_seconds'] / r['seconds']:.2f} cores, {r['cpu_ms_per_frame']:.0f} ms/frame{extra}"
        )
    ov = report["overlap"]
    print(
        f"overlap: network alone / extract -j 1 = {ov['network_over_extract_j1']:.2f} (goal >= 0.9); "
        f"extract -j 1 / (decode + network) = {ov['extract_j1_over_sum']:.2f}; "
        f"CPU work / {cores} cores / extract -j 1 = {ov['cpu_bound_over_extract_j1']:.2f}"
    )
    ov = report["overlap, every frame decoded"]
    print(
        f"overlap, every frame decoded: network alone / extract -j 1 = {ov['network_over_extract_j1']:.2f}; "
        f"extract -j 1 / (decode + network) = {ov['extract_j1_over_sum']:.2f}"
    )
    print(
        "decoding only the frames taken and their references vs every frame: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in report["skipping_over_every_frame"].items())
    )
    bo = report["batches_over_one_frame"]
    if bo is None:
        print(f"batches: {network.batch_note}")
    else:
        print(
            f"batches of {b} vs one frame per run: network {bo['network']:.2f}x (CPU per frame "
            f"{bo['network, cpu per frame']:.2f}x), extract -j 1 {bo['extract -j 1']:.2f}x"
        )
    if report["onnx_over_tensorflow"]:
        print(
            "onnx runtime vs tensorflow: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in report["onnx_over_tensorflow"].items())
        )
        print(f"onnx conversion: {report['onnx_conversion']}")
        for name, r in report["onnx_variants"].items():
            print(f"  onnx {name:45s} {r['frames_per_second']:7.2f} frames/s")
    print("peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
    print(f"load average before, after: {report['load_average_before_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
