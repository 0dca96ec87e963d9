"""Benchmark: length-bucketed batches (``data.bucket_by_length``) against plain shuffled batches.

    python benchmarks/bench_bucketing.py                  # padding table + a short NeXtVLAD run (~2-3 min)
    python benchmarks/bench_bucketing.py --steps 6 --json results.json
    python benchmarks/bench_bucketing.py --no-train       # the padding table only (seconds)

Padding: a stream of video lengths goes through the pipeline's own shuffle buffer and batch forming
(``zoo.data.pipeline``: the shuffle buffer, then windows of whole batches sorted by length), with and
without buckets; the padding fraction is the share of frame slots ``B x T`` of all batches that hold no
frame. Length distributions (YouTube-8M keeps videos of 120 to 500 seconds, one frame per second, and the
reader truncates them to ``max_frames`` = 300):

- ``yt8m-uniform``: durations uniform in 120..500 s, truncated to 300 frames (53% of the videos at 300);
- ``yt8m-log``: durations log-uniform in 120..500 s (more short videos), truncated to 300 frames;
- ``uniform-120-300``: uniform in 120..300 frames (no truncation: the training throughput case).

Throughput: NeXtVLAD training steps (forward, sigmoid cross-entropy, backward, Adam) at the ``sample.model``
sizes of configs/nextvlad.yaml (cluster_size 32, hidden_size 256, groups 8, expansion 1) with the real
feature sizes (rgb 1024 + audio 128) and 3862 classes, on random features, batch 32, lengths uniform in
120..300 frames batched by the pipeline with and without buckets (shuffle buffer 1024). The same number of
steps of each kind run interleaved (bucketed, plain, bucketed, ...) after an untimed pass over the same
batches, so both see the same machine load and warm kernels; videos/s is videos over the summed step time.
Reading and filling batches is not timed (buckets make that cheaper too: fewer padding frames to zero).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MAX_FRAMES = 300
DISTRIBUTIONS = ("yt8m-uniform", "yt8m-log", "uniform-120-300")


def lengths_of(distribution: str, n: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    if distribution == "yt8m-uniform":
        seconds = rng.integers(120, 501, n)
    elif distribution == "yt8m-log":
        seconds = np.exp(rng.uniform(np.log(120), np.log(501), n)).astype(int)
    elif distribution == "uniform-120-300":
        seconds = rng.integers(120, 301, n)
    else:
        raise ValueError(f"unknown distribution {distribution!r}; choose from {', '.join(DISTRIBUTIONS)}")
    return np.minimum(seconds, MAX_FRAMES).astype(int).tolist()


class LengthsReader:
    """A reader whose records carry only an id and a length: enough for the pipeline's batch forming."""

    def __init__(self, lengths: list[int]) -> None:
        self.lengths = lengths

    def sources(self) -> list[str]:
        return ["lengths"]

    def read(self, source: str):
        for i, n in enumerate(self.lengths):
            yield {"id": str(i), "num_frames": n}


def batch_lengths(
    lengths: list[int], batch_size: int, shuffle_buffer: int, bucket: bool, seed: int = 0
) -> list[list[int]]:
    """The lengths of each batch, in order, as one pipeline part forms them (training: shuffled)."""
    from zoo.data.pipeline import _part_records, _record_groups, _stable_seed, bucket_window

    reader = LengthsReader(lengths)
    rng = random.Random(_stable_seed(seed, 0, "buffer", 0))
    bucket_rng = random.Random(_stable_seed(seed, 0, "buckets", 0))
    records = _part_records(reader, [("lengths", 0, 1)], shuffle_buffer, rng)
    window = bucket_window(shuffle_buffer, batch_size) if bucket else 0
    groups = _record_groups(records, batch_size, False, window, bucket_rng)
    return [[int(r["num_frames"]) for r in group] for group in groups]


def padding(groups: list[list[int]]) -> tuple[float, int]:
    """Padding fraction and frame slots of batches of these lengths."""
    from zoo.data.pipeline import padding_fraction

    flat = [n for g in groups for n in g]
    slots = sum(max(g) * len(g) for g in groups)
    return padding_fraction(flat, [len(g) for g in groups]), slots


def padding_table(videos: int, batch_sizes: list[int], shuffle_buffer: int) -> list[dict]:
    rows = []
    for distribution in DISTRIBUTIONS:
        lengths = lengths_of(distribution, videos)
        for batch_size in batch_sizes:
            plain, plain_slots = padding(batch_lengths(lengths, batch_size, shuffle_buffer, False))
            bucketed, bucketed_slots = padding(batch_lengths(lengths, batch_size, shuffle_buffer, True))
            rows.append(
                {
                    "distribution": distribution,
                    "videos": videos,
                    "mean_frames": float(np.mean(lengths)),
                    "batch_size": batch_size,
                    "shuffle_buffer": shuffle_buffer,
                    "padding_plain": plain,
                    "padding_bucketed": bucketed,
                    "frame_slots_ratio": plain_slots / bucketed_slots,
                }
            )
    return rows


def train_throughput(steps: int, batch_size: int, shuffle_buffer: int, threads: int | None) -> dict:
    from zoo.runtime import cpu_count, init_paddle

    paddle = init_paddle("cpu", threads=threads)
    import paddle.nn.functional as F
    import yaml

    import zoo

    config = yaml.safe_load((REPO / "configs" / "nextvlad.yaml").read_text())
    options = {k: v for k, v in config["model"].items() if k != "name"}
    options.update(config["sample"]["model"])
    classes = 3862
    paddle.seed(0)
    model = zoo.build_model("nextvlad", num_classes=classes, **options)
    model.train()
    optimizer = paddle.optimizer.Adam(learning_rate=2e-4, parameters=model.parameters())
    rng = np.random.default_rng(0)

    lengths = lengths_of("uniform-120-300", 4 * shuffle_buffer, seed=1)
    kinds = {
        kind: batch_lengths(lengths, batch_size, shuffle_buffer, kind == "bucketed")[:steps]
        for kind in ("bucketed", "plain")
    }

    def make_batch(n: list[int]) -> tuple[dict, object]:
        n = np.asarray(n)
        t = int(n.max())
        mask = (np.arange(t)[None, :] < n[:, None]).astype(np.float32)
        batch = {
            name: paddle.to_tensor(rng.uniform(-2, 2, (len(n), t, d)).astype(np.float32) * mask[..., None])
            for name, d in model.features.items()
        }
        batch["mask"] = paddle.to_tensor(mask)
        batch["num_frames"] = paddle.to_tensor(n.astype(np.int64))
        labels = np.zeros((len(n), classes), np.float32)
        for row in labels:
            row[rng.choice(classes, 3, replace=False)] = 1.0
        return batch, paddle.to_tensor(labels)

    def step(batch: dict, labels) -> None:
        logits = model(batch)
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(axis=1).mean()
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        if not np.isfinite(float(loss)):
            raise RuntimeError(f"non-finite loss {float(loss)}")

    made = {kind: [make_batch(n) for n in groups] for kind, groups in kinds.items()}
    for i in range(steps):  # untimed: kernels for every shape, Adam state
        for kind in made:
            step(*made[kind][i])
    seconds = {kind: 0.0 for kind in made}
    for i in range(steps):
        for kind in made:
            start = time.perf_counter()
            step(*made[kind][i])
            seconds[kind] += time.perf_counter() - start
    out: dict = {
        "model": options,
        "classes": classes,
        "batch_size": batch_size,
        "steps": steps,
        "threads": threads or cpu_count(),
        "frames": "120-300 uniform",
        "shuffle_buffer": shuffle_buffer,
    }
    for kind, groups in kinds.items():
        out[f"{kind}_videos_per_second"] = sum(map(len, groups)) / seconds[kind]
        out[f"{kind}_mean_T"] = float(np.mean([max(g) for g in groups]))
        out[f"{kind}_padding"] = padding(groups)[0]
    out["speedup"] = out["bucketed_videos_per_second"] / out["plain_videos_per_second"]
    out["load_average"] = os.getloadavg()[0]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=20000, help="videos in the padding streams")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 40, 160])
    parser.add_argument("--shuffle-buffer", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps of each kind")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
    parser.add_argument("--threads", type=int, default=None, help="paddle CPU threads (default: all cores)")
    parser.add_argument("--no-train", action="store_true", help="skip the training throughput run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))

    results: dict = {"padding": padding_table(args.videos, args.batch_sizes, args.shuffle_buffer)}
    for r in results["padding"]:
        print(
            f"{r['distribution']:<16} mean {r['mean_frames']:5.1f} frames  B={r['batch_size']:<4} "
            f"buffer {r['shuffle_buffer']}  padding {100 * r['padding_plain']:5.1f}% -> "
            f"{100 * r['padding_bucketed']:4.1f}%  frame slots {r['frame_slots_ratio']:.2f}x fewer",
            flush=True,
        )
    if not args.no_train:
        r = train_throughput(args.steps, args.batch_size, args.shuffle_buffer, args.threads)
        results["train"] = r
        print(
            f"train NeXtVLAD (sample sizes, 3862 classes) B={r['batch_size']} 120-300 frames, "
            f"{r['steps']} steps each: plain {r['plain_videos_per_second']:.1f} videos/s "
            f"(mean T {r['plain_mean_T']:.0f}, padding {100 * r['plain_padding']:.1f}%), bucketed "
            f"{r['bucketed_videos_per_second']:.1f} videos/s (mean T {r['bucketed_mean_T']:.0f}, padding "
            f"{100 * r['bucketed_padding']:.1f}%): {r['speedup']:.2f}x  load {r['load_average']:.1f}",
            flush=True,
        )
    if args.json:
        from zoo.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
