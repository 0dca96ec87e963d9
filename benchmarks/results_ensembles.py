"""Results of issue 13 on the built-in sample data: nextvlad, mix-nextvlad, an ensemble of 3 runs and a
student distilled from it, written to docs/models.md (between its ``results_ensembles`` markers) and to
benchmarks/results/ensembles-cpu.{json,md}.

    python benchmarks/results_ensembles.py                 # 4 epochs per run (~17 minutes on 2 cores)
    python benchmarks/results_ensembles.py --epochs 1 --workdir /tmp/ens-results

Every run uses its model's ``sample`` config section on the built-in sample data (4000 training and 1000
validation videos, 200 classes), global batch 32, the same number of epochs (4, as `zoo run`), and is scored on the
validation split with the ``yt8m`` metric (GAP, Hit@1, PERR):

- ``nextvlad`` with seeds 1, 2 and 3 (seed 1 is the ``nextvlad`` row);
- ``mix-nextvlad`` with seed 1;
- the ensemble: the arithmetic mean of the three nextvlad runs' top-50 probabilities (equal weights,
  zoo.engine.infer.ensemble); its parameters and inference cost are the sum of its members';
- the student: a nextvlad (seed 4) trained with ``train.distill`` against the ensemble of the three runs
  (weight 0.5, temperature 1, the defaults).

Train videos/s is the trainer's over the whole run (data pipeline included); inference videos/s is one pass
over the validation split (prediction of the top 50 per video for the members of the ensemble).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARK_BEGIN, MARK_END = "<!-- results_ensembles: begin -->", "<!-- results_ensembles: end -->"
MEMBER_TOP_K = 50


def config(model: str, run_dir: Path, epochs: int, seed: int, **train: Any) -> Any:
    """The model's bundled config on the sample data (its ``sample`` section), then this run's settings
    (after the sample section, whose ``train.epoch`` would otherwise win)."""
    from zoo.config import bundled_config, load_config
    from zoo.engine.build import with_sample_data

    cfg = with_sample_data(load_config(bundled_config(model), [], model=model), quiet=True)
    patch = {
        "train": {
            "epoch": epochs,
            "batch_size": 32,
            "seed": seed,
            "save_dir": str(run_dir),
            "callbacks": ["history"],
            **train,
        }
    }
    return cfg.with_overrides(patch, "benchmarks/results_ensembles.py")


def evaluate_run(cfg: Any, run_dir: Path) -> tuple[dict[str, float], float]:
    """The run's metrics on the valid split and inference videos/s of that pass."""
    from zoo.engine.build import build_model, build_reader
    from zoo.engine.infer.loops import evaluate
    from zoo.engine.runs.weights import apply_weights, read_weights

    model = build_model(cfg)
    apply_weights(model, read_weights(str(run_dir)), strict=True)
    model.eval()
    start = time.perf_counter()
    metrics, _ = evaluate(model, build_reader(cfg, "valid"), cfg, progress=False)
    seconds = time.perf_counter() - start
    return metrics, metrics["num_videos"] / seconds if "num_videos" in metrics else float("nan")


def train(model: str, run_dir: Path, epochs: int, seed: int, **extra: Any) -> dict[str, Any]:
    from zoo.engine.train.trainer import Trainer

    cfg = config(model, run_dir, epochs, seed, **extra)
    result = Trainer(cfg, progress=False, overwrite=True).fit()
    metrics, infer = evaluate_run(cfg, run_dir)
    return {
        "params": result.parameters,
        "train_videos_per_s": result.train_videos_per_s,
        "inference_videos_per_s": infer,
        "metrics": metrics,
        "seconds": result.seconds,
        "cfg": cfg,
    }


def ensemble(runs: list[Path], rows: list[dict[str, Any]]) -> dict[str, Any]:
    from zoo.engine.build import build_metric
    from zoo.engine.infer import ensemble as ens

    cfg = rows[0]["cfg"]
    start = time.perf_counter()
    tables = [ens.load_member(str(run), cfg, "valid", MEMBER_TOP_K, progress=False) for run in runs]
    predict_seconds = time.perf_counter() - start
    combined = ens.combine(tables, [1.0] * len(tables), top_k=MEMBER_TOP_K)
    labels = ens.split_labels(cfg, "valid", combined.ids)
    metrics = ens.score_table(combined, labels, lambda: build_metric(cfg))
    members = [ens.score_table(t, labels, lambda: build_metric(cfg)) for t in tables]
    return {
        "params": sum(r["params"] for r in rows),
        "train_videos_per_s": 1.0 / sum(1.0 / r["train_videos_per_s"] for r in rows),
        "inference_videos_per_s": len(combined) / predict_seconds,
        "metrics": metrics,
        "member_metrics": members,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | params | train videos/s | inference videos/s | GAP | Hit@1 | PERR |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        m = r["metrics"]
        lines.append(
            f"| {name} | {r['params']:,} | {r['train_videos_per_s']:.1f} | {r['inference_videos_per_s']:.1f} "
            f"| {m['gap']:.4f} | {m['hit_at_1']:.4f} | {m['perr']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (4: what `zoo run` trains)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "checkpoints" / "results-ensembles")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/models.md")
    args = parser.parse_args(argv)

    from zoo.engine.runtime import init_paddle, prepare_environment

    prepare_environment()
    init_paddle("cpu")
    started = time.time()
    work = args.workdir
    runs = [work / f"nextvlad-seed{seed}" for seed in (1, 2, 3)]
    members = [train("nextvlad", run, args.epochs, seed) for seed, run in zip((1, 2, 3), runs)]
    mix = train("mix-nextvlad", work / "mix-nextvlad-seed1", args.epochs, 1)
    ens_row = ensemble(runs, members)
    distill = {"teachers": [str(r) for r in runs]}
    student = train("nextvlad", work / "student-seed4", args.epochs, 4, distill=distill)
    results = {
        "`nextvlad` (seed 1)": members[0],
        "`mix-nextvlad` (seed 1)": mix,
        "ensemble of 3 `nextvlad` (seeds 1-3)": ens_row,
        "student `nextvlad` distilled from the ensemble (seed 4)": student,
    }
    for i, m in enumerate(members[1:], start=2):
        results[f"`nextvlad` (seed {i}, ensemble member)"] = m
    minutes = (time.time() - started) / 60
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    header = (
        f"`python benchmarks/results_ensembles.py --epochs {args.epochs}`: {args.epochs} epochs per run, "
        f"batch 32, sample configs, scored on the 1000 validation videos. {minutes:.1f} minutes on "
        f"{platform.machine()} CPU, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}."
    )
    text = f"{header}\n\n{table(results)}\n"
    print(text)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ensembles-cpu.md").write_text(text)
    record = {name: {k: v for k, v in r.items() if k != "cfg"} for name, r in results.items()}
    (out / "ensembles-cpu.json").write_text(json.dumps(record, indent=1, default=float))
    if not args.no_docs:
        docs = ROOT / "docs" / "models.md"
        current = docs.read_text()
        if MARK_BEGIN in current and MARK_END in current:
            head, rest = current.split(MARK_BEGIN, 1)
            _, tail = rest.split(MARK_END, 1)
            docs.write_text(f"{head}{MARK_BEGIN}\n{text}{MARK_END}{tail}")
        else:
            print(f"docs/models.md has no {MARK_BEGIN} markers: the table was not placed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
