"""Benchmark: one NeXtVLAD training step on CPU against this machine's fp32 matmul peak, same run.

    python benchmarks/bench_train_step.py                   # the cases below, 3 timed steps each (~1-2 min)
    python benchmarks/bench_train_step.py --steps 5 --json results.json
    python benchmarks/bench_train_step.py --cases full-300 sample
    python benchmarks/bench_train_step.py --cases full-300 --formulations expanded factored --rounds 3
    python benchmarks/bench_train_step.py --cases full-300 --optimizers paddle inplace --steps 2

A training step is forward + sigmoid cross-entropy (summed over classes, mean over the batch) + backward +
Adam, on random features (uniform in [-2, 2], the dequantized range) with ~3 labels per video. Cases:

- ``full-300``: the default model (89,088,550 parameters, 3862 classes), batch 32, every video 300 frames;
- ``padded-300``: the same with 150-300 valid frames per video (padded to 300, as the reader batches them);
- ``full-100``: the default model, batch 32, 100 frames;
- ``sample``: the ``sample.model`` scale of configs/nextvlad.yaml (what ``zoo run nextvlad`` trains) with
  200 classes and 10-60 frames per video, batch 32.

The reference is ``paddle.matmul`` of two 2048 x 2048 fp32 matrices (best of several runs, measured right
before and right after each case's steps in the same process; the larger value counts). Achieved GFLOP/s
counts the model's matmul FLOPs analytically (``NeXtVLAD.flops``: forward + backward, over all T frames
the step computes); elementwise work is not counted, so 100% is not reachable. Goal: ``full-300`` at 50% of
the peak or better. Each case runs in its own process so its peak RSS is its own.

``--optimizers plain paddle inplace`` compares the Adam of the step (alternating like the formulations):
``plain`` is Adam alone (the default); ``paddle`` and ``inplace`` are the engine's optimizer with the default
recipe (clipping at 1.0, ``--clip-mode`` global or per_tensor, L2 1e-5 on every parameter;
``zoo.engine.train.optimizer.build_optimizer``), with paddle's
own clip and L2 term (a second copy of every gradient during the update) or the in-place ones
(``zoo.engine.train.update``, with paddle's adam kernel), both with paddle's zeroed gradients between steps
(``clear_grad()``); ``engine`` is the trainer's step: clip factor, L2 term and Adam in one fused pass
(``train.fused_update``) and gradients freed between steps (``step_peak_total_mb`` compares these: what
lives between steps differs by the gradients).

``--formulations expanded factored`` compares the two forms of the NeXtVLAD branch (``model.formulation``):
each case runs ``--rounds`` times per form, alternating the forms (A B A B ...) so a busy machine slows both
alike; per form the median step over all its rounds counts, the peak RSS is the largest of its processes,
and the speed ratio of each form against the first one listed is printed: median steps (wall), best steps (wall)
and median CPU seconds per step. Peak memory: the process's peak RSS and the peak of paddle's host allocator
(``peak_allocated_mb``: live tensors only, so the forms' difference is not blurred by allocator caching),
a steady-state step's allocator peak (``step_peak_total_mb``) and its part above what lives between steps
(``step_peak_allocated_mb``: activations and temporaries; the weights, gradients and Adam moments are the same
for both forms). Both forms count their own FLOPs
(``NeXtVLAD.flops(frames, batch_size)``, the factored form's once-per-step product matrices included).

Timings are wall-clock medians. On a shared machine (other jobs on the same cores) the wall clock of both the
reference and the model suffers unevenly, so the fraction is also given per CPU second: the model's FLOPs
per CPU second of the step against the matmul's FLOPs per CPU second (robust to time slicing, not to cache
sharing). The load average at the end of each case is printed to judge the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = ("full-300", "padded-300", "full-100", "sample")
OPTIMIZERS = ("plain", "paddle", "inplace", "engine")
REPO = Path(__file__).resolve().parent.parent


def matmul_peak(paddle, n: int = 2048, repeats: int = 8) -> tuple[float, float]:
    """Best fp32 GFLOP/s of ``paddle.matmul`` on two n x n matrices: per wall second, per CPU second."""
    a = paddle.randn([n, n], dtype="float32")
    b = paddle.randn([n, n], dtype="float32")
    paddle.matmul(a, b).numpy()
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        paddle.matmul(a, b).numpy()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    flop = 2.0 * n**3
    return flop / wall / 1e9, flop / cpu / 1e9


def sample_options() -> dict:
    import yaml

    config = yaml.safe_load((REPO / "configs" / "nextvlad.yaml").read_text())
    model = {k: v for k, v in config["model"].items() if k != "name"}
    model.update(config.get("sample", {}).get("model") or {})
    return model


def run_case(
    case: str,
    steps: int,
    batch_size: int,
    threads: int | None,
    formulation: str | None,
    optimizer_kind: str = "plain",
    clip_mode: str = "global",
    warmup: int = 3,
) -> dict:
    import numpy as np

    import zoo
    from zoo.engine.build import count_parameters
    from zoo.engine.runtime import cpu_count, init_paddle

    paddle = init_paddle("cpu", threads=threads)
    import paddle.nn.functional as F

    rng = np.random.default_rng(0)
    if case == "sample":
        options, classes, lengths = sample_options(), 200, (10, 60)
    else:
        frames = int(case.split("-")[1])
        options, classes = {}, 3862
        lengths = (150, 300) if case.startswith("padded") else (frames, frames)
    paddle.seed(0)
    if formulation:
        options["formulation"] = formulation
    model = zoo.build_model("nextvlad", preset="yt8m", num_classes=classes, **options)
    model.train()
    if optimizer_kind == "plain":
        optimizer = paddle.optimizer.Adam(learning_rate=2e-4, parameters=model.parameters())
    else:  # the engine's: the default recipe's clipping and L2 term, paddle's own or in place
        from zoo.engine.settings import TrainConfig
        from zoo.engine.train.optimizer import build_optimizer

        # inplace: InPlaceClipDecay and paddle's adam kernel; engine: the trainer's (the fused update)
        recipe = TrainConfig(gradient_clip_mode=clip_mode, fused_update=optimizer_kind == "engine")
        optimizer = build_optimizer(model, recipe, in_place=optimizer_kind != "paddle")
    free_gradients = optimizer_kind == "engine"  # as the trainer does (one process): freed, not zeroed

    def make_batch() -> tuple[dict, object, int, int]:
        n = rng.integers(lengths[0], lengths[1] + 1, batch_size)
        t = int(n.max())
        mask = (np.arange(t)[None, :] < n[:, None]).astype(np.float32)
        batch = {
            name: paddle.to_tensor(
                rng.uniform(-2, 2, (batch_size, t, d)).astype(np.float32) * mask[..., None]
            )
            for name, d in model.features.items()
        }
        batch["mask"] = paddle.to_tensor(mask)
        batch["num_frames"] = paddle.to_tensor(n.astype(np.int64))
        labels = np.zeros((batch_size, classes), np.float32)
        for row in labels:
            row[rng.choice(classes, 3, replace=False)] = 1.0
        return batch, paddle.to_tensor(labels), t, int(n.sum())

    def step(batch: dict, labels) -> float:
        logits = model(batch)
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(axis=1).mean()
        loss.backward()
        optimizer.step()
        optimizer.clear_grad(set_to_zero=not free_gradients)
        return float(loss)

    batches = [make_batch() for _ in range(steps + 1)]
    for _ in range(max(1, warmup)):
        # kernel selection, Adam state allocation, and the heap growing to the size the later steps reuse:
        # the first steps page their memory in (minor faults per step of the factored reference step: 309k,
        # 103k, 19k, then none but an occasional 19k)
        step(*batches[0][:2])
    peak_before = matmul_peak(paddle)
    wall, cpu, flops, useful = [], [], [], []
    per_video = model.flops(0, batch_size)["train"]  # what does not grow with the frames
    per_frame = model.flops(1, batch_size)["train"] - per_video  # the counts are linear in the frames
    stat = paddle.base.core
    step_peaks, step_totals, minor_faults = [], [], []
    for batch, labels, t, valid in batches[1:]:
        stat.host_memory_stat_reset_peak_value("Allocated", 0)
        before = stat.host_memory_stat_current_value("Allocated", 0)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start, start_cpu = time.perf_counter(), time.process_time()
        loss = step(batch, labels)
        minor_faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        step_totals.append(stat.host_memory_stat_peak_value("Allocated", 0) / 2**20)
        step_peaks.append(step_totals[-1] - before / 2**20)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        flops.append(model.flops(t, batch_size)["train"] * batch_size)
        useful.append(per_video * batch_size + per_frame * valid)  # FLOPs had only valid frames been computed
        if not np.isfinite(loss):
            raise RuntimeError(f"{case}: non-finite loss {loss}")
    peak_after = matmul_peak(paddle)
    peak, peak_cpu = max(peak_before[0], peak_after[0]), max(peak_before[1], peak_after[1])
    seconds = statistics.median(wall)
    achieved = statistics.median(f / w for f, w in zip(flops, wall))
    achieved_cpu = statistics.median(f / c for f, c in zip(flops, cpu))
    return {
        "case": case,
        "formulation": model.config.formulation,
        "optimizer": optimizer_kind,
        "clip_mode": clip_mode,
        "batch_size": batch_size,
        "frames": f"{lengths[0]}-{lengths[1]}" if lengths[0] != lengths[1] else str(lengths[0]),
        "parameters": count_parameters(model),
        "threads": threads or cpu_count(),
        "step_seconds": seconds,
        "step_seconds_all": wall,
        "step_cpu_seconds": statistics.median(cpu),
        "step_cpu_seconds_all": cpu,
        "warmup_steps": max(1, warmup),
        "minor_page_faults_all": minor_faults,
        "videos_per_second": batch_size / seconds,
        "gflop_per_step": statistics.median(flops) / 1e9,
        "gflops": achieved / 1e9,
        "useful_gflops": statistics.median(u / w for u, w in zip(useful, wall)) / 1e9,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": achieved / 1e9 / peak,
        "matmul_peak_gflop_per_cpu_second": peak_cpu,
        "fraction_of_peak_cpu_time": achieved_cpu / 1e9 / peak_cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # what paddle's host allocator held at most (tensors, not the allocator's cache or the heap's slack)
        "peak_allocated_mb": paddle.base.core.host_memory_stat_peak_value("Allocated", 0) / 2**20,
        # a steady-state step's own peak above what lives between steps (weights, gradients, Adam moments):
        # the activations and temporaries of forward, backward and the update
        "step_peak_allocated_mb": max(step_peaks),
        # the same peak in full (weights, Adam state and gradients included): comparable when the gradients
        # live between steps (zeroed) and when they do not (freed)
        "step_peak_total_mb": max(step_totals),
        "load_average": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (at least 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="paddle CPU threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--formulations",
        nargs="+",
        choices=("factored", "expanded"),
        default=None,
        help="NeXtVLAD branch forms to compare, alternating (default: the model's default only)",
    )
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=OPTIMIZERS,
        default=["plain"],
        help="Adam variants to compare, alternating like the formulations (default: plain)",
    )
    parser.add_argument(
        "--clip-mode",
        choices=("global", "per_tensor"),
        default="global",
        help="train.gradient_clip_mode of the engine's optimizers (paddle, inplace, engine)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="processes per case and formulation")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # child process: one case
    parser.add_argument("--formulation", help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", default="plain", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        row = run_case(
            args.case,
            args.steps,
            args.batch_size,
            args.threads,
            args.formulation,
            args.optimizer,
            args.clip_mode,
            args.warmup,
        )
        print(json.dumps(row))
        return 0

    forms = [(f, o) for f in (args.formulations or [None]) for o in args.optimizers]
    results = []
    for case in args.cases:
        runs: dict[tuple, list[dict]] = {form: [] for form in forms}
        for _ in range(args.rounds):
            for form, opt in forms:
                command = [sys.executable, __file__, "--case", case, "--steps", str(args.steps)]
                command += ["--warmup", str(args.warmup)]
                command += ["--batch-size", str(args.batch_size)]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                if form:
                    command += ["--formulation", form]
                command += ["--optimizer", opt, "--clip-mode", args.clip_mode]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{case} {form or ''} {opt} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                    return 1
                runs[form, opt].append(json.loads(done.stdout.strip().splitlines()[-1]))
        merged = {form: _merge(rounds) for form, rounds in runs.items()}
        first = merged[forms[0]]
        for r in merged.values():
            r["speed_vs_first"] = first["step_seconds"] / r["step_seconds"]
            r["speed_vs_first_best"] = min(first["step_seconds_all"]) / min(r["step_seconds_all"])
            r["speed_vs_first_cpu"] = first["step_cpu_seconds"] / r["step_cpu_seconds"]
            results.append(r)
            ratio = (
                f"  {r['speed_vs_first']:.2f}x {first['formulation']} {first['optimizer']} (best steps "
                f"{r['speed_vs_first_best']:.2f}x, CPU time {r['speed_vs_first_cpu']:.2f}x)"
                if len(forms) > 1
                else ""
            )
            print(
                f"{r['case']:<11} {r['formulation']:<8} {r['optimizer']:<7} B={r['batch_size']} T={r['frames']:<7} "
                f"{r['step_seconds']:6.2f} s/step "
                f"(cpu {r['step_cpu_seconds']:6.2f} s)  {r['videos_per_second']:7.1f} videos/s  "
                f"{r['gflop_per_step']:5.0f} GFLOP  "
                f"{r['gflops']:6.1f} GFLOP/s of {r['matmul_peak_gflops']:6.1f} peak "
                f"= {100 * r['fraction_of_peak']:5.1f}% "
                f"(per CPU second: {100 * r['fraction_of_peak_cpu_time']:5.1f}%)  "
                f"peak RSS {r['peak_rss_mb']:6.0f} MB (allocated {r['peak_allocated_mb']:6.0f} MB, "
                f"step {r['step_peak_total_mb']:6.0f} MB, {r['step_peak_allocated_mb']:5.0f} MB above what lives "
                f"between steps)  "
                f"load {r.get('load_averages', r['load_average'])}{ratio}",
                flush=True,
            )
    if args.json:
        from zoo.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


def _merge(rounds: list[dict]) -> dict:
    """One row from several processes of a case: median over all their steps, largest peak RSS."""
    if len(rounds) == 1:
        return rounds[0]
    wall = [w for r in rounds for w in r["step_seconds_all"]]
    row = dict(rounds[0])
    seconds = statistics.median(wall)
    for key in ("matmul_peak_gflops", "matmul_peak_gflop_per_cpu_second", "load_average"):
        row[key] = statistics.median(r[key] for r in rounds)
    cpu = [c for r in rounds for c in r["step_cpu_seconds_all"]]
    row.update(
        rounds=len(rounds),
        step_seconds=seconds,
        step_seconds_all=wall,
        step_cpu_seconds=statistics.median(cpu),
        step_cpu_seconds_all=cpu,
        videos_per_second=row["batch_size"] / seconds,
        gflops=row["gflop_per_step"] / seconds,
        fraction_of_peak=row["gflop_per_step"] / seconds / row["matmul_peak_gflops"],
        fraction_of_peak_cpu_time=statistics.median(r["fraction_of_peak_cpu_time"] for r in rounds),
        useful_gflops=statistics.median(r["useful_gflops"] for r in rounds),
        peak_rss_mb=max(r["peak_rss_mb"] for r in rounds),
        peak_allocated_mb=max(r["peak_allocated_mb"] for r in rounds),
        step_peak_allocated_mb=max(r["step_peak_allocated_mb"] for r in rounds),
        step_peak_total_mb=max(r["step_peak_total_mb"] for r in rounds),
        load_averages=[round(r["load_average"], 1) for r in rounds],
    )
    return row


if __name__ == "__main__":
    sys.exit(main())
