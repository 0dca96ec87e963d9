"""Benchmark: the allocator peak of ``optimizer.step()`` alone for the default NeXtVLAD (89M parameters).

    python benchmarks/bench_optimizer_step.py              # both clip modes x both L2 scopes, paddle's and in place

Gradients come from a backward over a tiny batch (2 videos, 5 frames): their values do not matter for
memory, except that the hidden FC's gradient norm is above the clipping limit of 1.0 (so per-tensor clipping
takes paddle's kernel for it). The second step is measured (Adam's moments exist). Printed per combination:
the step's allocator peak above what lived before it (weights, gradients, moments), paddle's clip and L2
term against the in-place ones (``zoo.engine.gradclip``). Each combination runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(mode: str, scope: str, in_place: bool) -> dict:
    import numpy as np

    import zoo
    from zoo.config import TrainConfig
    from zoo.engine.optim import build_optimizer
    from zoo.engine.runtime import init_paddle

    paddle = init_paddle("cpu")
    paddle.seed(0)
    model = zoo.build_model("nextvlad", preset="yt8m", num_classes=3862)
    model.train()
    recipe = TrainConfig(gradient_clip_mode=mode, l2_scope=scope)
    optimizer = build_optimizer(model, recipe, in_place=in_place)
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
    return {
        "clip_mode": mode,
        "l2_scope": scope,
        "in_place": in_place,
        "before_mb": before / 2**20,
        "step_peak_above_mb": (peak - before) / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, scope, in_place = args.child
        print(json.dumps(measure(mode, scope, in_place == "1")))
        return 0
    for mode in ("global", "per_tensor"):
        for scope in ("all", "classifier"):
            rows = []
            for in_place in ("0", "1"):
                command = [sys.executable, __file__, "--child", mode, scope, in_place]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{mode} {scope} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                    return 1
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            old, new = rows
            print(
                f"clip {mode:<10} L2 {scope:<10} optimizer.step() peak above weights + gradients + moments: "
                f"paddle's {old['step_peak_above_mb']:5.0f} MB, in place {new['step_peak_above_mb']:5.0f} MB "
                f"(before: {old['before_mb']:.0f} MB)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
