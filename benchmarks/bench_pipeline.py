"""The input pipeline measured alone: what it feeds per second, by format and reader processes (issue 28).

    python benchmarks/bench_pipeline.py [--videos 600] [--files 4] [--frames 120 300] [--workers 0 1 2]
                                        [--batch-size 32] [--repeat 2] [--json out.json]

Writes frame-level TFRecords shaped like YouTube-8M (rgb 1024 + audio 128 uint8 per frame, 3862 classes,
``--frames`` frames per video), packs them (``zoo data pack``), then times, in turn and ``--repeat`` times
(best counts), one pass over all videos through ``zoo.data.batches`` with ``num_workers`` reader processes
(0: in this process) for each format:

- ``tfrecord float``: TFRecords -> padded float32 batches (dequantized on the host);
- ``tfrecord uint8``: TFRecords -> uint8 batches, dequantized where the model runs (``to_tensors``: a gather
  through the reader's table on the model's device, here the CPU) inside the timed loop;
- ``tfrecord uint8-raw``: the uint8 batches as handed over (a GPU would dequantize them itself);
- ``packed float`` / ``packed uint8`` / ``packed uint8-raw``: the same from the packed shards.

Per row: videos/s over the whole pass, the seconds to the first batch (starting the reader processes:
each imports paddle) and the steady rate after the first batch (what a long epoch sees).

For each: videos/s, the TFRecord bytes read per second (the disk bandwidth this speed needs; the packed
shards' own bytes are given too) and the batch bytes per second handed to the model (what crosses PCIe to a
GPU: 4 bytes per value for float, 1 for uint8, plus the mask). Then ``training loop``: the engine's
training step (batches -> tensors -> forward -> sigmoid cross-entropy -> backward -> Adam) with the model
replaced by a no-op (one bias per class; the features are only dequantized and handed over): the
pipeline's own ceiling as the training loop sees it. Every number here is measured on this machine; the
GPU plan in docs/bench.md computes from them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import zoo  # noqa: F401  (environment before paddle)
from zoo import DatasetSpec

FEATURES = {"rgb": 1024, "audio": 128}
CLASSES = 3862


def make_files(
    root: Path, videos: int, files: int, frames: tuple[int, int], seed: int = 0
) -> tuple[list[str], int]:
    """``videos`` random quantized videos with 1-5 labels, in ``files`` TFRecord files; and their frame count."""
    from zoo_yt8m_data.tfrecord import frame
    from zoo_yt8m_data.wire import encode_sequence_example

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    total = 0
    bounds = np.linspace(0, videos, files + 1).astype(int)
    for f in range(files):
        chunks = []
        for v in range(bounds[f], bounds[f + 1]):
            n = int(rng.integers(frames[0], frames[1] + 1))
            total += n
            payload = encode_sequence_example(
                {
                    "id": f"v{v}".encode(),
                    "labels": sorted(rng.choice(CLASSES, rng.integers(1, 6), replace=False)),
                },
                {name: rng.integers(0, 256, (n, d), dtype=np.uint8) for name, d in FEATURES.items()},
            )
            chunks.append(frame(payload))
        path = root / f"train{f:04d}.tfrecord"
        path.write_bytes(b"".join(chunks))
        paths.append(str(path))
    return paths, total


def batch_bytes(batch: dict[str, Any]) -> int:
    return sum(batch[name].nbytes for name in FEATURES) + batch["mask"].nbytes


def one_pass(
    paths: list[str], *, kind: str, workers: int, batch_size: int, train: Any = None
) -> tuple[int, int, float, float]:
    """Videos, batch bytes, seconds to the first batch and seconds of the whole pass.

    ``kind``: float (float32 batches), uint8 (uint8 batches dequantized where the model runs, in the timed
    loop) or uint8-raw (uint8 batches as the pipeline hands them over, for a device that dequantizes them)."""
    from zoo.data import batches
    from zoo.engine.feed import to_tensors

    spec = DatasetSpec(num_classes=CLASSES, features=FEATURES)
    reader = zoo.build_reader("yt8m-frame", paths=paths, spec=spec)
    videos = size = 0
    start = time.perf_counter()
    first = None
    for batch in batches(
        reader,
        spec=spec,
        batch_size=batch_size,
        quantized=kind != "float",
        num_workers=workers,
        shuffle=train is not None,
    ):
        if first is None:
            first = time.perf_counter() - start
        size += batch_bytes(batch)
        videos += len(batch["ids"])
        if train is not None:
            train(batch)
        elif kind == "uint8":
            to_tensors(batch, FEATURES)  # the dequantization the model's device does
    return videos, size, first or 0.0, time.perf_counter() - start


def no_op_step(lr: float = 1e-3) -> Any:
    """The engine's training step with a model that only returns one bias per class."""
    import paddle

    from zoo.engine.feed import bce_loss, to_tensors

    class NoOp(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.bias = self.create_parameter(
                [CLASSES], default_initializer=paddle.nn.initializer.Constant(0.0)
            )

        def forward(self, inputs: dict[str, Any]) -> Any:
            return self.bias.unsqueeze(0).expand([inputs["mask"].shape[0], CLASSES])

    model = NoOp()
    optimizer = paddle.optimizer.Adam(learning_rate=lr, parameters=model.parameters())

    def step(batch: dict[str, Any]) -> None:
        inputs = to_tensors(batch, FEATURES)
        loss = bce_loss(model(inputs), paddle.to_tensor(batch["labels"]))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad(set_to_zero=False)
        float(loss)

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=600)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--frames", type=int, nargs=2, default=[120, 300], metavar=("MIN", "MAX"))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="reader processes to try")
    parser.add_argument(
        "--train-workers",
        type=int,
        help="reader processes of the training-loop rows (default: the most tried)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    from zoo_yt8m_data.packing import pack

    from zoo.engine.runtime import init_paddle

    init_paddle("cpu")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        paths, frames_total = make_files(work / "tfrecord", args.videos, args.files, tuple(args.frames))
        tf_bytes = sum(os.path.getsize(p) for p in paths)
        pack(paths, work / "packed", jobs=1, progress=False)
        packed_bytes = sum(p.stat().st_size for p in (work / "packed").rglob("*") if p.is_file())
        print(
            f"{args.videos} videos, {args.frames[0]}-{args.frames[1]} frames: TFRecords {tf_bytes / 1e6:.0f} MB, "
            f"packed {packed_bytes / 1e6:.0f} MB ({time.perf_counter() - t0:.0f} s to write and pack); "
            f"load average {os.getloadavg()[0]:.1f}",
            file=sys.stderr,
        )
        sources = {"tfrecord": paths, "packed": [str(work / "packed")]}
        runs: dict[str, Any] = {}
        for workers in args.workers:
            for source in sources:
                for kind in ("float", "uint8", "uint8-raw"):
                    runs[f"{source} {kind}, {workers} reader processes"] = dict(
                        paths=sources[source],
                        workers=workers,
                        source=source,
                        kind=kind,
                    )
        step = no_op_step()
        best_workers = max(args.workers) if args.train_workers is None else args.train_workers
        for source in sources:
            for kind in ("float", "uint8"):
                runs[f"training loop (no-op model), {source} {kind}, {best_workers} reader processes"] = dict(
                    paths=sources[source],
                    workers=best_workers,
                    source=source,
                    kind=kind,
                    train=step,
                )
        best: dict[str, float] = {}
        steady: dict[str, float] = {}
        startup: dict[str, float] = {}
        sizes: dict[str, int] = {}
        for _ in range(args.repeat):
            for name, run in runs.items():
                videos, size, first, seconds = one_pass(
                    run["paths"],
                    kind=run["kind"],
                    workers=run["workers"],
                    batch_size=args.batch_size,
                    train=run.get("train"),
                )
                if videos != args.videos:
                    raise RuntimeError(f"{name}: {videos} videos, expected {args.videos}")
                best[name] = min(best.get(name, float("inf")), seconds)
                startup[name] = min(startup.get(name, float("inf")), first)
                # after the first batch: the rate once the reader processes run (their start is not in it)
                rate = (videos - args.batch_size) / max(seconds - first, 1e-9)
                steady[name] = max(steady.get(name, 0.0), rate)
                sizes[name] = size
        rows = {}
        print(
            f"{'':72s} {'videos/s':>9s} {'steady':>8s} {'start s':>8s} {'read MB/s':>10s} {'batch MB/s':>11s}",
            file=sys.stderr,
        )
        for name, run in runs.items():
            seconds = best[name]
            read = tf_bytes if run["source"] == "tfrecord" else packed_bytes
            rows[name] = {
                "source": run["source"],
                "batches": run["kind"],
                "reader_processes": run["workers"],
                "training_loop": "train" in run,
                "videos_per_s": round(args.videos / seconds, 1),
                "steady_videos_per_s": round(steady[name], 1),
                "seconds_to_first_batch": round(startup[name], 2),
                "read_mb_per_s": round(read / seconds / 1e6, 1),
                "steady_read_mb_per_s": round(read / args.videos * steady[name] / 1e6, 1),
                "tfrecord_mb_per_s": round(tf_bytes / seconds / 1e6, 1),
                "batch_mb_per_s": round(sizes[name] / seconds / 1e6, 1),
                "steady_batch_mb_per_s": round(sizes[name] / args.videos * steady[name] / 1e6, 1),
            }
            r = rows[name]
            print(
                f"{name:72s} {r['videos_per_s']:9.1f} {r['steady_videos_per_s']:8.1f} "
                f"{r['seconds_to_first_batch']:8.2f} {r['steady_read_mb_per_s']:10.1f} "
                f"{r['steady_batch_mb_per_s']:11.1f}",
                file=sys.stderr,
            )
    result = {
        "videos": args.videos,
        "frames": args.frames,
        "batch_size": args.batch_size,
        "tfrecord_bytes": tf_bytes,
        "packed_bytes": packed_bytes,
        "tfrecord_bytes_per_video": round(tf_bytes / args.videos),
        "frames_total": frames_total,
        "tfrecord_bytes_per_frame": round(tf_bytes / frames_total, 1),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 1),
        "rows": rows,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
