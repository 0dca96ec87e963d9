"""int8 against fp32 ONNX, one run: which products in int8, and dynamic against static quantization.

    python benchmarks/bench_int8_products.py WORK_DIR [--rounds 3] [--batches 4]

The reference NeXtVLAD (the bundled config: 89M parameters), trained-looking random weights, rgb 1024 + audio
128 features, 3862 classes, 150-300 frames per video. In ``WORK_DIR`` (kept and reused: the exports take
minutes) it makes the fp32 ONNX export (``zoo export --format onnx``) and quantizes it as ``zoo export
--precision int8`` does, five ways:

- ``after-pooling dynamic``: the products after the pooling only (hidden layer, gating, classifier), dynamic:
  NeXtVLAD's int8 policy before it quantized the frame-level products;
- ``policy dynamic``: NeXtVLAD's policy (every product with a constant matrix), dynamic quantization;
- ``policy static``: NeXtVLAD's policy with static quantization (activation ranges calibrated on 2 batches
  of 32 videos other than the timed ones);
- ``every-product dynamic``: dynamic, and the pooling of the frames by their assignments (a product of two
  activations, which the policy keeps fp32) in int8 too, its ranges found per batch row by row
  (``quantize_activation_products``);
- ``every-product static``: static, the pooling in int8 too (calibrated ranges).

Then fp32 and the five take turns batch by batch (``--batches`` batches of 32, then 16 videos one by one)
for ``--rounds`` rounds in this one process, so the load of a shared machine falls on all alike; per model
the median round counts. Prints (and writes ``WORK_DIR/result.json``): videos/s, each against fp32, every
round, the load average, the largest probability difference from fp32 on the first batch, and the file
sizes. No GAP here: the weights are random; the quality numbers come from a trained model exported with its
checks (docs/export.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from serving_peers import CLASSES, FEATURES, random_batches  # the serving rows' shapes and batches

VARIANTS = (
    "after-pooling dynamic",
    "policy dynamic",
    "policy static",
    "every-product dynamic",
    "every-product static",
)


def prepare(work: Path) -> dict[str, Any]:
    """The fp32 export and the int8 ones in ``work`` (those already there are kept)."""
    import onnx

    from zoo.config import load_config
    from zoo.contracts import Int8Policy
    from zoo.engine.build import count_parameters
    from zoo.engine.export.metadata import file_record
    from zoo.engine.export.onnx import ONNX_FILE, OnnxModel, export_onnx
    from zoo.engine.export.quantize import (
        Int8Options,
        _feeds,
        _quantize,
        constants_to_initializers,
        policy_of,
        select_products,
    )
    from zoo.engine.runs.checkpoint import save_weights
    from zoo.testing import trained_model

    config = load_config(path=str(Path(__file__).resolve().parent.parent / "configs" / "nextvlad.yaml"))
    cfg = config.with_overrides(
        {"dataset": {"num_classes": CLASSES, "features": FEATURES, "max_frames": 300}}, "bench"
    )
    model = trained_model(cfg)
    if not (work / "onnx" / "metadata.json").exists():
        save_weights(work / "weights.safetensors", model)
        export_onnx(cfg, str(work / "weights.safetensors"), work / "onnx")
    policy = policy_of(model, "nextvlad")
    after_pooling = Int8Policy(quantize=policy.quantize)
    plans = {
        "after-pooling dynamic": (after_pooling, "dynamic"),
        "policy dynamic": (policy, "dynamic"),
        "policy static": (policy, "static"),
        "every-product dynamic": (dataclasses.replace(policy, activations=True), "dynamic"),
        "every-product static": (dataclasses.replace(policy, activations=True), "static"),
    }
    facts: dict[str, Any] = {"parameters": count_parameters(model), "products": {}}
    meta = json.loads((work / "onnx" / "metadata.json").read_text())
    for name, (chosen, mode) in plans.items():
        out = work / name.replace(" ", "-")
        graph = onnx.load(str(work / "onnx" / ONNX_FILE))
        constants_to_initializers(graph.graph)
        products = select_products(graph.graph, model, chosen, mode)
        facts["products"][name] = f"{sum(p['int8'] for p in products)} of {len(products)}"
        if (out / "metadata.json").exists():
            continue
        onnx.save(graph, str(work / "prepared.onnx"))
        del graph
        out.mkdir(exist_ok=True)
        feeds = None
        if mode == "static":
            fp32 = OnnxModel(work / "onnx", meta)
            feeds = _feeds(fp32, random_batches(2, 32, seed=2))
        start = time.perf_counter()
        _quantize(
            work / "prepared.onnx",
            out / ONNX_FILE,
            [p["node"] for p in products if p["int8"]],
            Int8Options(mode=mode),
            feeds,
            activations=[p["node"] for p in products if p["int8"] and p["kind"] == "activations"],
        )
        print(f"{name}: quantized in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        (work / "prepared.onnx").unlink()
        (out / "metadata.json").write_text(
            json.dumps({**meta, "files": {ONNX_FILE: file_record(out / ONNX_FILE)}})
        )
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="directory for the exports (kept and reused)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4, help="batches of 32 per round")
    args = parser.parse_args(argv)
    from zoo.engine.export.onnx import ONNX_FILE
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.runtime import init_paddle

    init_paddle("cpu")
    args.work.mkdir(parents=True, exist_ok=True)
    facts = prepare(args.work)
    dirs = {"fp32": args.work / "onnx", **{v: args.work / v.replace(" ", "-") for v in VARIANTS}}
    scorers = {k: load_exported(d).predict for k, d in dirs.items()}
    big, small = random_batches(args.batches, 32, seed=0), random_batches(16, 1, seed=1)
    first = {k: score(big[0]) for k, score in scorers.items()}  # also the warm-up
    for score in scorers.values():
        score(small[0])
    result: dict[str, Any] = {
        "model": f"NeXtVLAD, the bundled config ({facts['parameters']:,} parameters), {CLASSES} classes",
        "int8_products": facts["products"],
        "threads": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "max_abs_diff_vs_fp32": {
            k: float(abs(v - first["fp32"]).max()) for k, v in first.items() if k != "fp32"
        },
    }
    for label, group in (("batch32", big), ("batch1", small)):
        spent: dict[str, list[float]] = {k: [] for k in scorers}
        for _ in range(args.rounds):
            seconds = dict.fromkeys(scorers, 0.0)
            for batch in group:
                for k, score in scorers.items():
                    start = time.perf_counter()
                    score(batch)
                    seconds[k] += time.perf_counter() - start
            for k in scorers:
                spent[k].append(seconds[k])
        videos = sum(len(b["mask"]) for b in group)
        rates = {k: videos / statistics.median(v) for k, v in spent.items()}
        result[label] = {k: round(r, 2) for k, r in rates.items()}
        result[f"{label}_vs_fp32"] = {k: round(r / rates["fp32"], 2) for k, r in rates.items() if k != "fp32"}
        result[f"{label}_rounds"] = {k: [round(videos / t, 2) for t in v] for k, v in spent.items()}
    result["load_average_after"] = os.getloadavg()
    result["file_mb"] = {k: round((d / ONNX_FILE).stat().st_size / 1e6, 1) for k, d in dirs.items()}
    result["file_vs_fp32"] = {k: round(result["file_mb"][k] / result["file_mb"]["fp32"], 2) for k in VARIANTS}
    text = json.dumps(result, indent=1)
    (args.work / "result.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
