"""Reader speed: frame-level TFRecords -> padded float batches, ours vs TensorFlow, in one run.

    python benchmarks/bench_readers.py [--workload youtube8m|short|both] [--scale 1.0] [--batch-size 64]
                                       [--repeat 3] [--json out.json] [--no-tf]

Writes frame-level TFRecords shaped like the data (random quantized frames), then times, in this one
process, pipelines that end in the same padded batches (rgb, audio, mask, labels), float32 or uint8:

- ``file read``: the bytes of the files (the floor for reading);
- ``float batch floor``: only writing padded float32 batches from frames already in memory (one cast per
  value, no decoding): the memory-bandwidth floor of any pipeline with this output;
- ``tensorflow``: ``TFRecordDataset`` -> ``parse_single_sequence_example`` -> ``decode_raw`` -> cast ->
  starter-code dequantization -> ``padded_batch``, TF's default threading; ``tensorflow 1 thread`` runs
  the same with a private one-thread pool;
- ``tensorflow uint8``: the same without cast and dequantization (TFRecordDataset + parse + decode_raw +
  padded_batch): the reference for uint8 batches;
- ``yt8m-zoo tfrecord``: ``zoo.data.batches`` over the ``yt8m-frame`` reader on the same files (default
  threads; ``1 thread``: ``threads=0``; ``2 threads``: ``threads=2``, two threads fill each batch);
- ``yt8m-zoo packed``: the same after ``zoo data pack`` (packing time reported separately);
- ``... uint8``: ``batches(quantized=True)``, the batches the engine dequantizes on the device.

Workloads: ``youtube8m`` (120-300 frames per video, like the real data) and ``short`` (10-60 frames, like
the built-in sample data). Each pipeline runs once to warm up (page cache, lazy initialisation), then the
pipelines take turns ``--repeat`` times; the best wall-clock time and the best CPU time (all threads of
the process) count. CPU time is the fairer ratio on a shared machine. Goals (issue 3): tfrecord >= 3x
TensorFlow, packed >= 10x, each against the TensorFlow pipeline with the same output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import zoo  # noqa: F401  (environment before paddle/TF)
from zoo import DatasetSpec

YT8M_FEATURES = {"rgb": 1024, "audio": 128}

FILE_VIDEOS: dict[tuple[str, ...], int] = {}


def make_files(
    root: Path, videos: int, files: int, min_frames: int, max_frames: int, seed: int = 0
) -> list[str]:
    from zoo_yt8m_data.tfrecord import frame
    from zoo_yt8m_data.wire import encode_sequence_example

    rng = np.random.default_rng(seed)
    paths = []
    bounds = np.linspace(0, videos, files + 1).astype(int)
    for f in range(files):
        chunks = []
        for i in range(bounds[f], bounds[f + 1]):
            n = int(rng.integers(min_frames, max_frames + 1))
            labels = np.sort(rng.choice(3862, size=int(rng.integers(1, 6)), replace=False))
            rgb = rng.integers(0, 256, (n, 1024), dtype=np.uint8)
            audio = rng.integers(0, 256, (n, 128), dtype=np.uint8)
            chunks.append(
                frame(
                    encode_sequence_example(
                        {"id": f"v{i:05d}".encode(), "labels": labels}, {"rgb": rgb, "audio": audio}
                    )
                )
            )
        path = root / f"train{f:04d}.tfrecord"
        path.write_bytes(b"".join(chunks))
        paths.append(str(path))
    return paths


def bench_file_read(paths: list[str]) -> int:
    """Read every byte; returns the number of videos (the files were written with that many)."""
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(1 << 22):
                pass
    return FILE_VIDEOS[tuple(paths)]


def bench_ours(
    paths: list[str], batch_size: int, *, quantized: bool = False, threads: int | None = None
) -> int:
    from zoo.data import batches

    spec = DatasetSpec(num_classes=3862, features=YT8M_FEATURES)
    reader = zoo.build_reader("yt8m-frame", paths=paths, spec=spec)
    n = 0
    for batch in batches(reader, spec=spec, batch_size=batch_size, quantized=quantized, threads=threads):
        n += len(batch["ids"])
    return n


def tf_pipeline(tf, paths: list[str], batch_size: int, quantized: bool = False):
    def parse(serialized):
        context, seq = tf.io.parse_single_sequence_example(
            serialized,
            context_features={
                "id": tf.io.FixedLenFeature([], tf.string),
                "labels": tf.io.VarLenFeature(tf.int64),
            },
            sequence_features={k: tf.io.FixedLenSequenceFeature([], tf.string) for k in ("rgb", "audio")},
        )
        out = {"id": context["id"]}
        for name, size in (("rgb", 1024), ("audio", 128)):
            x = tf.reshape(tf.io.decode_raw(seq[name], tf.uint8), [-1, size])[:300]
            out[name] = x if quantized else tf.cast(x, tf.float32) * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)
        n = tf.shape(out["rgb"])[0]
        out["mask"] = tf.ones([n], tf.float32)
        out["labels"] = tf.scatter_nd(
            tf.expand_dims(context["labels"].values, 1),
            tf.ones_like(context["labels"].values, tf.float32),
            [3862],
        )
        return out

    return tf.data.TFRecordDataset(paths).map(parse).padded_batch(batch_size)


def bench_tf(tf, paths: list[str], batch_size: int, options=None, quantized: bool = False) -> int:
    dataset = tf_pipeline(tf, paths, batch_size, quantized)
    if options is not None:
        dataset = dataset.with_options(options)
    n = 0
    for batch in dataset.as_numpy_iterator():
        n += len(batch["id"])
    return n


def load_frames(paths: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every video's uint8 frames, in memory (outside the timed part of the floor)."""
    reader = zoo.build_reader("yt8m-frame", paths=paths)
    return [
        (np.ascontiguousarray(r["rgb"]), np.ascontiguousarray(r["audio"]))
        for p in paths
        for r in reader.read_part(p, 0, 1)
    ]


def bench_floor(frames: list[tuple[np.ndarray, np.ndarray]], batch_size: int, pool) -> int:
    """Padded float32 batches from frames already in memory: one cast per value, nothing else."""
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        t = max(len(r) for r, _ in chunk)
        for k, size in ((0, 1024), (1, 128)):
            out = pool.array(str(k), (len(chunk), t, size))
            for i, video in enumerate(chunk):
                np.copyto(out[i, : len(video[k])], video[k], casting="unsafe")
                out[i, len(video[k]) :] = 0
    return len(frames)


def run_workload(name: str, work: Path, videos: int, files: int, frames: tuple[int, int], args, tf) -> dict:
    from zoo_yt8m_data.packing import pack

    started = time.perf_counter()
    (work / "tfrecord").mkdir(parents=True, exist_ok=True)
    paths = make_files(work / "tfrecord", videos, files, *frames)
    FILE_VIDEOS[tuple(paths)] = videos
    size = sum(os.path.getsize(p) for p in paths)
    print(
        f"\n{name}: {videos} videos, {files} files, {size / 1e6:.0f} MB, {frames[0]}-{frames[1]} frames "
        f"({time.perf_counter() - started:.0f}s to write)",
        file=sys.stderr,
    )
    pack_report = pack(paths, work / "packed", jobs=1, progress=False)
    total = videos
    from zoo.data.pipeline import BufferPool

    frames_in_memory = load_frames(paths)
    pool = BufferPool()
    packed = [str(work / "packed")]
    pipelines = {
        "file read": lambda: bench_file_read(paths),
        "float batch floor": lambda: bench_floor(frames_in_memory, args.batch_size, pool),
        "yt8m-zoo tfrecord": lambda: bench_ours(paths, args.batch_size),
        "yt8m-zoo tfrecord 1 thread": lambda: bench_ours(paths, args.batch_size, threads=0),
        "yt8m-zoo packed": lambda: bench_ours(packed, args.batch_size),
        "yt8m-zoo packed 1 thread": lambda: bench_ours(packed, args.batch_size, threads=0),
        "yt8m-zoo packed 2 threads": lambda: bench_ours(packed, args.batch_size, threads=2),
        "yt8m-zoo tfrecord uint8": lambda: bench_ours(paths, args.batch_size, quantized=True),
        "yt8m-zoo packed uint8": lambda: bench_ours(packed, args.batch_size, quantized=True),
    }
    if tf is not None:
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1
        pipelines["tensorflow"] = lambda: bench_tf(tf, paths, args.batch_size)
        pipelines["tensorflow 1 thread"] = lambda: bench_tf(tf, paths, args.batch_size, options)
        pipelines["tensorflow uint8"] = lambda: bench_tf(tf, paths, args.batch_size, quantized=True)
    wall = {k: float("inf") for k in pipelines}
    cpu = {k: float("inf") for k in pipelines}
    for fn in pipelines.values():
        fn()  # warm-up
    for _ in range(args.repeat):
        for key, fn in pipelines.items():
            w, c = time.perf_counter(), time.process_time()
            count = fn()
            wall[key] = min(wall[key], time.perf_counter() - w)
            cpu[key] = min(cpu[key], time.process_time() - c)
            if count != total:
                raise RuntimeError(f"{key}: produced {count} videos, expected {total}")
    results = {}
    print(f"{'':28s} {'videos/s':>10s} {'MB/s':>8s} {'videos/s (CPU)':>15s}", file=sys.stderr)
    for key in pipelines:
        results[key] = {
            "videos_per_s": round(total / wall[key], 1),
            "mb_per_s": round(size / wall[key] / 1e6, 1),
            "videos_per_cpu_s": round(total / cpu[key], 1),
        }
        r = results[key]
        print(
            f"{key:28s} {r['videos_per_s']:10.0f} {r['mb_per_s']:8.0f} {r['videos_per_cpu_s']:15.0f}",
            file=sys.stderr,
        )
    summary = {
        "videos": videos,
        "files": files,
        "bytes": size,
        "frames": list(frames),
        "pack_seconds": round(pack_report.seconds, 2),
        "results": results,
    }
    if tf is not None:
        for ours, theirs, goal in RATIOS:
            key = ours.removeprefix("yt8m-zoo ").replace(" ", "_")
            wall_ratio = results[ours]["videos_per_s"] / results[theirs]["videos_per_s"]
            cpu_ratio = results[ours]["videos_per_cpu_s"] / results[theirs]["videos_per_cpu_s"]
            summary[f"{key}_vs_tf"] = {"wall": round(wall_ratio, 2), "cpu": round(cpu_ratio, 2), "goal": goal}
            print(
                f"{ours} vs {theirs}: {wall_ratio:.2f}x wall-clock, {cpu_ratio:.2f}x in CPU time (goal {goal}x)",
                file=sys.stderr,
            )
    return summary


# (ours, TensorFlow's pipeline with the same output, goal): float32 batches against TF's cast and dequantization,
# uint8 batches (dequantized later, on the device) against TF's parse + decode_raw alone
RATIOS = [
    ("yt8m-zoo tfrecord", "tensorflow", 3),
    ("yt8m-zoo packed", "tensorflow", 10),
    ("yt8m-zoo tfrecord uint8", "tensorflow uint8", 3),
    ("yt8m-zoo packed uint8", "tensorflow uint8", 10),
]
WORKLOADS = {"youtube8m": (600, 4, (120, 300)), "short": (4000, 4, (10, 60))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", choices=[*WORKLOADS, "both"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of videos")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no-tf", action="store_true", help="skip TensorFlow (no ratios then)")
    args = parser.parse_args(argv)
    tf = None
    if not args.no_tf:
        import paddle  # noqa: F401  paddle's core must load before TensorFlow's in one process
        import tensorflow

        tf = tensorflow
    from zoo.data.pipeline import FAST_FILL

    kernel = "C (zoo/data/_fastfill.c)" if FAST_FILL is not None else "numpy (the C kernel is not built)"
    print(f"batch fill: {kernel}", file=sys.stderr)
    summary = {
        "batch_size": args.batch_size,
        "cpus": len(os.sched_getaffinity(0)),
        "fill": kernel,
        "workloads": {},
    }
    names = list(WORKLOADS) if args.workload == "both" else [args.workload]
    for name in names:
        videos, files, frames = WORKLOADS[name]
        work = Path(tempfile.mkdtemp(prefix=f"bench-readers-{name}-"))
        try:
            summary["workloads"][name] = run_workload(
                name, work, max(files, int(videos * args.scale)), files, frames, args, tf
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
