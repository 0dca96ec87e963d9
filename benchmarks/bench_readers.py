"""Reader speed: frame-level TFRecords -> padded float batches, ours vs TensorFlow, in one run.

    python benchmarks/bench_readers.py [--videos 2000] [--files 4] [--batch-size 64] [--min-frames 120]
                                       [--max-frames 300] [--repeat 3] [--json out.json]

Builds YouTube-8M-shaped frame-level TFRecords (random quantized frames; lengths uniform in
[min-frames, max-frames], the real data's range), then times, single process, each producing the same
padded float32 batches (rgb, audio, mask, labels):

- ``file read``: reading the bytes of the files (the floor: no decoding at all);
- ``tensorflow``: ``TFRecordDataset`` -> ``parse_single_sequence_example`` -> ``decode_raw`` -> cast ->
  starter-code dequantization -> ``padded_batch`` (TF's default threading; ``tensorflow 1 thread``
  pins intra/inter-op parallelism to one thread);
- ``yt8m-zoo tfrecord``: ``zoo.data.batches`` over ``yt8m-frame`` on the same files;
- ``yt8m-zoo packed``: the same after ``zoo data pack`` (packing time reported separately).

Every run reads from the page cache (one warm-up pass first); the best of ``--repeat`` passes counts.
Goals (issue 3): tfrecord >= 3x tensorflow, packed >= 10x tensorflow.
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


def make_files(root: Path, videos: int, files: int, min_frames: int, max_frames: int, seed: int = 0) -> list[str]:
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
            chunks.append(frame(encode_sequence_example({"id": f"v{i:05d}".encode(), "labels": labels},
                                                        {"rgb": rgb, "audio": audio})))
        path = root / f"train{f:04d}.tfrecord"
        path.write_bytes(b"".join(chunks))
        paths.append(str(path))
    return paths


def time_best(fn, repeat: int) -> tuple[float, int]:
    fn()  # warm-up: page cache, imports, lazy initialisation
    best = float("inf")
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def bench_file_read(paths: list[str]) -> int:
    total = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    return total


def bench_ours(paths: list[str], batch_size: int) -> int:
    from zoo.data import batches

    spec = DatasetSpec()
    reader = zoo.build_reader("yt8m-frame", paths=paths, spec=spec)
    n = 0
    for batch in batches(reader, spec=spec, batch_size=batch_size):
        n += len(batch["ids"])
    return n


def tf_pipeline(tf, paths: list[str], batch_size: int):
    def parse(serialized):
        context, seq = tf.io.parse_single_sequence_example(
            serialized,
            context_features={"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)},
            sequence_features={k: tf.io.FixedLenSequenceFeature([], tf.string) for k in ("rgb", "audio")},
        )
        out = {"id": context["id"]}
        for name, size in (("rgb", 1024), ("audio", 128)):
            x = tf.reshape(tf.cast(tf.io.decode_raw(seq[name], tf.uint8), tf.float32), [-1, size])[:300]
            out[name] = x * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)
        n = tf.shape(out["rgb"])[0]
        out["mask"] = tf.ones([n], tf.float32)
        out["labels"] = tf.scatter_nd(tf.expand_dims(context["labels"].values, 1),
                                      tf.ones_like(context["labels"].values, tf.float32), [3862])
        return out

    return tf.data.TFRecordDataset(paths).map(parse).padded_batch(batch_size)


def bench_tf(tf, paths: list[str], batch_size: int) -> int:
    n = 0
    for batch in tf_pipeline(tf, paths, batch_size).as_numpy_iterator():
        n += len(batch["id"])
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--min-frames", type=int, default=120)
    parser.add_argument("--max-frames", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="where to write the files (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--no-tf", action="store_true", help="skip TensorFlow (no ratios then)")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-readers-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        paths = make_files(work / "tfrecord", args.videos, args.files, args.min_frames, args.max_frames) \
            if (work / "tfrecord").mkdir(exist_ok=True) is None else []
        size = sum(os.path.getsize(p) for p in paths)
        print(f"data: {args.videos} videos, {args.files} files, {size / 1e6:.0f} MB, frames "
              f"{args.min_frames}-{args.max_frames} ({time.perf_counter() - started:.0f}s to write)", file=sys.stderr)

        from zoo_yt8m_data.packing import pack

        pack_report = pack(paths, work / "packed", jobs=1, progress=False)

        results: dict[str, dict[str, float]] = {}

        def record(name: str, seconds: float, videos: int) -> None:
            results[name] = {"seconds": round(seconds, 4), "videos_per_s": round(videos / seconds, 1),
                             "mb_per_s": round(size / seconds / 1e6, 1)}
            print(f"{name:24s} {videos / seconds:9.0f} videos/s {size / seconds / 1e6:9.0f} MB/s", file=sys.stderr)

        seconds, nbytes = time_best(lambda: bench_file_read(paths), args.repeat)
        record("file read", seconds, args.videos)
        if not args.no_tf:
            import paddle  # noqa: F401  paddle's core must load before TensorFlow's in one process
            import tensorflow as tf

            record("tensorflow", *time_best(lambda: bench_tf(tf, paths, args.batch_size), args.repeat))
        record("yt8m-zoo tfrecord", *time_best(lambda: bench_ours(paths, args.batch_size), args.repeat))
        record("yt8m-zoo packed", *time_best(lambda: bench_ours([str(work / "packed")], args.batch_size),
                                             args.repeat))
        if not args.no_tf:
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.config.threading.set_intra_op_parallelism_threads(1)
            options = tf.data.Options()
            options.threading.private_threadpool_size = 1

            def bench_tf1() -> int:
                n = 0
                for batch in tf_pipeline(tf, paths, args.batch_size).with_options(options).as_numpy_iterator():
                    n += len(batch["id"])
                return n

            record("tensorflow 1 thread", *time_best(bench_tf1, args.repeat))
        summary = {
            "videos": args.videos, "files": args.files, "bytes": size, "batch_size": args.batch_size,
            "frames": [args.min_frames, args.max_frames], "cpus": len(os.sched_getaffinity(0)),
            "pack_seconds": round(pack_report.seconds, 2), "results": results,
        }
        if "tensorflow" in results:
            tf_rate = results["tensorflow"]["videos_per_s"]
            summary["ratio_tfrecord_vs_tf"] = round(results["yt8m-zoo tfrecord"]["videos_per_s"] / tf_rate, 2)
            summary["ratio_packed_vs_tf"] = round(results["yt8m-zoo packed"]["videos_per_s"] / tf_rate, 2)
            summary["goals_met"] = summary["ratio_tfrecord_vs_tf"] >= 3 and summary["ratio_packed_vs_tf"] >= 10
            print(f"tfrecord: {summary['ratio_tfrecord_vs_tf']}x TensorFlow (goal 3x), packed: "
                  f"{summary['ratio_packed_vs_tf']}x (goal 10x)", file=sys.stderr)
        print(json.dumps(summary, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
