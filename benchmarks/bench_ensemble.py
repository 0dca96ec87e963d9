"""Benchmark: `zoo ensemble`'s combine step at YouTube-8M's size, time and peak memory (issue 13).

    python benchmarks/bench_ensemble.py                        # 1.1M videos x top-20 x 5 members
    python benchmarks/bench_ensemble.py --videos 100000 --file-videos 20000

Members are synthetic top-20 tables (random classes of 3862, sorted probabilities, seeded; generation is
not timed). Reported, from one process:

- ``combine``: zoo.engine.infer.ensemble.combine (arithmetic and geometric mean), wall seconds and the process's
  peak RSS (goal: under a minute and under 2 GB at full size);
- ``pairwise``: the combine step with the previous class lookup (every candidate against every listed
  class), timed on ``--reference-videos`` rows and scaled to the full size: the reference for the speed-up;
- ``files``: writing and reading ``--file-videos`` videos through the jsonl and csv prediction formats (the
  parsing `zoo ensemble` does for prediction-file members), seconds per million videos;
- ``command``: the whole `zoo ensemble m0.csv ... m4.csv` (read the members' Kaggle CSVs, combine, write
  predictions.csv and predictions.jsonl), each mean in its own process: wall seconds and that process's peak
  RSS (goal: under a minute and 2 GB at full size). The member files are written first (not timed). The
  reference is the previous path in the same run -- rows read as Prediction objects
  (``format.read`` + ``TopKTable.from_predictions``) and written from them (``format.write``) -- on
  ``--old-videos`` videos (it takes ~3 minutes per million), reported as measured and scaled to the full size;
- ``reference``: with ``--reference-tree DIR`` (a source tree of an earlier version, its C extensions built
  in place; for example main before issue 27, whose prediction files went through ``zoo/engine/_predio.c``),
  the same `zoo ensemble` at full size with that tree's code, in the same run: seconds, peak RSS, and whether
  the outputs hold the same rows (JSON lines byte for byte; the CSV's rows and float32 scores, since its
  score spelling changed from ``%.9g`` to the shortest float32 text).

Exit status 1 when a goal is missed. ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from zoo.engine.infer import ensemble as ens

NUM_CLASSES = 3862
GOAL_SECONDS = 60.0
GOAL_BYTES = 2 * 1024**3


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def own_peak_rss_bytes() -> int:
    """This process's peak RSS since its exec (VmHWM): ru_maxrss would also count the forking parent's RSS,
    which Linux carries over an exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return peak_rss_bytes()


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
    """Seconds per million videos to write and read one member through each prediction format: row by row
    (``format.write`` / ``format.read`` + ``TopKTable.from_predictions``, the previous path) and
    column-wise (``write_columns`` / ``read_columns``, what `zoo ensemble` uses now)."""
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
            out[f"{entry.name}_write_rows_s_per_M"] = (time.perf_counter() - start) * 1e6 / videos
            start = time.perf_counter()
            ens.TopKTable.from_predictions(str(path), fmt.read(path))
            out[f"{entry.name}_read_rows_s_per_M"] = (time.perf_counter() - start) * 1e6 / videos
            if hasattr(fmt, "write_columns"):
                start = time.perf_counter()
                fmt.write_columns(path, part.columns(), None)
                out[f"{entry.name}_write_columns_s_per_M"] = (time.perf_counter() - start) * 1e6 / videos
                start = time.perf_counter()
                ens.read_prediction_file(path)
                out[f"{entry.name}_read_columns_s_per_M"] = (time.perf_counter() - start) * 1e6 / videos
    return out


def write_members(tables, folder: Path, videos: int) -> list[str]:
    """The members as Kaggle CSVs of their first ``videos`` rows (what `zoo predict` writes)."""
    from zoo_yt8m_metrics.kaggle import KaggleCsvFormat

    paths = []
    for m, t in enumerate(tables):
        path = folder / f"m{m}.csv"
        part = ens.TopKTable(t.source, t.ids[:videos], t.classes[:videos], t.probs[:videos])
        KaggleCsvFormat().write_columns(path, part.columns(), None)
        paths.append(str(path))
    return paths


def old_ensemble(files: list[str], mean: str, out: Path) -> None:
    """The previous path of `zoo ensemble` over prediction files: one Prediction object per row."""
    from zoo.plugins import get_plugins

    registry = get_plugins().registry("format")
    formats = {str(e.cls.suffix): e.cls for e in registry}
    tables = []
    for f in files:
        fmt = formats[Path(f).suffix]
        tables.append(ens.TopKTable.from_predictions(f, fmt(fmt.Config()).read(Path(f))))
    result = ens.combine(tables, [1.0] * len(tables), mean=mean, top_k=20)
    predictions = result.predictions()
    out.mkdir(parents=True, exist_ok=True)
    for entry in registry:
        entry.cls(entry.cls.Config()).write(out / f"predictions{entry.cls.suffix}", predictions, None)


def worker(argv: list[str]) -> int:
    """``--worker new|old MEAN OUT FILE...``: one ensemble in this process; prints seconds and peak RSS."""
    kind, mean, out, *files = argv
    start = time.perf_counter()
    if kind == "new":
        from zoo.cli import main as zoo_main

        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                code = zoo_main(["ensemble", *files, "--mean", mean, "--output", out])
            finally:
                sys.stdout = stdout
        if code:
            return code
    else:
        old_ensemble(files, mean, Path(out))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu": cpu, "peak_rss": own_peak_rss_bytes()}))
    return 0


def time_command(
    files: list[str], mean: str, out: Path, kind: str, tree: Path | None = None
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (the whole process, imports included) and peak RSS of one ensemble in a
    fresh process (the peak is that process's alone); ``tree``: with that source tree's code."""
    cmd = [sys.executable, __file__, "--worker", kind, mean, str(out), *files]
    env = None
    if tree is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "plugins")])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{done.stderr[-2000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return record["seconds"], record["cpu"], record["peak_rss"]


def same_rows(a: Path, b: Path) -> bool:
    """Two prediction files hold the same ids, classes and float32 scores, in the same order."""
    x, y = ens.read_prediction_file(a), ens.read_prediction_file(b)
    return (
        x.ids.tolist() == y.ids.tolist()
        and np.array_equal(x.classes, y.classes)
        and np.array_equal(x.probs.astype(np.float32), y.probs.astype(np.float32))
    )


def bench_command(tables, videos: int, old_videos: int, tree: Path | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = write_members(tables, folder, videos)
        for mean in ("arithmetic", "geometric"):
            seconds, cpu, rss = time_command(files, mean, folder / f"new-{mean}", "new")
            out[f"command_{mean}_s"], out[f"command_{mean}_cpu_s"] = seconds, cpu
            out[f"command_{mean}_peak_rss_GB"] = rss / 1e9
        if tree is not None:
            seconds, cpu, rss = time_command(files, "arithmetic", folder / "ref", "new", tree)
            out["reference_command_arithmetic_s"], out["reference_command_arithmetic_cpu_s"] = seconds, cpu
            out["reference_command_arithmetic_peak_rss_GB"] = rss / 1e9
            new, ref = folder / "new-arithmetic", folder / "ref"
            jsonl = (new / "predictions.jsonl").read_bytes() == (ref / "predictions.jsonl").read_bytes()
            out["reference_jsonl_identical"] = float(jsonl)
            out["reference_csv_same_rows"] = float(
                same_rows(new / "predictions.csv", ref / "predictions.csv")
            )
        if old_videos:
            small = write_members(tables, folder / "old", old_videos) if old_videos != videos else files
            for kind in ("new", "old"):
                seconds, cpu, rss = time_command(small, "arithmetic", folder / f"{kind}-small", kind)
                out[f"{kind}_path_{old_videos}_arithmetic_s"] = seconds
                out[f"{kind}_path_{old_videos}_arithmetic_cpu_s"] = cpu
                out[f"{kind}_path_{old_videos}_peak_rss_GB"] = rss / 1e9
            same = all(
                (folder / f"new-small/predictions{s}").read_bytes()
                == (folder / f"old-small/predictions{s}").read_bytes()
                for s in (".csv", ".jsonl")
            )
            out["old_and_new_outputs_identical"] = float(same)
            out["old_path_arithmetic_s_scaled"] = (
                out[f"old_path_{old_videos}_arithmetic_s"] * videos / old_videos
            )
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
    parser.add_argument("--command", type=int, default=1, help="0: skip the whole-command timing")
    parser.add_argument(
        "--old-videos", type=int, default=100_000, help="the previous path's videos (0: skip)"
    )
    parser.add_argument(
        "--reference-tree", type=Path, help="an earlier version's source tree to time `zoo ensemble` against"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
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
    if args.command:
        numbers.update(
            bench_command(tables, args.videos, min(args.old_videos, args.videos), args.reference_tree)
        )

    for key, value in numbers.items():
        print(f"{key:36s} {value:.3f}" if isinstance(value, float) else f"{key:36s} {value}")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))
    slowest = max(numbers["combine_arithmetic_s"], numbers["combine_geometric_s"])
    # the combine step's peak, taken right after it (the file-format timings later in this process are no part
    # of the goal; the whole command's peak is its own process's, below)
    ok = slowest < GOAL_SECONDS and numbers["peak_rss_GB"] * 1e9 < GOAL_BYTES
    if args.command:
        whole = max(numbers["command_arithmetic_s"], numbers["command_geometric_s"])
        peak = max(numbers["command_arithmetic_peak_rss_GB"], numbers["command_geometric_peak_rss_GB"])
        ok = ok and whole < GOAL_SECONDS and peak * 1e9 < GOAL_BYTES
    if args.videos >= 1_000_000:
        what = "combine and the whole command" if args.command else "combine"
        print(f"goal ({what} < {GOAL_SECONDS:.0f} s and peak RSS < 2 GB): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
