"""Serving rows of bench_inference.py (``--serving``): zoo's exports against a PyTorch NeXtVLAD, fp32 and int8.

    python benchmarks/bench_inference.py --serving [--models nextvlad mix-nextvlad] [--rounds 2]

For each model at its reference size (the bundled config: NeXtVLAD 89M parameters, MixNeXtVLAD), with
trained-looking random weights, rgb 1024 + audio 128 features, 3862 classes, 150-300 frames per video:

- ``paddle fp32``: ``zoo export`` through Paddle Inference (what ``zoo predict --model`` runs);
- ``paddle fp32 custom-ops``: ``zoo export --custom-ops`` (NeXtVLAD's one-pass assignment kernel as a Paddle
  operator; left out when it cannot be built);
- ``onnx fp32``: ``zoo export --format onnx`` through ONNX Runtime;
- ``onnx int8``: the same ONNX model quantized as ``zoo export --precision int8`` does (dynamic, the
  model plugin's policy; the GAP check is left out here since random weights have no GAP: the quality
  row comes from a trained model);
- ``torch eager fp32`` / ``torch compile fp32``: a PyTorch NeXtVLAD of the same shapes, the formulation a
  PyTorch user writes (expansion, attention, assignment, VLAD as a batched product), in eager mode and
  under ``torch.compile`` (inductor, dynamic shapes, ``mode="max-autotune-no-cudagraphs"``: it measured
  faster than the default mode here);
- ``torch eager int8`` / ``torch compile int8``: the same after ``torch.ao.quantization.quantize_dynamic``
  of the same products as the zoo's int8 export (hidden layer, gating, classifier).

Speed: every scorer is loaded in one fresh process and warmed up (``torch.compile`` compiles there), then
the scorers take turns batch by batch (batch 32: ``--batches`` batches; batch 1: 16 videos) for
``--rounds`` rounds, so a busy machine slows them alike; per scorer the median round counts. Memory: each
scorer then runs alone in its own fresh process (load, one pass at both batch sizes); its peak RSS
(``VmHWM``; it includes the runtime itself: python, paddle or torch) is reported, with that pass's
videos/s (``alone``: not paired, only a cross-check). File size is what the scorer loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = {"rgb": 1024, "audio": 128}
COMPILE_MODE = "max-autotune-no-cudagraphs"
CLASSES = 3862
SCORERS = (
    "paddle fp32",
    "paddle fp32 custom-ops",
    "onnx fp32",
    "onnx int8",
    "torch eager fp32",
    "torch compile fp32",
    "torch eager int8",
    "torch compile int8",
)


# ---------------------------------------------------------------------------------------------------------
# The PyTorch peer


def torch_model(name: str, options: dict[str, Any]) -> Any:
    """A PyTorch NeXtVLAD (or MixNeXtVLAD) with the zoo model's shapes, in eval mode, random weights."""
    import torch
    from torch import nn

    class NeXtVLADLayer(nn.Module):
        def __init__(self, d: int, k: int, g: int, expansion: int) -> None:
            super().__init__()
            self.k, self.g, self.f = k, g, expansion * d // g
            self.expansion = nn.Linear(d, expansion * d)
            self.attention = nn.Linear(expansion * d, g)
            self.assign = nn.Linear(expansion * d, g * k, bias=False)
            self.assign_bn = nn.BatchNorm1d(g * k)
            self.centers = nn.Parameter(torch.randn(1, self.f, k) * 0.01)
            self.vlad_bn = nn.BatchNorm1d(self.f * k)

        def forward(self, x: Any, mask: Any) -> Any:
            b, t, _ = x.shape
            x = self.expansion(x)
            attention = torch.sigmoid(self.attention(x)) * mask.unsqueeze(-1)  # [B, T, G]
            assign = self.assign_bn(self.assign(x).reshape(b * t, -1)).reshape(b, t * self.g, self.k)
            assign = assign.softmax(-1) * attention.reshape(b, t * self.g, 1)
            centers = assign.sum(1, keepdim=True) * self.centers  # [B, F, K]
            vlad = torch.bmm(assign.transpose(1, 2), x.reshape(b, t * self.g, self.f)).transpose(1, 2)
            vlad = nn.functional.normalize(vlad - centers, dim=1)
            return self.vlad_bn(vlad.reshape(b, -1))

    class Branch(nn.Module):
        def __init__(
            self, sizes: list[tuple[int, int, int]], hidden: int, reduction: int, expansion: int
        ) -> None:
            super().__init__()
            self.vlads = nn.ModuleList(NeXtVLADLayer(d, k, g, expansion) for d, k, g in sizes)
            vlad = sum(layer.f * layer.k for layer in self.vlads)
            self.hidden = nn.Linear(vlad, hidden, bias=False)
            self.hidden_bn = nn.BatchNorm1d(hidden)
            self.squeeze = nn.Linear(hidden, hidden // reduction, bias=False)
            self.squeeze_bn = nn.BatchNorm1d(hidden // reduction)
            self.excite = nn.Linear(hidden // reduction, hidden, bias=False)
            self.head = nn.Linear(hidden, CLASSES)

        def forward(self, features: list[Any], mask: Any) -> Any:
            x = torch.cat([layer(f, mask) for layer, f in zip(self.vlads, features)], 1)
            x = self.hidden_bn(self.hidden(x))
            x = x * torch.sigmoid(self.excite(torch.relu(self.squeeze_bn(self.squeeze(x)))))
            return self.head(x)

    k, g, e = options["cluster_size"], options["groups"], options["expansion"]
    hidden, reduction = options["hidden_size"], options["gating_reduction"]

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if name == "nextvlad":
                self.branches = nn.ModuleList([Branch([(1024, k, g), (128, k, g)], hidden, reduction, e)])
                self.gate = None
            else:
                sizes = [(1024, k, g), (128, k // 2, g // 2)]
                self.branches = nn.ModuleList(
                    Branch(sizes, hidden, reduction, e) for _ in range(options["mix_number"])
                )
                self.gate_bn = nn.BatchNorm1d(1152)
                self.gate = nn.Linear(1152, options["mix_number"])

        def forward(self, rgb: Any, audio: Any, mask: Any) -> Any:
            logits = [branch([rgb, audio], mask) for branch in self.branches]
            if self.gate is None:
                return torch.sigmoid(logits[0])
            frames = torch.cat([rgb, audio], -1)
            mean = (frames * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
            weights = self.gate(self.gate_bn(mean)).softmax(-1)
            return torch.sigmoid((torch.stack(logits, 1) * weights.unsqueeze(-1)).sum(1))

    model = Model()
    model.eval()
    return model


def torch_int8(model: Any) -> Any:
    """``quantize_dynamic`` of the products the zoo's int8 export quantizes: since NeXtVLAD's policy puts the
    frame-level products in int8 too (expansion, attention, assignments: in the zoo's export their factored
    products), every ``nn.Linear``; the pooling by the assignments (a batched product of two activations)
    stays fp32 on both sides."""
    import torch

    names = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    return torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8)


# ---------------------------------------------------------------------------------------------------------
# One scorer in its own process


_TORCH_MODELS: dict[str, Any] = {}  # per precision: eager and compiled scorers share one set of weights


def _scorer(kind: str, work: Path) -> Any:
    if kind.startswith("torch"):
        import torch

        from zoo.engine.runtime import cpu_count

        torch.set_num_threads(cpu_count())
        precision = "int8" if "int8" in kind else "fp32"
        model = _TORCH_MODELS.get(precision)
        if model is None:
            spec = json.loads((work / "torch.json").read_text())
            model = torch_model(spec["name"], spec["options"])
            model.load_state_dict(torch.load(work / "torch.pt", weights_only=True))
            if precision == "int8":
                model = torch_int8(model)
            _TORCH_MODELS[precision] = model
        if "compile" in kind:
            # the CPU's strongest mode without writing kernels: inductor tries its GEMM templates against
            # the aten (MKL) ones per shape (CUDA graphs do not apply on a CPU)
            model = torch.compile(model, dynamic=True, mode=COMPILE_MODE)

        def score(batch: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                args = [torch.from_numpy(batch[n]) for n in ("rgb", "audio", "mask")]
                return model(*args).numpy()

        return score
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.runtime import init_paddle

    init_paddle("cpu")
    directory = {
        "paddle fp32": "paddle",
        "paddle fp32 custom-ops": "paddle-custom",
        "onnx fp32": "onnx",
        "onnx int8": "int8",
    }[kind]
    return load_exported(work / directory).predict


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: reset by exec, unlike ru_maxrss, which a child started
    by fork + exec inherits from its parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, work: str) -> int:
    """Run in a fresh process: load, warm up, time both batch sizes; print one JSON line."""
    root = Path(work)
    big, small = _load_batches(root)
    start = time.perf_counter()
    score = _scorer(kind, root)
    score(big[0])
    score(small[0])
    load_s = time.perf_counter() - start
    out: dict[str, Any] = {"kind": kind, "load_and_warmup_s": round(load_s, 1)}
    for label, group in (("batch32", big), ("batch1", small)):
        start = time.perf_counter()
        probs = [score(b) for b in group]
        seconds = time.perf_counter() - start
        out[label] = sum(len(b["mask"]) for b in group) / seconds
        out[f"{label}_checksum"] = float(sum(p.sum() for p in probs))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------------------------------------------------
# The parent: exports, then the rounds


def random_batches(count: int, size: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Batches of 150-300 frames per video, features uniform in [-2, 2] (the dequantized uint8 range)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        lengths = rng.integers(150, 301, size)
        t = int(lengths.max())
        mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.float32)
        batch = {
            n: rng.uniform(-2, 2, (size, t, d)).astype(np.float32) * mask[..., None]
            for n, d in FEATURES.items()
        }
        batch.update(mask=mask, num_frames=lengths.astype(np.int64))
        out.append(batch)
    return out


def _size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def prepare(name: str, work: Path, batches: int) -> dict[str, Any]:
    """Export ``name`` at its reference size three ways and save the PyTorch peer; returns sizes and facts."""
    import onnx
    import torch

    from zoo.config import load_config
    from zoo.engine.build import count_parameters
    from zoo.engine.export.metadata import file_record
    from zoo.engine.export.onnx import ONNX_FILE, export_onnx
    from zoo.engine.export.quantize import (
        Int8Options,
        _quantize,
        constants_to_initializers,
        policy_of,
        select_products,
    )
    from zoo.engine.export.tracing import export_model
    from zoo.engine.runs.checkpoint import save_weights
    from zoo.errors import ZooError
    from zoo.testing import trained_model

    config = load_config(path=str(Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml"))
    # eigenvalues: reverse whitening is folded into the expansion weight (no cost at inference); random
    # weights need none, and MixNeXtVLAD's config would fetch them from the author's repository
    cfg = config.with_overrides(
        {
            "dataset": {"num_classes": CLASSES, "features": FEATURES, "max_frames": 300},
            "model": {"eigenvalues": None},
        },
        "bench",
    )
    model = trained_model(cfg)
    weights = work / "weights.safetensors"
    save_weights(weights, model)
    t0 = time.perf_counter()
    export_model(cfg, str(weights), work / "paddle")
    try:  # zoo export --custom-ops: NeXtVLAD's assignment kernel as a Paddle operator (needs a C++ compiler)
        export_model(cfg, str(weights), work / "paddle-custom", custom_ops=True)
    except ZooError as exc:
        print(f"{name}: no --custom-ops export ({exc})", file=sys.stderr)
    export_onnx(cfg, str(weights), work / "onnx")
    graph = onnx.load(str(work / "onnx" / ONNX_FILE))
    constants_to_initializers(graph.graph)
    products = select_products(graph.graph, model, policy_of(model, name))
    onnx.save(graph, str(work / "prepared.onnx"))
    del graph
    (work / "int8").mkdir()
    _quantize(
        work / "prepared.onnx",
        work / "int8" / ONNX_FILE,
        [p["node"] for p in products if p["int8"]],
        Int8Options(),
        None,
    )
    (work / "prepared.onnx").unlink()
    meta = json.loads((work / "onnx" / "metadata.json").read_text())
    meta["files"] = {ONNX_FILE: file_record(work / "int8" / ONNX_FILE)}
    (work / "int8" / "metadata.json").write_text(json.dumps(meta))
    export_s = time.perf_counter() - t0
    keys = ("cluster_size", "groups", "expansion", "hidden_size", "gating_reduction", "mix_number")
    options = {k: v for k, v in dataclasses.asdict(model.config).items() if k in keys}
    peer = torch_model(name, options)
    torch.save(peer.state_dict(), work / "torch.pt")
    torch.save(torch_int8(peer).state_dict(), work / "torch-int8.pt")
    (work / "torch.json").write_text(json.dumps({"name": name, "options": options}))
    arrays: dict[str, Any] = {"n32": batches, "n1": 16}
    for i, b in enumerate(random_batches(batches, 32, 0)):
        arrays.update({f"b32_{i}_{k}": v for k, v in b.items()})
    for i, b in enumerate(random_batches(16, 1, 1)):
        arrays.update({f"b1_{i}_{k}": v for k, v in b.items()})
    np.savez(work / "batches.npz", **arrays)
    facts = {
        "parameters": count_parameters(model),
        "torch_parameters": sum(p.numel() for p in peer.parameters()),
        "int8_products": sum(p["int8"] for p in products),
        "products": len(products),
        "export_seconds": round(export_s, 1),
        "file_mb": {
            "paddle fp32": round(_size(work / "paddle") / 1e6, 1),
            "onnx fp32": round(_size(work / "onnx" / ONNX_FILE) / 1e6, 1),
            "onnx int8": round(_size(work / "int8" / ONNX_FILE) / 1e6, 1),
            "torch fp32": round(_size(work / "torch.pt") / 1e6, 1),
            "torch int8": round(_size(work / "torch-int8.pt") / 1e6, 1),
        },
    }
    (work / "facts.json").write_text(json.dumps(facts))
    return facts


def speed_child(kinds: list[str], work: str, rounds: int) -> int:
    """Every scorer in this one process, taking turns batch by batch for ``rounds`` rounds, so the load of a
    shared machine falls on all alike; prints per scorer the median round's videos/s at batch 32 and 1."""
    root = Path(work)
    big, small = _load_batches(root)
    scorers = {kind: _scorer(kind, root) for kind in kinds}
    for score in scorers.values():  # warm-up (torch.compile compiles here)
        score(big[0])
        score(small[0])
    out: dict[str, Any] = {}
    for label, group in (("batch32", big), ("batch1", small)):
        spent: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(rounds):
            seconds = dict.fromkeys(kinds, 0.0)
            for batch in group:
                for kind, score in scorers.items():
                    start = time.perf_counter()
                    score(batch)
                    seconds[kind] += time.perf_counter() - start
            for kind in kinds:
                spent[kind].append(seconds[kind])
        videos = sum(len(b["mask"]) for b in group)
        for kind in kinds:
            out.setdefault(kind, {})[label] = videos / statistics.median(spent[kind])
            out[kind][f"{label}_rounds"] = [round(videos / t, 2) for t in spent[kind]]
    print(json.dumps(out))
    return 0


def _load_batches(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = np.load(root / "batches.npz")
    keys = ("rgb", "audio", "mask", "num_frames")
    big = [{k: data[f"b32_{i}_{k}"] for k in keys} for i in range(int(data["n32"]))]
    small = [{k: data[f"b1_{i}_{k}"] for k in keys} for i in range(int(data["n1"]))]
    return big, small


def _child(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        return {"error": lines[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(
    models: list[str],
    rounds: int,
    batches: int,
    scorers: list[str] | None = None,
    keep: str | None = None,
    by_precision: bool = False,
) -> dict[str, Any]:
    """``keep``: a directory to keep (and reuse) each model's exports in, ``KEEP/MODEL``; ``by_precision``:
    time the fp32 and the int8 scorers in two processes (each group takes turns batch by batch)."""
    import torch

    results: dict[str, Any] = {
        "torch": torch.__version__,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "models": {},
    }
    kinds = list(scorers or SCORERS)
    for name in models:
        with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
            work = Path(keep) / name if keep else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            if (work / "facts.json").is_file():
                facts = json.loads((work / "facts.json").read_text())
            else:
                facts = prepare(name, work, batches)
            print(f"{name}: {facts}", file=sys.stderr)
            # no --custom-ops export (no C++ compiler at export time): that row is left out
            custom = (work / "paddle-custom").is_dir()
            model_kinds = [kind for kind in kinds if custom or kind != "paddle fp32 custom-ops"]
            load = [os.getloadavg()[0]]
            # by_precision: the fp32 scorers take turns in one process, then the int8 ones in another (less
            # memory at once: MixNeXtVLAD's eight scorers together need about 9 GB)
            groups = (
                [[k for k in model_kinds if "fp32" in k], [k for k in model_kinds if "int8" in k]]
                if by_precision
                else [model_kinds]
            )
            speed = {}
            for group in filter(None, groups):
                part = _child(["--speed", ",".join(group), str(work), str(rounds)], timeout=7200)
                speed.update(part if "error" not in part else dict.fromkeys(group, part))
            print(f"  speed: {speed}", file=sys.stderr)
            memory = {}
            for kind in model_kinds:
                load.append(os.getloadavg()[0])
                memory[kind] = _child(["--child", kind, str(work)])
                print(f"  {kind} alone: {memory[kind]}", file=sys.stderr)
            table = {}
            for kind in model_kinds:
                row: dict[str, Any] = {}
                if "error" in speed[kind]:
                    row["error"] = speed[kind]["error"]
                else:
                    row["videos_per_s_batch32"] = round(speed[kind]["batch32"], 2)
                    row["videos_per_s_batch1"] = round(speed[kind]["batch1"], 2)
                    row["rounds_batch32"] = speed[kind]["batch32_rounds"]
                if "error" in memory[kind]:
                    row["alone_error"] = memory[kind]["error"]
                else:
                    row["peak_rss_mb"] = round(memory[kind]["peak_rss_mb"])
                    row["alone_videos_per_s_batch32"] = round(memory[kind]["batch32"], 2)
                    row["load_and_warmup_s"] = memory[kind]["load_and_warmup_s"]
                table[kind] = row
            results["models"][name] = {
                **facts,
                "scorers": table,
                "load_average": round(statistics.mean(load), 1),
                "speed_groups": [g for g in groups if g],
                "goals": goals(table, facts, paired=len([g for g in groups if g]) == 1),
            }
    return results


def goals(table: dict[str, Any], facts: dict[str, Any], paired: bool = True) -> dict[str, Any]:
    """The issue's goals, computed from this run's rows. ``paired``: every scorer took turns in one process;
    if not (``by_precision``), int8 against fp32 compares two processes' rounds, which the load may have
    moved apart, and says so."""

    def speed(kind: str, key: str = "videos_per_s_batch32") -> float:
        return table.get(kind, {}).get(key, 0.0)

    out: dict[str, Any] = {}
    if speed("onnx fp32") and speed("onnx int8"):
        ratio = speed("onnx int8") / speed("onnx fp32")
        out["int8_vs_onnx_fp32_batch32"] = {
            "ratio": round(ratio, 2),
            "goal": 2.0,
            "met": ratio >= 2.0,
            "paired": paired,
        }
    size = facts["file_mb"]["onnx int8"] / facts["file_mb"]["onnx fp32"]
    out["int8_file_vs_fp32"] = {"ratio": round(size, 3), "goal": "<= 0.333", "met": size <= 1 / 3}
    for precision in ("fp32", "int8"):
        for key in ("videos_per_s_batch32", "videos_per_s_batch1"):
            zoo_best = max(
                (speed(k, key), k) for k in SCORERS if not k.startswith("torch") and precision in k
            )
            torch_best = max((speed(k, key), k) for k in SCORERS if k.startswith("torch") and precision in k)
            if torch_best[0]:
                ratio = zoo_best[0] / torch_best[0]
                out[f"best_zoo_vs_best_torch_{precision}_{key.rsplit('_', 1)[-1]}"] = {
                    "zoo": zoo_best[1],
                    "torch": torch_best[1],
                    "ratio": round(ratio, 2),
                    "goal": 1.5,
                    "met": ratio >= 1.5,
                }
    return out


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    sys.exit(child(sys.argv[2], sys.argv[3]))
if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--speed":
    sys.exit(speed_child(sys.argv[2].split(","), sys.argv[3], int(sys.argv[4])))
