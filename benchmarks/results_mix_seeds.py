"""MixNeXtVLAD against NeXtVLAD on the built-in sample data, several seeds each: mean and spread of the
validation metrics, written to benchmarks/results/mix-seeds-cpu.{json,md}.

    python benchmarks/results_mix_seeds.py                       # seeds 1-3, 4 epochs per run
    python benchmarks/results_mix_seeds.py --seeds 1 2 --epochs 1 --workdir /tmp/mix-seeds

Every run uses its model's bundled config with its ``sample`` section (mix-nextvlad: the author's recipe,
per-tensor clipping and L2 on the branches' logistic layers, without reverse whitening on this synthetic
data), global batch 32, the same epochs (4, as `zoo run`), and is scored on the 1000 validation videos with
the ``yt8m`` metric. The runs alternate between the models (seed 1 of each, then seed 2, ...) so that a run
cut short still leaves comparable pairs; the JSON is rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("nextvlad", "mix-nextvlad")
KEYS = ("gap", "hit_at_1", "perr")


def train_and_score(
    model: str, seed: int, epochs: int, run_dir: Path, max_iter: int | None
) -> dict[str, Any]:
    from zoo.config import bundled_config, load_config
    from zoo.engine.build import build_reader, with_sample_data
    from zoo.engine.infer.loops import evaluate
    from zoo.engine.runs.weights import apply_weights, read_weights
    from zoo.engine.train.trainer import Trainer

    overrides = [
        f"train.epoch={epochs}",
        "train.batch_size=32",
        f"train.seed={seed}",
        f"train.save_dir={run_dir}",
    ]
    overrides += [f"train.max_iter={max_iter}"] if max_iter else []
    cfg = with_sample_data(load_config(bundled_config(model), overrides, model=model), quiet=True)
    start = time.perf_counter()
    result = Trainer(cfg, overwrite=True, progress=False, log=lambda _m: None).fit()
    seconds = time.perf_counter() - start
    from zoo.engine.build import build_model

    net = build_model(cfg)
    apply_weights(net, read_weights(str(result.run_dir)), strict=True)
    metrics, _ = evaluate(net, build_reader(cfg, "valid"), cfg, desc="valid", progress=False)
    return {
        "model": model,
        "seed": seed,
        "epochs": epochs,
        "steps": result.steps,
        "train_seconds": round(seconds, 1),
        "parameters": result.parameters,
        **{k: float(metrics[k]) for k in KEYS},
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        rows = [r for r in runs if r["model"] == model]
        if not rows:
            continue
        out[model] = {"seeds": [r["seed"] for r in rows]}
        for key in KEYS:
            values = [r[key] for r in rows]
            out[model][key] = {
                "mean": statistics.fmean(values),
                "min": min(values),
                "max": max(values),
                "stdev": statistics.stdev(values) if len(values) > 1 else None,
            }
    return out


def markdown(record: dict[str, Any]) -> str:
    lines = [
        "| model | seeds | GAP mean (min - max) | Hit@1 mean (min - max) | PERR mean (min - max) |",
        "|---|---|---:|---:|---:|",
    ]
    for model, s in record["summary"].items():
        cells = [f"{s[k]['mean']:.4f} ({s[k]['min']:.4f} - {s[k]['max']:.4f})" for k in KEYS]
        lines.append(f"| `{model}` | {', '.join(map(str, s['seeds']))} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| model | seed | GAP | Hit@1 | PERR | train s |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for r in record["runs"]:
        lines.append(
            f"| `{r['model']}` | {r['seed']} | {r['gap']:.4f} | {r['hit_at_1']:.4f} | {r['perr']:.4f} | "
            f"{r['train_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-iter", type=int, help="stop each run after this many steps (a smoke check)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "checkpoints" / "results-mix-seeds")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "mix-seeds-cpu")
    args = parser.parse_args()
    from zoo.engine.runtime import init_paddle

    init_paddle("cpu")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    record: dict[str, Any] = {
        "command": "python benchmarks/results_mix_seeds.py "
        + f"--seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs}"
        + (f" --max-iter {args.max_iter}" if args.max_iter else ""),
        "commit": commit.stdout.strip(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": [],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for model in MODELS:
            row = train_and_score(
                model, seed, args.epochs, args.workdir / f"{model}-seed{seed}", args.max_iter
            )
            record["runs"].append(row)
            record["summary"] = summary(record["runs"])
            args.output.with_suffix(".json").write_text(json.dumps(record, indent=1))
            args.output.with_suffix(".md").write_text(markdown(record))
            print(json.dumps(row), flush=True)
    record["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.output.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(markdown(record))


if __name__ == "__main__":
    main()
