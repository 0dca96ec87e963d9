"""Benchmark: ``optimizer.step()`` alone for the default NeXtVLAD (89M parameters): allocator peak and time.

    python benchmarks/bench_optimizer_step.py         # both clip modes x both L2 scopes, the three updates
    python benchmarks/bench_optimizer_step.py --rounds 3 --json results.json

Gradients come from a backward over a tiny batch (2 videos, 5 frames): their values do not matter for
memory or time, except that the hidden FC's gradient norm is above the clipping limit of 1.0 (so per-tensor
clipping takes paddle's kernel for it in place). The second step is measured for memory (Adam's moments
exist), then the median wall time of 7 more steps. Printed per combination: the step's allocator peak above
what lived before it (weights, gradients, moments) and its time, for paddle's clip and L2 term, the in-place
ones with paddle's adam kernel (``zoo.engine.train.update.InPlaceClipDecay``) and the fused update
(``FusedAdam``, ``train.fused_update``, the trainer's default); times as ratios to paddle's in the same run.
Each measurement runs in its own process, the three updates alternating ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(mode: str, scope: str, kind: str) -> dict:
    import statistics
    import time

    import numpy as np

    import zoo
    from zoo.engine.runtime import init_paddle
    from zoo.engine.settings import TrainConfig
    from zoo.engine.train.optimizer import build_optimizer

    paddle = init_paddle("cpu")
    paddle.seed(0)
    model = zoo.build_model("nextvlad", preset="yt8m", num_classes=3862)
    model.train()
    recipe = TrainConfig(gradient_clip_mode=mode, l2_scope=scope, fused_update=kind == "fused")
    optimizer = build_optimizer(model, recipe, in_place=kind != "paddle")
    rng = np.random.default_rng(0)

    def backward() -> None:
        batch = {
            name: paddle.to_tensor(rng.uniform(-2, 2, (2, 5, d)).astype("float32"))
            for name, d in model.features.items()
        }
        batch["mask"] = paddle.ones([2, 5])
        batch["num_frames"] = paddle.to_tensor(np.array([5, 5]))
        model(batch).sum().backward()

    backward()
    optimizer.step()
    optimizer.clear_grad()
    backward()
    stat = paddle.base.core
    stat.host_memory_stat_reset_peak_value("Allocated", 0)
    before = stat.host_memory_stat_current_value("Allocated", 0)
    optimizer.step()
    peak = stat.host_memory_stat_peak_value("Allocated", 0)
    times = []
    for _ in range(7):  # the same gradients each time (paddle's in-place clip rescales them: same work)
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {
        "clip_mode": mode,
        "l2_scope": scope,
        "update": kind,
        "before_mb": before / 2**20,
        "step_peak_above_mb": (peak - before) / 2**20,
        "step_seconds": statistics.median(times),
    }


KINDS = ("paddle", "inplace", "fused")


def main() -> int:
    import statistics

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1, help="processes per update, alternating")
    parser.add_argument("--json", help="also write every measurement here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    results = []
    for mode in ("global", "per_tensor"):
        for scope in ("all", "classifier"):
            rows: dict[str, list[dict]] = {kind: [] for kind in KINDS}
            for _ in range(max(1, args.rounds)):
                for kind in KINDS:
                    command = [sys.executable, __file__, "--child", mode, scope, kind]
                    done = subprocess.run(command, capture_output=True, text=True, check=False)
                    if done.returncode != 0:
                        print(f"{mode} {scope} {kind} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                        return 1
                    rows[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
            results += [row for kind in KINDS for row in rows[kind]]
            peak = {kind: max(r["step_peak_above_mb"] for r in rows[kind]) for kind in KINDS}
            seconds = {kind: statistics.median(r["step_seconds"] for r in rows[kind]) for kind in KINDS}
            print(
                f"clip {mode:<10} L2 {scope:<10} optimizer.step() peak above weights + gradients + moments "
                f"(before: {rows['paddle'][0]['before_mb']:.0f} MB), time: "
                + ", ".join(
                    f"{kind} {peak[kind]:.0f} MB {seconds[kind]:.3f} s "
                    f"({seconds['paddle'] / seconds[kind]:.2f}x)"
                    for kind in KINDS
                ),
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
