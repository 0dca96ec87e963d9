"""Benchmark: activation memory of one NeXtVLAD branch's training forward + backward, per formulation.

    python benchmarks/bench_branch_memory.py                 # rgb sizes: D=1024, K=128, G=8, B=32, T=300

A whole training step's peak is set by the optimizer's update of the largest parameter (the same for both
forms), so the branch's own activations are measured here in isolation: paddle's host allocator peak above
what was allocated before the forward (the input, weights and gradients), after a warm-up, one process per
form. Also printed: what the forward keeps for backward.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(formulation: str, batch: int, frames: int, size: int) -> dict:
    import numpy as np

    from zoo.engine.runtime import init_paddle

    paddle = init_paddle("cpu")
    from zoo_nextvlad.model import NeXtVLADLayer

    stat = paddle.base.core
    paddle.seed(0)
    layer = NeXtVLADLayer(size, 128, 8, 2, formulation)
    layer.train()
    x = paddle.to_tensor(np.random.default_rng(0).uniform(-2, 2, (batch, frames, size)).astype("float32"))
    mask = paddle.ones([batch, frames])
    weights = paddle.randn([batch, layer.output_size])
    for _ in range(2):  # the second pass counts: gradients allocated, kernels chosen
        layer.clear_gradients()
        stat.host_memory_stat_reset_peak_value("Allocated", 0)
        base = stat.host_memory_stat_current_value("Allocated", 0)
        out = layer(x, mask)
        kept = stat.host_memory_stat_current_value("Allocated", 0) - base
        (out * weights).sum().backward()
        peak = stat.host_memory_stat_peak_value("Allocated", 0) - base
        del out
    return {"formulation": formulation, "kept_after_forward_mb": kept / 2**20, "peak_mb": peak / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--feature-size", type=int, default=1024)
    parser.add_argument("--formulation", help=argparse.SUPPRESS)  # child process: one form
    args = parser.parse_args()
    if args.formulation:
        print(json.dumps(measure(args.formulation, args.batch_size, args.frames, args.feature_size)))
        return 0
    for form in ("expanded", "factored"):
        command = [sys.executable, __file__, "--formulation", form, "--batch-size", str(args.batch_size)]
        command += ["--frames", str(args.frames), "--feature-size", str(args.feature_size)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{form:<8} B={args.batch_size} T={args.frames} D={args.feature_size}: kept for backward "
            f"{r['kept_after_forward_mb']:6.0f} MB, peak of forward + backward {r['peak_mb']:6.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
