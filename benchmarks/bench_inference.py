"""Benchmark: inference videos/s of NeXtVLAD in dygraph against its Paddle Inference and ONNX exports.

    python benchmarks/bench_inference.py                         # small and default NeXtVLAD, batch 32
    python benchmarks/bench_inference.py --sizes default --rounds 5 --json results.json

For each model size, one model with trained-looking weights (BatchNorm statistics moved off their initial
values) is exported with ``zoo.engine.export.tracing.export_model`` and three scorers get the same batches of 32
videos with 150-300 real frames of YouTube-8M-sized features (rgb 1024, audio 128, 3862 classes):

- ``dygraph``: the paddle model in eval mode (``zoo.engine.infer.loops.dygraph_scorer``; the REFERENCE),
- ``fp32``: the export through Paddle Inference on CPU, paddle's own kernels (what ``zoo predict`` uses),
- ``fp32-onednn``: the same on oneDNN fp32 (not the default; measured to show why),
- ``bf16``: the same export with oneDNN bf16 (skipped where the CPU cannot run it),
- ``onnxruntime``: ``zoo export --format onnx`` of the same model through ONNX Runtime on CPU, fp32 (skipped
  when the onnx extra is not installed),
- ``fp32-custom-ops``: ``zoo export --custom-ops`` of the same model through Paddle Inference: the program
  calls NeXtVLAD's one-pass assignment kernel as a Paddle custom operator (skipped when it cannot be built).

With ``--expanded`` (the default) the same weights are also built and exported with
``model.formulation: expanded`` (PaddleVideo's order, the form before the factored one):

- ``dygraph-expanded``, ``fp32-expanded``, ``onnxruntime-expanded``: the old form, for the factored/expanded
  ratios.

``dygraph-ops`` is the factored model in dygraph without the C inference kernel (``zoo_nextvlad/_assign.c``:
softmax, attention and mask in one pass), through paddle's ops as the export runs them: the kernel's share.

``--serving``: the int8 and PyTorch rows instead (see benchmarks/serving_peers.py).

Each batch goes through every scorer in turn and each scorer's time is summed per round; the median round
counts (and the best is shown), so a busy machine slows them alike. Also reported: the factored/expanded
ratio of every round (paired: the same batches back to back), the ratio of videos per CPU second (the
process's CPU time, all threads; steadier than wall time when other jobs share the cores) and the load
average. ``--scorers`` limits the run to some scorers (the others are still exported, not timed). Reported: videos/s, speed against
dygraph, and the largest probability difference from dygraph on the timed batches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import zoo
from zoo.errors import ZooError

SIZES: dict[str, dict[str, Any]] = {
    "small": {"cluster_size": 32, "groups": 8, "expansion": 2, "hidden_size": 512, "gating_reduction": 8},
    "default": {},  # PaddleVideo's NeXtVLAD: K=128, G=8, expansion 2, hidden 2048 (about 89M parameters)
}


def batches(
    count: int, batch_size: int, max_frames: int, features: dict[str, int], seed: int = 0
) -> list[dict]:
    """Batches as the data pipeline yields them: dequantized-range features, zero padding, mask, counts."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        lengths = rng.integers(max_frames // 2, max_frames + 1, batch_size)
        t = int(lengths.max())
        mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
        batch = {
            name: rng.uniform(-2, 2, (batch_size, t, d)).astype(np.float32) * mask[..., None]
            for name, d in features.items()
        }
        batch.update(mask=mask, num_frames=lengths.astype(np.int64))
        out.append(batch)
    return out


def without_kernel(scorer: Any) -> Any:
    """``scorer`` with NeXtVLAD's C inference kernel switched off (paddle's ops instead)."""
    from zoo_nextvlad import ops

    def score(batch: dict) -> np.ndarray:
        kernel, ops.FUSED_ASSIGN = ops.FUSED_ASSIGN, None
        try:
            return scorer(batch)
        finally:
            ops.FUSED_ASSIGN = kernel

    return score


def size_config(size: str, max_frames: int, **model: Any) -> Any:
    from zoo.config import load_config

    return load_config(
        raw={
            "dataset": {
                "preset": "yt8m",
                "num_classes": 3862,
                "features": {"rgb": 1024, "audio": 128},
                "max_frames": max_frames,
            },
            "model": {"name": "nextvlad", **SIZES[size], **model},
        },
        source=f"bench {size}",
    )


def bench_size(size: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from zoo.engine.build import count_parameters
    from zoo.engine.export.predictor import bf16_support, load_exported
    from zoo.engine.export.tracing import export_model
    from zoo.engine.infer.loops import dygraph_scorer
    from zoo.engine.runs.checkpoint import save_weights
    from zoo.engine.runs.weights import apply_weights, read_weights
    from zoo.testing import trained_model

    cfg = size_config(size, args.max_frames)
    model = trained_model(cfg)
    weights = workdir / f"{size}.safetensors"
    save_weights(weights, model)
    t0 = time.perf_counter()
    out = export_model(cfg, str(weights), workdir / size)
    export_s = time.perf_counter() - t0
    scorers = {
        "dygraph": dygraph_scorer(model, cfg.dataset.features),
        "fp32": load_exported(out).predict,
        "fp32-onednn": load_exported(out, onednn=True).predict,
    }
    bf16_ok, bf16_why = bf16_support()
    if bf16_ok:
        scorers["bf16"] = load_exported(out, precision="bf16").predict
    if args.expanded:
        old_cfg = size_config(size, args.max_frames, formulation="expanded")
        old_model = trained_model(old_cfg)
        apply_weights(old_model, read_weights(str(weights)), strict=True)
        old_model.eval()
        old_out = export_model(old_cfg, str(weights), workdir / f"{size}-expanded")
        scorers["dygraph-expanded"] = dygraph_scorer(old_model, cfg.dataset.features)
        scorers["fp32-expanded"] = load_exported(old_out).predict
    scorers["dygraph-ops"] = without_kernel(scorers["dygraph"])
    custom_why = "measured"
    try:
        custom_out = export_model(cfg, str(weights), workdir / f"{size}-custom-ops", custom_ops=True)
    except ZooError as exc:
        custom_why = f"skipped: {exc}"
    else:
        scorers["fp32-custom-ops"] = load_exported(custom_out).predict
    onnx_export_s, onnx_why = None, "measured"
    try:
        from zoo.engine.export.onnx import converter_versions, export_onnx

        converter_versions()
    except (ImportError, ZooError) as exc:
        onnx_why = f"skipped: {exc}"
    else:
        t0 = time.perf_counter()
        onnx_out = export_onnx(cfg, str(weights), workdir / f"{size}-onnx")
        onnx_export_s = round(time.perf_counter() - t0, 1)
        scorers["onnxruntime"] = load_exported(onnx_out).predict
        if args.expanded:
            old_onnx = export_onnx(old_cfg, str(weights), workdir / f"{size}-onnx-expanded")
            scorers["onnxruntime-expanded"] = load_exported(old_onnx).predict
    if args.scorers:
        unknown = sorted(set(args.scorers) - set(scorers))
        if unknown:
            raise SystemExit(
                f"--scorers: {', '.join(unknown)} not available here (have: {', '.join(scorers)})"
            )
        scorers = {
            name: scorer for name, scorer in scorers.items() if name in args.scorers or name == "dygraph"
        }
    data = batches(args.batches, args.batch_size, args.max_frames, cfg.dataset.features)
    for scorer in scorers.values():  # warm-up: oneDNN primitive creation, allocator growth
        scorer(data[0])
    times: dict[str, list[float]] = {name: [] for name in scorers}
    cpu_times: dict[str, list[float]] = {name: [] for name in scorers}
    reference = [scorers["dygraph"](b) for b in data]
    diffs = {name: 0.0 for name in scorers}
    for _ in range(args.rounds):
        spent = dict.fromkeys(scorers, 0.0)
        spent_cpu = dict.fromkeys(scorers, 0.0)
        for batch, expected in zip(data, reference):
            for name, scorer in scorers.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                probs = scorer(batch)
                spent[name] += time.perf_counter() - start
                spent_cpu[name] += time.process_time() - start_cpu
                diffs[name] = max(diffs[name], float(np.abs(probs - expected).max()))
        for name, seconds in spent.items():
            times[name].append(seconds)
            cpu_times[name].append(spent_cpu[name])
    videos = args.batches * args.batch_size
    speed = {name: videos / statistics.median(t) for name, t in times.items()}
    best = {name: videos / min(t) for name, t in times.items()}
    cpu_speed = {name: videos / statistics.median(t) for name, t in cpu_times.items()}
    # each factored scorer and the expanded one it is compared with (the custom-ops export: the plain one's)
    references = {form: f"{form}-expanded" for form in ("dygraph", "fp32", "onnxruntime")}
    references["fp32-custom-ops"] = "fp32-expanded"
    pairs = {form: ref for form, ref in references.items() if form in speed and ref in speed}
    factored_vs_expanded = {form: round(speed[form] / speed[ref], 2) for form, ref in pairs.items()}
    # per round: the same batches through both forms back to back, so a round's ratio is a paired one
    round_ratios = {
        form: sorted(round(old / new, 2) for new, old in zip(times[form], times[ref]))
        for form, ref in pairs.items()
    }
    cpu_ratios = {form: round(cpu_speed[form] / cpu_speed[ref], 2) for form, ref in pairs.items()}
    return {
        "size": size,
        "factored_vs_expanded": factored_vs_expanded,
        "factored_vs_expanded_per_round": round_ratios,
        "factored_vs_expanded_cpu": cpu_ratios,
        "load_average": round(os.getloadavg()[0], 1),
        "videos_per_cpu_s": {k: round(v, 2) for k, v in cpu_speed.items()},
        "parameters": count_parameters(model),
        "export_seconds": round(export_s, 1),
        "frames": json.loads((out / "metadata.json").read_text())["frames"],
        "videos_per_s": {k: round(v, 2) for k, v in speed.items()},
        "best_videos_per_s": {k: round(v, 2) for k, v in best.items()},
        "vs_dygraph": {k: round(v / speed["dygraph"], 2) for k, v in speed.items()},
        "max_abs_diff_vs_dygraph": diffs,
        "bf16": "measured" if bf16_ok else f"skipped: {bf16_why}",
        "onnxruntime": onnx_why,
        "custom_ops": custom_why,
        "onnx_export_seconds": onnx_export_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per scorer (the median counts)")
    parser.add_argument("--max-frames", type=int, default=300)
    parser.add_argument(
        "--expanded",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the expanded formulation (dygraph and fp32 export) for the factored/expanded ratios",
    )
    parser.add_argument(
        "--scorers",
        nargs="+",
        metavar="NAME",
        help="time only these scorers (dygraph always: the reference), e.g. fp32 dygraph-expanded fp32-expanded",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    parser.add_argument(
        "--serving",
        action="store_true",
        help="the serving rows instead (benchmarks/serving_peers.py): paddle fp32, ONNX fp32 and int8 "
        "against a PyTorch NeXtVLAD eager and compiled, fp32 and int8, at batch 32 and 1, each in its own process",
    )
    parser.add_argument(
        "--models", nargs="+", default=["nextvlad", "mix-nextvlad"], help="with --serving: the models"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="with --serving: keep the exports in DIR/MODEL and reuse them next time"
    )
    parser.add_argument(
        "--by-precision",
        action="store_true",
        help="with --serving: time the fp32 scorers and the int8 ones in two processes (less memory at once)",
    )
    args = parser.parse_args(argv)
    if args.serving:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import serving_peers

        results = serving_peers.run(
            args.models, args.rounds, args.batches, args.scorers, args.keep, args.by_precision
        )
        text = json.dumps(results, indent=2)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")
        return 0

    from zoo.engine.runtime import cpu_count, init_paddle

    paddle = init_paddle("cpu")
    results: dict[str, Any] = {
        "paddle": paddle.__version__,
        "zoo": zoo.__version__,
        "threads": cpu_count(),
        "batch_size": args.batch_size,
        "frames": f"{args.max_frames // 2}-{args.max_frames}",
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        for size in args.sizes:
            result = bench_size(size, args, Path(tmp))
            results["sizes"].append(result)
            speed, ratio, best = result["videos_per_s"], result["vs_dygraph"], result["best_videos_per_s"]
            print(
                f"nextvlad {size} ({result['parameters']:,} parameters, export {result['export_seconds']} s, "
                f"{result['frames']} frames)",
                file=sys.stderr,
            )
            for name in speed:
                print(
                    f"  {name:12s} {speed[name]:8.2f} videos/s (best {best[name]:7.2f})  {ratio[name]:5.2f}x dygraph  "
                    f"max |diff| {result['max_abs_diff_vs_dygraph'][name]:.2e}",
                    file=sys.stderr,
                )
            for form, ratio_old in result["factored_vs_expanded"].items():
                print(
                    f"  {form}: factored {ratio_old:.2f}x expanded (median round), per round "
                    f"{result['factored_vs_expanded_per_round'][form]}, per CPU second "
                    f"{result['factored_vs_expanded_cpu'][form]:.2f}x; load {result['load_average']}",
                    file=sys.stderr,
                )
            if result["bf16"] != "measured":
                print(f"  bf16         {result['bf16']}", file=sys.stderr)
            if result["onnxruntime"] != "measured":
                print(f"  onnxruntime  {result['onnxruntime']}", file=sys.stderr)
            if result["custom_ops"] != "measured":
                print(f"  fp32-custom-ops  {result['custom_ops']}", file=sys.stderr)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
