"""Segment inference with top-N-per-class selection: what the selection adds to the model's own time.

Two parts, in one run:

1. The model: a real zoo model scores 5-frame segments of synthetic videos through the engine's segment path
   (``zoo_yt8m_segments.task.scored_segments``: one decoded record per video, cut into segments, collated in
   batches), over ``--model-videos`` videos; its time per segment is measured and scaled to the full set.
2. The selection: ``TopSegments`` over the full set (``--videos`` x ``--segments`` segments, scores of all
   3862 classes, ``--classes`` rated columns kept, top ``--top`` per class), fed batches of the same shape
   as the model's. Scores are sigmoid outputs generated in memory in random order (the order that makes the
   most rows beat the running N-th score); generating them is not timed. Peak memory is traced (numpy
   allocations, tracemalloc) from an empty selection to its ranked lists.

Goal (issue 14): the selection adds under 1 GB and under 10% to the model's time.

    python benchmarks/bench_segments.py                       # validate-sized: 47k videos x 60 segments
    python benchmarks/bench_segments.py --videos 2000 --top 1000 --json out.json   # quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ALL_CLASSES = 3862
FEATURES = {"rgb": 1024, "audio": 128}


class SyntheticVideos:
    """An in-memory reader of ``videos`` random videos of ``frames`` frames (uint8 features, as decoded
    TFRecords give them), with what ``scored_segments`` calls on a reader."""

    def __init__(self, videos: int, frames: int, seed: int = 0) -> None:
        import zoo

        self.videos, self.frames = videos, frames
        self.rng = np.random.default_rng(seed)
        self.dequantize_into = zoo.plugin_class("reader", "yt8m-segment").dequantize_into

    def sources(self) -> list[str]:
        return ["memory"]

    def read_part(self, source: str, start: int, step: int):
        for i in range(start, self.videos, step):
            record = {"id": f"v{i:06d}", "labels": np.zeros(0, np.int64), "num_frames": self.frames}
            for name, size in FEATURES.items():
                record[name] = self.rng.integers(0, 256, (self.frames, size), dtype=np.uint8)
            yield record

    def print_skipped(self) -> None:
        return None


def measure_model(model_name: str, videos: int, segments: int, batch_size: int) -> dict[str, Any]:
    """The model's scoring time per segment through the engine's segment path (reading not counted)."""
    from zoo_yt8m_segments.task import scored_segments

    import zoo
    from zoo.config import bundled_config, load_config
    from zoo.engine.infer.loops import dygraph_scorer
    from zoo.engine.runtime import init_paddle

    init_paddle("cpu")
    cfg = load_config(bundled_config(model_name), [f"eval.batch_size={batch_size}"], model=model_name)
    model = zoo.build_model(cfg.model_name, spec=cfg.dataset, **cfg.model)
    score = dygraph_scorer(model, cfg.dataset.features)
    seconds = 0.0

    def timed(batch: dict[str, Any]) -> np.ndarray:
        nonlocal seconds
        t = time.perf_counter()
        out = score(batch)
        seconds += time.perf_counter() - t
        return out

    reader = SyntheticVideos(videos, segments * 5)
    scored = 0
    for _, _, probs in scored_segments(timed, reader, cfg, batch_size=batch_size, progress=False):
        scored += len(probs)
    return {"model": model_name, "segments": scored, "seconds": seconds, "per_segment_s": seconds / scored}


def measure_selection(total: int, classes: int, top: int, batch_size: int, seed: int = 0) -> dict[str, Any]:
    from zoo_yt8m_segments.topsegments import TopSegments

    rng = np.random.default_rng(seed)
    rated = np.sort(rng.choice(ALL_CLASSES, classes, replace=False))
    # a pool of logits, shifted per batch and class so that the order of the scores is random
    pool = rng.normal(-4.0, 1.5, (16, batch_size, ALL_CLASSES)).astype(np.float32)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    topk = TopSegments(rated, top)
    seconds = 0.0
    for i, lo in enumerate(range(0, total, batch_size)):
        n = min(batch_size, total - lo)
        logits = pool[i % len(pool), :n] + rng.normal(0, 0.5, ALL_CLASSES).astype(np.float32)
        probs = 1.0 / (1.0 + np.exp(-logits))
        keys = np.arange(lo, lo + n, dtype=np.uint32)
        t = time.perf_counter()
        topk.add(probs, keys)
        seconds += time.perf_counter() - t
        del logits, probs
    t = time.perf_counter()
    entries = sum(len(k) for _, k, _ in topk.ranked())
    ranked_s = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    # the score batches themselves (2 live at most) are the model's output, not the selection's
    batch_bytes = 2 * batch_size * ALL_CLASSES * 4 * 2
    return {
        "segments": total,
        "classes": classes,
        "top": top,
        "add_s": seconds,
        "ranked_s": ranked_s,
        "seconds": seconds + ranked_s,
        "entries": entries,
        "peak_entries": topk.peak_entries,
        "peak_mb": (peak - batch_bytes) / 2**20,
        "lists_mb": classes * top * 8 / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=47_000, help="videos in the set (default 47000)")
    parser.add_argument("--segments", type=int, default=60, help="5-frame segments per video (default 60)")
    parser.add_argument("--classes", type=int, default=1000, help="rated classes listed (default 1000)")
    parser.add_argument("--top", type=int, default=100_000, help="entries per class (default 100000)")
    parser.add_argument("--batch-size", type=int, default=160, help="segments per batch (eval.batch_size)")
    parser.add_argument("--model", default="mean-max-pool", help="the model timed (default mean-max-pool)")
    parser.add_argument(
        "--model-videos",
        type=int,
        default=40,
        help="videos the model scores; its time is scaled (default 40)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)

    total = args.videos * args.segments
    model = measure_model(args.model, args.model_videos, args.segments, args.batch_size)
    model_full_s = model["per_segment_s"] * total
    selection = measure_selection(total, args.classes, args.top, args.batch_size)
    result = {
        "videos": args.videos,
        "segments": total,
        "model": model,
        "model_full_s": model_full_s,
        "selection": selection,
        "selection_share": selection["seconds"] / model_full_s,
        "goal_met": selection["seconds"] < 0.1 * model_full_s and selection["peak_mb"] < 1024,
    }
    print(
        f"{total:,} segments ({args.videos:,} videos x {args.segments}), {args.classes} classes, "
        f"top {args.top:,} per class\n"
        f"model {args.model}: {model['per_segment_s'] * 1e3:.3f} ms/segment (measured on {model['segments']:,}"
        f" segments) -> {model_full_s:,.0f} s for the set\n"
        f"selection: {selection['seconds']:.1f} s (add {selection['add_s']:.1f} s, ranked "
        f"{selection['ranked_s']:.1f} s) = {100 * result['selection_share']:.1f}% of the model's time; peak "
        f"{selection['peak_mb']:,.0f} MB (the full lists alone: {selection['lists_mb']:,.0f} MB); "
        f"goal {'met' if result['goal_met'] else 'NOT met'}"
    )
    if args.json:
        from zoo.atomic import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
