"""Benchmark: `zoo ensemble`'s combine step at YouTube-8M's size, time and peak memory (issue 13).

    python benchmarks/bench_ensemble.py                        # 1.1M videos x top-20 x 5 members
    python benchmarks/bench_ensemble.py --videos 100000 --file-videos 20000

Members are synthetic top-20 tables (random classes of 3862, sorted probabilities, seeded; generation is
not timed). Reported, from one process:

- ``combine``: zoo.engine.ensemble.combine (arithmetic and geometric mean), wall seconds and the process's
  peak RSS (goal: under a minute and under 2 GB at full size);
- ``pairwise``: the combine step with the previous class lookup (every candidate against every listed
  class), timed on ``--reference-videos`` rows and scaled to the full size: the reference for the speed-up;
- ``files``: writing and reading ``--file-videos`` videos through the jsonl and csv prediction formats (the
  parsing `zoo ensemble` does for prediction-file members), seconds per million videos.

Exit status 1 when the combine goal is missed. ``--json`` writes the numbers.
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

from zoo.engine import ensemble as ens

NUM_CLASSES = 3862
GOAL_SECONDS = 60.0
GOAL_BYTES = 2 * 1024**3


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def synthetic_tables(videos: int, members: int, k: int, seed: int) -> list[ens.TopKTable]:
    """``members`` tables over the same ids; members agree on part of each row (as real runs do)."""
    rng = np.random.default_rng(seed)
    ids = np.array([b"%08d" % i for i in range(videos)])
    shared = rng.integers(0, NUM_CLASSES, size=(videos, k // 2), dtype=np.int32)
    tables = []
    for m in range(members):
        classes = np.concatenate(
            [shared, rng.integers(0, NUM_CLASSES, size=(videos, k - k // 2), dtype=np.int32)], axis=1
        )
        # a class drawn twice in a row is listed once (padding -1), as in a real top-k
        order = np.argsort(classes, axis=1, kind="stable")
        ranked = np.take_along_axis(classes, order, axis=1)
        repeated = np.zeros_like(ranked, dtype=bool)
        repeated[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
        np.put_along_axis(classes, order, np.where(repeated, -1, ranked), axis=1)
        probs = -np.sort(-rng.random((videos, k), dtype=np.float32), axis=1)
        probs[classes < 0] = 0
        tables.append(ens.TopKTable(f"member{m}", ids, classes, probs))
    return tables


def pairwise_member_values(tables, lo, hi, missing):
    """The previous lookup: compare every candidate with every listed class of each member."""
    cand = np.concatenate([t.classes[lo:hi] for t in tables], axis=1)
    cand.sort(axis=1)
    keep = cand >= 0
    keep[:, 1:] &= cand[:, 1:] != cand[:, :-1]
    values = np.empty((len(tables), *cand.shape), dtype=np.float32)
    for m, t in enumerate(tables):
        classes, probs = t.classes[lo:hi], t.probs[lo:hi]
        listed = classes >= 0
        eq = (cand[:, :, None] == classes[:, None, :]) & listed[:, None, :]
        found = eq.any(axis=2)
        got = np.where(eq, probs[:, None, :], 0).sum(axis=2, dtype=np.float32)
        floor = np.where(listed, probs, np.inf).min(axis=1)
        floor = np.where(np.isfinite(floor), floor, 0).astype(np.float32) * ens.FLOOR_SCALE
        values[m] = np.where(found, got, floor[:, None]) if missing == "floor" else got
    return cand, values, keep


def time_combine(tables, mean: str) -> tuple[float, ens.TopKTable]:
    start = time.perf_counter()
    result = ens.combine(tables, [1.0] * len(tables), mean=mean, top_k=20)
    return time.perf_counter() - start, result


def time_files(tables, videos: int) -> dict[str, float]:
    """Seconds per million videos to write and read one member through each prediction format."""
    from zoo.plugins import get_plugins

    part = ens.TopKTable("part", tables[0].ids[:videos], tables[0].classes[:videos], tables[0].probs[:videos])
    predictions = part.predictions()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in get_plugins().registry("format"):
            fmt = entry.cls(entry.cls.Config())
            path = Path(tmp) / f"member{entry.cls.suffix}"
            start = time.perf_counter()
            fmt.write(path, predictions, None)
            out[f"{entry.name}_write_s_per_M"] = (time.perf_counter() - start) * 1e6 / videos
            start = time.perf_counter()
            ens.read_prediction_file(path)
            out[f"{entry.name}_read_s_per_M"] = (time.perf_counter() - start) * 1e6 / videos
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=1_100_000)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--reference-videos", type=int, default=40_000)
    parser.add_argument("--file-videos", type=int, default=20_000, help="0: skip the file formats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    tables = synthetic_tables(args.videos, args.members, args.top_k, args.seed)
    rss_tables = peak_rss_bytes()
    numbers: dict[str, float] = {"videos": args.videos, "members": args.members, "top_k": args.top_k}
    numbers["rss_after_tables_GB"] = rss_tables / 1e9
    for mean in ("arithmetic", "geometric"):
        seconds, result = time_combine(tables, mean)
        numbers[f"combine_{mean}_s"] = seconds
        del result
    numbers["peak_rss_GB"] = peak_rss_bytes() / 1e9

    # the reference, same process and data: the previous lookup on a slice, scaled to the full size
    ref = [
        ens.TopKTable(
            t.source,
            t.ids[: args.reference_videos],
            t.classes[: args.reference_videos],
            t.probs[: args.reference_videos],
        )
        for t in tables
    ]
    current = ens.member_values
    start = time.perf_counter()
    ens.combine(ref, [1.0] * len(ref), top_k=20)
    now = time.perf_counter() - start
    ens.member_values = pairwise_member_values
    try:
        start = time.perf_counter()
        ens.combine(ref, [1.0] * len(ref), top_k=20)
        before = time.perf_counter() - start
    finally:
        ens.member_values = current
    scale = args.videos / len(ref[0])
    numbers["pairwise_arithmetic_s_scaled"] = before * scale
    numbers["current_arithmetic_s_scaled"] = now * scale
    numbers["speedup"] = before / max(now, 1e-9)
    if args.file_videos:
        numbers.update(time_files(tables, min(args.file_videos, args.videos)))

    for key, value in numbers.items():
        print(f"{key:36s} {value:.3f}" if isinstance(value, float) else f"{key:36s} {value}")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))
    slowest = max(numbers["combine_arithmetic_s"], numbers["combine_geometric_s"])
    ok = slowest < GOAL_SECONDS and peak_rss_bytes() < GOAL_BYTES
    if args.videos >= 1_000_000:
        print(f"goal (combine < {GOAL_SECONDS:.0f} s and peak RSS < 2 GB): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
