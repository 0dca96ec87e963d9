"""The benchmark runner behind ``zoo bench``: every model on every device count, the same way each time.

For each (model, device count) the runner resolves the model's config once (the built-in sample dataset
with the config's ``sample`` section unless ``--data`` is given, then the user's ``-o`` overrides), and runs
``zoo bench --worker`` on that many processes through ``paddle.distributed.launch`` (also for one device, so
every configuration starts from fresh processes). The worker trains a fixed number of steps (or epochs) with
the engine's :class:`~zoo.engine.train.trainer.Trainer`, evaluates the trained model on the validation split over
all ranks, and reports:

- train videos/s: global examples per second over the steps after the warm-up, from the per-step times
  the trainer logs (``steps.jsonl``);
- inference videos/s: validation videos per second of the whole distributed evaluation pass (forward,
  metric updates, gathering the metric state and computing GAP);
- scaling efficiency: ``(train videos/s / devices) / (the same for the smallest device count)``;
- the metric's results on the validation split (global values over all ranks' predictions); the table shows
  the keys the metric declares in ``display``, its ``headline`` first in the log;
- peak memory per process: the largest resident set size (CPU) or GPU memory allocated, over the ranks.

Results go to ``OUTPUT/NAME.{md,csv,json}`` and, with matplotlib installed, ``NAME.png``. Throughput on a shared machine is noisy: compare rows of
one run, not across runs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import platform
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.atomic import atomic_write_bytes, atomic_write_text
from zoo.config import ZooConfig
from zoo.engine.distributed import context as distributed
from zoo.engine.distributed import launch, watch
from zoo.engine.distributed.worker import failure_report, worker_context
from zoo.errors import UsageError, ZooError

EPOCHS_FOREVER = 1_000_000


def parse_counts(text: str, flag: str) -> list[int]:
    """``"4"`` -> 1, 2, 4 (powers of two up to 4, and 4); ``"1,3"`` -> exactly those."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(
            f"{flag} {text!r}: expected a number (4 runs 1, 2 and 4) or a list such as 1,2,4"
        ) from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} {text!r}: device counts must be at least 1")
    if len(values) == 1 and "," not in text:
        top = values[0]
        values = [n for n in (2**i for i in range(top.bit_length())) if n < top] + [top]
    return sorted(set(values))


@dataclass
class BenchSettings:
    """What ``zoo bench`` runs."""

    models: list[str]
    device: str = "cpu"  # "cpu" (processes over gloo) or "gpu"
    counts: list[int] = field(default_factory=lambda: [1])
    steps: int = 30
    warmup: int = 5
    epochs: int | None = None  # train whole epochs instead of ``warmup + steps`` steps
    data: str | None = None
    overrides: list[str] = field(default_factory=list)
    output: Path = Path("benchmarks/results")
    name: str = "bench"
    timeout: float = 3600.0

    def command(self) -> str:
        """The ``zoo bench`` command line that reproduces these settings."""
        parts = ["zoo", "bench", *self.models]
        flag = "--gpus" if self.device == "gpu" else "--cpu-procs"
        parts += [flag, ",".join(str(n) for n in self.counts)]
        if self.epochs is not None:
            parts += ["--epochs", str(self.epochs)]
        else:
            parts += ["--steps", str(self.steps)]
        parts += ["--warmup", str(self.warmup)]
        if self.data:
            parts += ["--data", self.data]
        for text in self.overrides:
            parts += ["-o", text]
        parts += ["--name", self.name]
        return " ".join(shlex.quote(p) for p in parts)


@dataclass
class BenchRow:
    model: str
    device: str
    devices: int
    global_batch: int
    parameters: int = 0
    steps: int = 0
    epochs: int = 0
    train_videos_per_s: float = float("nan")
    scaling_efficiency: float = float("nan")
    infer_videos_per_s: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)
    """The metric's results on the validation split."""
    headline: str = ""
    """The metric's headline key."""
    display: list[str] = field(default_factory=list)
    """The metric's keys worth showing, in order."""
    eval_videos: int = 0
    peak_memory_mib: float = float("nan")
    train_seconds: float = float("nan")
    error: str = ""
    # the data fed, for the GPU plan's columns (gpu_plan_rows): padded frames per video, feature values per
    # frame, reader processes per device (data.num_workers), the training files' format and bytes per video
    frames: int = 0
    feature_values: int = 0
    reader_processes: int = 0
    data_format: str = ""
    file_bytes_per_video: float = float("nan")


# ---------------------------------------------------------------------------------------------------------
# Parent side


def resolve_config(model: str, settings: BenchSettings, devices: int, run_dir: Path) -> ZooConfig:
    """The model's bundled config on the benchmark data, the user's overrides, then the runner's settings."""
    from zoo.config import bundled_config, load_config
    from zoo.engine.build import ensure_data

    # the sample section (without --data) ranks below the user's -o, as in every command
    cfg = load_config(bundled_config(model), list(settings.overrides), model=model)
    cfg = ensure_data(cfg, settings.data, quiet=True)
    train: dict[str, Any] = {
        "save_dir": str(run_dir),
        "valid_interval": 0,
        "log_interval": 1,
        "checkpoint_steps": 0,
        "num_gpus": devices,
        "fix_random_seed": True,
        # train videos/s comes from the per-step log the history callback writes
        "callbacks": list(dict.fromkeys([*cfg.train.callbacks, "history"])),
    }
    if settings.epochs is not None:
        train["epoch"] = settings.epochs
    else:
        train.update(epoch=EPOCHS_FOREVER, max_iter=settings.warmup + settings.steps)
    return cfg.with_overrides({"train": train}, "zoo bench")


def _check(settings: BenchSettings) -> None:
    from zoo.plugins import get_plugins

    if not settings.models:
        raise UsageError("no models to benchmark")
    known = get_plugins().registry("model")
    for model in settings.models:
        if model not in known:
            raise UsageError(f"unknown model {model!r}; `zoo models` lists them")
    if settings.steps < 1 or settings.warmup < 0:
        raise UsageError("--steps must be at least 1 and --warmup at least 0")
    if settings.epochs is not None and settings.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    if settings.device == "gpu":
        launch.gpu_count(max(settings.counts))


def run_bench(settings: BenchSettings, *, log: Any = None) -> tuple[list[BenchRow], dict[str, Path]]:
    """Run every configuration, write the result files; returns the rows and the files written."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    _check(settings)
    rows: list[BenchRow] = []
    scratch = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    total = len(settings.models) * len(settings.counts)
    started = time.time()
    try:
        for model in settings.models:
            for n in settings.counts:
                index = len(rows) + 1
                run_dir = scratch / f"{model}-{settings.device}{n}"
                cfg = resolve_config(model, settings, n, run_dir)
                row = BenchRow(
                    model=model,
                    device=settings.device,
                    devices=n,
                    global_batch=cfg.train.batch_size,
                    frames=cfg.dataset.max_frames,
                    feature_values=sum(cfg.dataset.features.values()),
                    reader_processes=cfg.data.num_workers,
                )
                if settings.device == "gpu":
                    row.data_format, row.file_bytes_per_video = data_facts(cfg)
                what = (
                    f"{settings.epochs} epoch(s)"
                    if settings.epochs
                    else f"{settings.warmup}+{settings.steps} steps"
                )
                log(
                    f"[{index}/{total}] {model} on {launch.LaunchPlan(settings.device, n).describe()}: "
                    f"training {what} at global batch {row.global_batch}, then evaluating"
                )
                if cfg.train.batch_size % n:
                    row.error = f"train.batch_size {cfg.train.batch_size} is not divisible by {n} devices"
                else:
                    _run_one(cfg, settings, n, run_dir, row)
                log(f"    {_summary(row)}")
                rows.append(row)
        _efficiency(rows)
        written = write_results(rows, settings, meta=_meta(settings, time.time() - started))
    finally:
        if all(not r.error for r in rows):
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            log(f"the failed configurations' run directories and logs are kept in {scratch}")
    return rows, written


def _run_one(cfg: ZooConfig, settings: BenchSettings, n: int, run_dir: Path, row: BenchRow) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "bench-config.json"
    atomic_write_text(config_path, json.dumps(cfg.to_dict(), indent=1))
    result_path = run_dir / "bench-result.json"
    spec = {
        "config": str(config_path),
        "device": settings.device,
        "warmup": settings.warmup,
        "result": str(result_path),
    }
    spec_path = run_dir / "bench-spec.json"
    atomic_write_text(spec_path, json.dumps(spec))
    plan = launch.LaunchPlan(device=settings.device, nproc_per_node=n, log_dir=run_dir / "logs")
    try:
        watch.run(plan, ["bench", "--worker", str(spec_path)], timeout=settings.timeout, echo=False)
        result = json.loads(result_path.read_text())
    except (ZooError, OSError, ValueError) as exc:
        row.error = str(exc).splitlines()[0][:500]
        return
    for key, value in result.items():
        if hasattr(row, key):
            setattr(row, key, value)


DATA_FACTS_FILES = 8  # training files whose videos are counted for the bytes per video (headers only)


def data_facts(cfg: ZooConfig) -> tuple[str, float]:
    """The training files' format (``"packed"``, ``"tfrecord"`` or ``"mixed"``) and their bytes per video
    (the first DATA_FACTS_FILES files' sizes over the videos the reader counts in them from the record
    headers), for the GPU plan's disk column; NaN when the reader cannot count without decoding or the files
    are not local."""
    from zoo.engine.build import build_reader

    reader = build_reader(cfg, "train")
    try:
        sources = reader.sources()[:DATA_FACTS_FILES]
        sizes = [
            sum(f.stat().st_size for f in Path(s).rglob("*") if f.is_file())  # a packed shard: a folder
            if Path(s).is_dir()
            else Path(s).stat().st_size
            for s in sources
        ]
    except (OSError, ZooError):
        return "", float("nan")
    packed = sum(1 for source in sources if Path(source).is_dir())
    fmt = "packed" if sources and packed == len(sources) else "tfrecord" if not packed else "mixed"
    count = getattr(reader, "count", None)
    if count is None or not sources:
        return fmt, float("nan")
    videos = sum(count(source) for source in sources)
    return fmt, (sum(sizes) / videos if videos else float("nan"))


def _efficiency(rows: list[BenchRow]) -> None:
    by_model: dict[str, list[BenchRow]] = {}
    for row in rows:
        if not row.error:
            by_model.setdefault(row.model, []).append(row)
    for group in by_model.values():
        base = min(group, key=lambda r: r.devices)
        per_device = base.train_videos_per_s / base.devices
        for row in group:
            row.scaling_efficiency = (
                (row.train_videos_per_s / row.devices) / per_device if per_device > 0 else float("nan")
            )


def _summary(row: BenchRow) -> str:
    if row.error:
        return f"failed: {row.error}"
    quality = f"{row.headline} {row.metrics[row.headline]:.4f}, " if row.headline in row.metrics else ""
    return (
        f"train {row.train_videos_per_s:.1f} videos/s, inference {row.infer_videos_per_s:.1f} videos/s, "
        f"{quality}peak {row.peak_memory_mib:.0f} MiB"
    )


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    """The source checkout's commit (and "+changes" when it has uncommitted edits), if it is one."""
    import subprocess

    root = Path(__file__).resolve().parent.parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _meta(settings: BenchSettings, seconds: float) -> dict[str, Any]:
    import zoo
    from zoo.engine.runtime import cpu_count

    try:
        import paddle

        paddle_version = paddle.__version__
        gpu_name = paddle.device.cuda.get_device_name(0) if settings.device == "gpu" else ""
    except Exception:  # noqa: BLE001 - metadata only
        paddle_version, gpu_name = "unknown", ""
    return {
        "command": settings.command(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "yt8m_zoo": zoo.__version__,
        "commit": _git_commit(),
        "paddle": paddle_version,
        "python": platform.python_version(),
        "device": settings.device,
        "cpu": cpu_model(),
        "cpu_cores": cpu_count(),
        "gpu": gpu_name,
        "data": settings.data or "built-in sample dataset (each model's `sample` config section)",
        "training": (
            f"{settings.epochs} epoch(s)"
            if settings.epochs is not None
            else f"{settings.warmup} warm-up + {settings.steps} measured steps"
        ),
        "warmup_steps": settings.warmup,
        "seconds": round(seconds, 1),
    }


# ---------------------------------------------------------------------------------------------------------
# Output

COLUMNS = [
    ("model", "model"),
    ("devices", "devices"),
    ("global_batch", "batch"),
    ("parameters", "params"),
    ("train_videos_per_s", "train videos/s"),
    ("scaling_efficiency", "scaling"),
    ("infer_videos_per_s", "infer videos/s"),
    ("peak_memory_mib", "peak MiB"),
]
METRICS_AFTER = "infer_videos_per_s"  # the metrics' display columns follow this column


def metric_keys(rows: list[BenchRow]) -> list[str]:
    """The display keys of the rows' metrics, in their order (rows of different metrics: their union)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row.display if k not in keys]
    return keys


def _cell(key: str, row: BenchRow) -> Any:
    if not hasattr(row, key) or key == "metrics":
        if row.error:
            return ""
        value = row.metrics.get(key)
        if value is None:
            return ""
        return f"{value:.4f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:g}"
    value = getattr(row, key)
    if key == "devices":
        return f"{'GPU' if row.device == 'gpu' else 'CPU proc'} x{value}"
    if row.error and key not in ("model", "global_batch"):
        return "failed" if key == "train_videos_per_s" else ""
    if key == "parameters":
        return f"{value:,}"
    if key in ("train_videos_per_s", "infer_videos_per_s"):
        return f"{value:.1f}"
    if key == "scaling_efficiency":
        return f"{value:.2f}"
    if key == "peak_memory_mib":
        return f"{value:.0f}"
    return value


def table(rows: list[BenchRow], fmt: str = "simple") -> str:
    """The result table (the scaling column only when some model ran on more than one device count)."""
    from tabulate import tabulate

    counts: dict[str, set[int]] = {}
    for row in rows:
        counts.setdefault(row.model, set()).add(row.devices)
    columns = []
    for key, title in COLUMNS:
        if key != "scaling_efficiency" or any(len(v) > 1 for v in counts.values()):
            columns.append((key, title))
        if key == METRICS_AFTER:
            columns += [(k, k) for k in metric_keys(rows)]
    body = [[_cell(key, row) for key, _ in columns] for row in rows]
    return tabulate(body, headers=[title for _, title in columns], tablefmt=fmt, disable_numparse=True)


def markdown(rows: list[BenchRow], meta: dict[str, Any]) -> str:
    memory = "resident set size per process" if meta["device"] == "cpu" else "GPU memory allocated per device"
    lines = [
        f"# yt8m-zoo benchmark ({meta['date']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"- yt8m-zoo {meta['yt8m_zoo']}"
        + (f" (commit {meta['commit']})" if meta.get("commit") else "")
        + f", paddle {meta['paddle']}, Python {meta['python']}",
        f"- machine: {meta['cpu']}, {meta['cpu_cores']} cores"
        + (f", {meta['gpu']}" if meta.get("gpu") else ""),
        f"- data: {meta['data']}",
        f"- training: {meta['training']} per configuration; train videos/s counts the steps after "
        f"{meta['warmup_steps']} warm-up step(s)",
        "- evaluation: the validation split, over all ranks (the metric's values are global over every rank's "
        "predictions)",
        *(
            ["- scaling = (train videos/s per device) / (the same at the smallest device count)"]
            if "| scaling" in table(rows, "github")
            else []
        ),
        f"- peak MiB = {memory}, the largest over the ranks",
        f"- total time: {meta['seconds']:.0f} s",
        "",
        table(rows, "github"),
        "",
    ]
    if meta["device"] == "gpu" and any(not r.error for r in rows):
        lines += [
            "GPU plan, measured (the columns of docs/bench.md's computed plan): train and inference videos/s "
            "per GPU as measured; PCIe = those videos/s x the bytes of a padded batch's video (uint8 / "
            "float32 features + mask); disk = videos/s x the training files' bytes per video; reader "
            "processes = data.num_workers per GPU of this run. Training precision: fp32 (paddle's matmuls "
            "may use tf32 on GPUs that have it).",
            "",
            gpu_plan_table(measured_gpu_rows(rows, meta.get("gpu", ""))),
            "",
        ]
    failed = [r for r in rows if r.error]
    if failed:
        lines += ["Failed configurations:", ""] + [
            f"- {r.model} on {r.devices} {r.device}: {r.error}" for r in failed
        ]
        lines.append("")
    return "\n".join(lines)


# The GPU plan's table (docs/bench.md): benchmarks/gpu_plan.py fills it with computed rows, ``zoo bench
# --gpus`` with measured ones; one function draws both, so the columns are the same.

# Published dense peak rates (TFLOP/s), NVIDIA's data sheets: A100 SXM 80 GB; H100 SXM 80 GB. Tensor-core
# numbers are without structured sparsity (the data sheets' starred figures are twice these).
GPU_PEAKS: dict[str, dict[str, Any]] = {
    "A100 SXM": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "pcie_gb_s": 32.0, "pcie": "PCIe 4.0 x16"},
    "H100 SXM": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "pcie_gb_s": 64.0, "pcie": "PCIe 5.0 x16"},
}
GPU_PLAN_COLUMNS = (
    "GPU",
    "precision",
    "peak TFLOP/s",
    "train videos/s",
    "inference videos/s",
    "PCIe GB/s uint8 / float",
    "disk MB/s (TFRecord)",
    "reader processes (TFRecord / packed, uint8)",
)


def batch_bytes_per_video(frames: int, feature_values: int) -> dict[str, int]:
    """Bytes of one padded video handed to the device: its features as uint8 or float32, plus the float32
    mask."""
    return {"uint8": frames * (feature_values + 4), "float": frames * (feature_values * 4 + 4)}


def _peak(gpu_name: str, precision: str) -> float | None:
    """The published peak of a GPU whose name contains one of GPU_PEAKS' models (A100, H100), else None."""
    for model, peaks in GPU_PEAKS.items():
        if model.split()[0] in gpu_name:
            return peaks.get(precision)
    return None


def measured_gpu_rows(rows: list[BenchRow], gpu_name: str, precision: str = "fp32") -> list[dict[str, Any]]:
    """The GPU plan's rows from measured ``zoo bench --gpus`` rows (failed ones left out): train and
    inference videos/s per GPU as measured; the PCIe and disk columns are those rates times the bytes per
    video (batches of ``frames`` padded frames; the training files' own bytes per video); the reader
    processes are the ones that fed the run (``data.num_workers`` per GPU), in the column of its data
    format."""
    out = []
    for row in rows:
        if row.error or row.device != "gpu":
            continue
        train = row.train_videos_per_s / row.devices
        infer = row.infer_videos_per_s / row.devices
        size = batch_bytes_per_video(row.frames, row.feature_values)
        disk = row.file_bytes_per_video
        out.append(
            {
                "gpu": f"{gpu_name or 'GPU'} ({row.model}, {row.devices} GPU{'s' if row.devices > 1 else ''}: per GPU)",
                "precision": precision,
                "peak_tflops": _peak(gpu_name, precision),
                "train_videos_per_s": round(train),
                "inference_videos_per_s": round(infer),
                "pcie_gb_s_uint8": round(train * size["uint8"] / 1e9, 2),
                "pcie_gb_s_float": round(train * size["float"] / 1e9, 2),
                "disk_mb_s_tfrecord": None if disk != disk else round(train * disk / 1e6),
                "reader_processes_tfrecord_uint8": (
                    row.reader_processes if row.data_format == "tfrecord" else None
                ),
                "reader_processes_packed_uint8": row.reader_processes
                if row.data_format == "packed"
                else None,
            }
        )
    return out


def _plan_cell(value: Any, digits: int | None = None) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:g}" if isinstance(value, float) else f"{value:,}"


def gpu_plan_table(rows: list[dict[str, Any]]) -> str:
    """The GPU plan as a markdown table (GPU_PLAN_COLUMNS), computed rows or measured ones alike. Keys:
    ``gpu``, ``precision``, ``peak_tflops``, ``train_videos_per_s``, ``inference_videos_per_s``,
    ``pcie_gb_s_uint8``, ``pcie_gb_s_float`` and, each optional (``-`` when absent or None),
    ``disk_mb_s_tfrecord``, ``reader_processes_tfrecord_uint8``, ``reader_processes_packed_uint8``."""
    lines = ["| " + " | ".join(GPU_PLAN_COLUMNS) + " |", "|" + " --- |" * len(GPU_PLAN_COLUMNS)]
    for r in rows:
        cells = [
            str(r["gpu"]),
            str(r["precision"]),
            _plan_cell(r.get("peak_tflops")),
            _plan_cell(r["train_videos_per_s"]),
            _plan_cell(r["inference_videos_per_s"]),
            f"{_plan_cell(r['pcie_gb_s_uint8'], 2)} / {_plan_cell(r['pcie_gb_s_float'], 2)}",
            _plan_cell(r.get("disk_mb_s_tfrecord")),
            f"{_plan_cell(r.get('reader_processes_tfrecord_uint8'))} / "
            f"{_plan_cell(r.get('reader_processes_packed_uint8'))}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(rows: list[BenchRow], settings: BenchSettings, meta: dict[str, Any]) -> dict[str, Path]:
    """NAME.md, NAME.csv, NAME.json and, with matplotlib, NAME.png (throughput against devices) in
    ``settings.output``."""
    out = Path(settings.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / settings.name
    paths = {
        "md": stem.with_suffix(".md"),
        "csv": stem.with_suffix(".csv"),
        "json": stem.with_suffix(".json"),
        "png": stem.with_suffix(".png"),
    }
    atomic_write_text(paths["md"], markdown(rows, meta))
    buf = io.StringIO()
    flat = [_flat_row(r) for r in rows]
    names: list[str] = []
    for row in flat:
        names += [k for k in row if k not in names]
    writer = csv.DictWriter(buf, fieldnames=names)
    writer.writeheader()
    for row in flat:
        writer.writerow({k: row.get(k, "") for k in names})
    atomic_write_text(paths["csv"], buf.getvalue())
    payload = {"meta": meta, "rows": [_json_row(r) for r in rows]}
    atomic_write_text(paths["json"], json.dumps(payload, indent=1))
    if not plot_throughput(paths["png"], rows, "GPUs" if settings.device == "gpu" else "CPU processes"):
        paths.pop("png")
    return paths


def plot_throughput(path: Path, rows: list[BenchRow], unit: str) -> bool:
    """Training and inference videos/s against the device count, one line per model (matplotlib). False
    when there is nothing to draw or matplotlib is not installed (the other result files hold the numbers)."""
    ok = [r for r in rows if not r.error]
    if not ok:
        return False
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(11, 4), dpi=100)
    for ax, key, title in zip(
        fig.subplots(1, 2),
        ("train_videos_per_s", "infer_videos_per_s"),
        ("training throughput", "inference throughput"),
    ):
        for model in dict.fromkeys(r.model for r in ok):
            mine = [r for r in ok if r.model == model]
            ax.plot([r.devices for r in mine], [getattr(r, key) for r in mine], marker="o", label=model)
        ax.set(title=title, xlabel=unit, ylabel="videos/s")
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return True


def _flat_row(row: BenchRow) -> dict[str, Any]:
    """The row's fields with its metrics as columns of their own (``display`` as one ``;``-joined cell)."""
    out = {k: v for k, v in dataclasses.asdict(row).items() if k != "metrics"}
    out["display"] = ";".join(row.display)
    for key, value in row.metrics.items():
        out.setdefault(key, value)
    return out


def _json_row(row: BenchRow) -> dict[str, Any]:
    """The row with its metrics both nested (``metrics``) and as top-level keys, NaN as null."""
    out = dataclasses.asdict(row)
    for key, value in row.metrics.items():
        out.setdefault(key, value)
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in out.items()}  # NaN is not JSON


# ---------------------------------------------------------------------------------------------------------
# Worker side (``zoo bench --worker SPEC``, one process per device)


def peak_memory_mib(device: str) -> float:
    if device == "gpu":
        import paddle

        return paddle.device.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train_throughput(run_dir: Path, warmup: int) -> tuple[float, int]:
    """Global examples per second after ``warmup`` steps, from the trainer's per-step log; and the steps."""
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        return float("nan"), 0
    first = rows[min(warmup, len(rows) - 1) - 1] if warmup > 0 and len(rows) > 1 else None
    last = rows[-1]
    if first is None:
        return float("nan"), len(rows)
    seconds = last["time"] - first["time"]
    return ((last["examples"] - first["examples"]) / seconds if seconds > 0 else float("nan")), len(rows)


def worker(spec_path: str) -> int:
    """Train, evaluate, measure on this rank; rank 0 writes the result file."""
    from zoo.config import load_config
    from zoo.engine.build import build_reader
    from zoo.engine.infer.loops import evaluate
    from zoo.engine.train.trainer import Trainer

    spec = json.loads(Path(spec_path).read_text())
    device = spec["device"]
    ctx = worker_context(device)
    with failure_report(ctx):
        cfg = load_config(spec["config"])
        trainer = Trainer(cfg, ctx=ctx, progress=False, overwrite=True, log=lambda msg: None)
        result = trainer.fit()
        distributed.broadcast_state(trainer.model, ctx)
        reader = build_reader(cfg, "valid")
        distributed.barrier(ctx)
        start = time.perf_counter()
        metrics, metric = evaluate(trainer.model, reader, cfg, ctx=ctx, desc="bench eval", progress=False)
        eval_seconds = time.perf_counter() - start
        videos = metrics.get("num_videos")
        if videos is None:  # a metric that does not count them: count the split (after the timing)
            videos = sum(1 for _ in reader)
        peaks = distributed.all_gather_objects(peak_memory_mib(device), ctx)
        if ctx.is_main:
            throughput, steps = train_throughput(Path(cfg.train.save_dir), int(spec["warmup"]))
            if throughput != throughput:  # no warm-up asked for, or a single step
                throughput = result.train_videos_per_s
            out = {
                "parameters": result.parameters,
                "steps": result.steps,
                "epochs": result.epochs,
                "train_videos_per_s": throughput,
                "train_seconds": result.seconds,
                "infer_videos_per_s": videos / max(eval_seconds, 1e-9),
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                "headline": metric.headline,
                "display": list(metric.display),
                "eval_videos": int(videos),
                "peak_memory_mib": max(peaks),
            }
            atomic_write_text(Path(spec["result"]), json.dumps(out))
    return 0
