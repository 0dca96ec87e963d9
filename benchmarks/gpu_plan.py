"""A GPU plan on paper: what an A100 or H100 could consume of NeXtVLAD training, and what it takes to feed it.

    python benchmarks/gpu_plan.py [--pipeline benchmarks/results/pipeline-cpu.json] [--utilisation 0.4]
                                  [--frames 300] [--batch-size 160] [--markdown]

COMPUTED, not measured (no GPU here):

- FLOPs per video: the reference NeXtVLAD's own count (``NeXtVLAD.flops``: matrix products, 2 FLOPs per
  multiply-add, the factored formulation, padded frames computed; elementwise work not counted) at
  ``--frames`` frames, forward + backward, the per-step product matrices shared by ``--batch-size`` videos;
- GPU rate = published dense peak x ``--utilisation`` / FLOPs per video (fp32 on CUDA cores; tf32 and bf16 on
  tensor cores; peaks below, without sparsity);
- bytes per video to the GPU: ``frames x (1024 + 128)`` values (uint8: 1 byte, float: 4) plus the float32
  mask; PCIe and disk bandwidth = GPU rate x those bytes (disk: TFRecord bytes per frame, MEASURED by
  bench_pipeline.py, x frames);
- reader processes = GPU rate / the per-process rate MEASURED here (bench_pipeline.py's best steady rate of
  raw uint8 batches divided by its reader processes; this machine's 2 shared cores make that a lower bound).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from zoo.engine.bench import GPU_PEAKS as PEAKS
from zoo.engine.bench import batch_bytes_per_video, gpu_plan_table

FEATURE_VALUES = 1024 + 128


def flops_per_video(frames: int, batch_size: int) -> dict[str, float]:
    """The reference NeXtVLAD's matmul FLOPs per video (its own count)."""
    from zoo.config import load_config
    from zoo.engine.build import build_model
    from zoo.engine.runtime import init_paddle

    init_paddle("cpu")
    config = Path(__file__).resolve().parent.parent / "configs" / "nextvlad.yaml"
    model = build_model(load_config(path=str(config)))
    return model.flops(frames, batch_size)


def per_process_rate(pipeline: dict[str, Any], source: str, batches: str) -> tuple[float, str]:
    """Best measured steady videos/s per reader process for ``source`` / ``batches`` (rate / processes; 0
    processes, reading in the training process itself, counts as one)."""
    best, where = 0.0, "not measured"
    for name, row in pipeline["rows"].items():
        if row["source"] != source or row["batches"] != batches or row["training_loop"]:
            continue
        processes = max(1, row["reader_processes"])
        rate = row.get("steady_videos_per_s", row["videos_per_s"]) / processes
        if rate > best:
            best, where = rate, name
    return best, where


def plan(args: argparse.Namespace) -> dict[str, Any]:
    counts = flops_per_video(args.frames, args.batch_size)
    pipeline = json.loads(Path(args.pipeline).read_text()) if args.pipeline else None
    per_video_bytes = batch_bytes_per_video(args.frames, FEATURE_VALUES)
    disk_per_video = pipeline["tfrecord_bytes_per_frame"] * args.frames if pipeline else None
    rows = []
    for gpu, peaks in PEAKS.items():
        for precision in ("fp32", "tf32", "bf16"):
            train = peaks[precision] * 1e12 * args.utilisation / counts["train"]
            infer = peaks[precision] * 1e12 * args.utilisation / counts["forward"]
            row: dict[str, Any] = {
                "gpu": gpu,
                "precision": precision,
                "peak_tflops": peaks[precision],
                "train_videos_per_s": round(train),
                "inference_videos_per_s": round(infer),
            }
            for fmt, size in per_video_bytes.items():
                row[f"pcie_gb_s_{fmt}"] = round(train * size / 1e9, 2)
                row[f"pcie_share_{fmt}"] = round(train * size / 1e9 / peaks["pcie_gb_s"], 3)
            if disk_per_video:
                row["disk_mb_s_tfrecord"] = round(train * disk_per_video / 1e6)
            if pipeline:
                for source in ("tfrecord", "packed"):
                    # uint8 batches as handed over: the GPU dequantizes them (a gather, negligible there)
                    rate, _ = per_process_rate(pipeline, source, "uint8-raw")
                    row[f"reader_processes_{source}_uint8"] = math.ceil(train / rate) if rate else None
            rows.append(row)
    rates = {}
    if pipeline:
        for source in ("tfrecord", "packed"):
            for kind in ("float", "uint8", "uint8-raw"):
                rate, where = per_process_rate(pipeline, source, kind)
                rates[f"{source} {kind}"] = {"videos_per_s_per_process": round(rate, 1), "row": where}
    return {
        "frames": args.frames,
        "batch_size": args.batch_size,
        "utilisation": args.utilisation,
        "flops_per_video": {k: counts[k] for k in ("forward", "backward", "train")},
        "bytes_per_video": per_video_bytes,
        "tfrecord_bytes_per_video": disk_per_video,
        "measured_reader_rates": rates,
        "load_average_during_pipeline_run": pipeline.get("load_average") if pipeline else None,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """The plan's table: the same function and columns as ``zoo bench --gpus`` prints measured."""
    return gpu_plan_table(result["rows"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", metavar="JSON", help="bench_pipeline.py's results (measured rates)")
    parser.add_argument(
        "--utilisation", type=float, default=0.4, help="share of the peak reached (default 0.4)"
    )
    parser.add_argument("--frames", type=int, default=300, help="frames per video (padded batches: 300)")
    parser.add_argument("--batch-size", type=int, default=160, help="videos per step (the recipe's 160)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown too")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    result = plan(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.markdown:
        print(markdown(result))
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
