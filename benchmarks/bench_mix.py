"""Benchmark: mix-nextvlad against nextvlad at the reference sizes, training step and inference (issue 13).

    python benchmarks/bench_mix.py                      # full models, batch 16 x 300 frames, 2 rounds each
    python benchmarks/bench_mix.py --size sample --steps 5 --rounds 3

Both models are built from their bundled configs (``--size full``: the main sections, 3862 classes, rgb 1024
+ audio 128; ``sample``: the ``sample`` sections, 200 classes). A training step is the engine's: forward, the
model's own loss (mix-nextvlad: mixture + branch cross-entropies + the KL term; nextvlad: sigmoid
cross-entropy), backward, Adam. Inference is the forward pass in eval mode without gradients. Features are
random (uniform in [-2, 2]) with ~3 labels per video, every video ``--frames`` frames.

Each (model, round) runs in its own process, alternating the models (A B A B ...) so a busy machine slows
both alike; per model the median over its rounds counts and the peak RSS is its processes' largest.
Printed: parameters, train and inference videos/s, peak RSS, and mix-nextvlad's cost relative to nextvlad.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODELS = ("nextvlad", "mix-nextvlad")


def child(model: str, size: str, batch: int, frames: int, steps: int) -> dict[str, float]:
    import paddle

    from zoo.config import bundled_config, load_config
    from zoo.engine.build import build_model, count_parameters
    from zoo.engine.feed import to_tensors
    from zoo.engine.runtime import init_paddle
    from zoo.engine.train.losses import training_loss
    from zoo.engine.train.optimizer import build_optimizer

    init_paddle("cpu")
    cfg = load_config(bundled_config(model), [], model=model)
    if size == "sample":  # the sample section at the sample data's 200 classes
        patch = {section: dict(values) for section, values in cfg.sample.items()}
        patch.setdefault("dataset", {})["num_classes"] = 200
        cfg = cfg.with_overrides(patch, "the sample section")
    paddle.seed(0)
    net = build_model(cfg)
    optimizer = build_optimizer(net, cfg.train)
    rng = np.random.default_rng(0)
    num_classes = cfg.dataset.num_classes
    batch_arrays = {
        name: rng.uniform(-2, 2, (batch, frames, dim)).astype(np.float32)
        for name, dim in cfg.dataset.features.items()
    }
    batch_arrays["mask"] = np.ones((batch, frames), np.float32)
    batch_arrays["num_frames"] = np.full(batch, frames, np.int64)
    labels = np.zeros((batch, num_classes), np.float32)
    labels[np.arange(batch)[:, None], rng.integers(0, num_classes, (batch, 3))] = 1
    inputs = to_tensors(batch_arrays, cfg.dataset.features)
    target = paddle.to_tensor(labels)

    def train_step() -> None:
        loss = training_loss(net, net(inputs), inputs, target)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()

    net.train()
    train_step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - start)
    net.eval()
    with paddle.no_grad():
        net(inputs)
        infer = []
        for _ in range(steps):
            start = time.perf_counter()
            net(inputs)
            infer.append(time.perf_counter() - start)
    return {
        "parameters": count_parameters(net),
        "train_videos_per_s": batch / statistics.median(times),
        "inference_videos_per_s": batch / statistics.median(infer),
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=["full", "sample"], default="full")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per model, alternating")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.size, args.batch_size, args.frames, args.steps)))
        return 0
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODELS}
    for _ in range(args.rounds):
        for model in MODELS:
            cmd = [sys.executable, __file__, "--child", model, "--size", args.size]
            cmd += [
                "--batch-size",
                str(args.batch_size),
                "--frames",
                str(args.frames),
                "--steps",
                str(args.steps),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
            runs[model].append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary = {}
    for model, rows in runs.items():
        summary[model] = {
            "parameters": rows[0]["parameters"],
            "train_videos_per_s": statistics.median(r["train_videos_per_s"] for r in rows),
            "inference_videos_per_s": statistics.median(r["inference_videos_per_s"] for r in rows),
            "peak_rss_GB": max(r["peak_rss_GB"] for r in rows),
            "rounds": rows,
        }
    base, mix = summary["nextvlad"], summary["mix-nextvlad"]
    summary["cost_ratio"] = {
        "train": base["train_videos_per_s"] / mix["train_videos_per_s"],
        "inference": base["inference_videos_per_s"] / mix["inference_videos_per_s"],
    }
    print(
        f"{args.size} size, batch {args.batch_size} x {args.frames} frames, {args.rounds} rounds x {args.steps} steps"
    )
    print(f"{'model':14s} {'params':>12s} {'train v/s':>10s} {'infer v/s':>10s} {'peak RSS GB':>12s}")
    for model in MODELS:
        s = summary[model]
        print(
            f"{model:14s} {s['parameters']:12,d} {s['train_videos_per_s']:10.2f} "
            f"{s['inference_videos_per_s']:10.2f} {s['peak_rss_GB']:12.2f}"
        )
    ratio = summary["cost_ratio"]
    print(
        f"mix-nextvlad costs {ratio['train']:.2f}x nextvlad per training video, {ratio['inference']:.2f}x per inference video"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
