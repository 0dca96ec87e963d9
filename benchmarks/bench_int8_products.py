"""Which products in int8: NeXtVLAD's policy (after the pooling) against every constant product, same run.

    python benchmarks/bench_int8_products.py KEEP_DIR/nextvlad

Uses the exports ``bench_inference.py --serving --keep KEEP_DIR`` left in ``KEEP_DIR/nextvlad`` (``onnx``:
fp32, ``int8``: the policy's products), quantizes every constant ``MatMul``/``Gemm`` of the fp32 model into
``int8all`` (what a model without a policy gets), and times the three through ONNX Runtime taking turns
batch by batch (3 rounds, median; batch 32 and batch 1, the serving bench's batches). Prints videos/s, every
round, the largest probability difference from fp32 on the first batch and the file size. No GAP: the
weights are random; quality needs a trained model exported both ways.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import onnx

from zoo.contracts import Int8Policy
from zoo.engine.export.metadata import file_record
from zoo.engine.export.onnx import ONNX_FILE
from zoo.engine.export.predictor import load_exported
from zoo.engine.export.quantize import Int8Options, _quantize, constants_to_initializers, select_products
from zoo.engine.runtime import init_paddle


class _NoParameters:
    def named_parameters(self) -> list:
        return []  # Int8Policy() (quantize=None) takes every constant product whatever it is


def main(work: Path) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import serving_peers

    init_paddle("cpu")
    out = work / "int8all"
    if not (out / "metadata.json").exists():
        model = onnx.load(str(work / "onnx" / ONNX_FILE))
        constants_to_initializers(model.graph)
        products = select_products(model.graph, _NoParameters(), Int8Policy())
        onnx.save(model, str(work / "prepared-all.onnx"))
        del model
        out.mkdir(exist_ok=True)
        nodes = [p["node"] for p in products]
        _quantize(work / "prepared-all.onnx", out / ONNX_FILE, nodes, Int8Options(), None)
        (work / "prepared-all.onnx").unlink()
        meta = json.loads((work / "onnx" / "metadata.json").read_text())
        meta["files"] = {ONNX_FILE: file_record(out / ONNX_FILE)}
        (out / "metadata.json").write_text(json.dumps(meta))
        print(f"quantized {len(products)} products", file=sys.stderr)
    big, small = serving_peers._load_batches(work)
    scorers = {k: load_exported(work / k).predict for k in ("onnx", "int8", "int8all")}
    first = {k: s(big[0]) for k, s in scorers.items()}
    result = {"max_abs_diff_vs_fp32": {k: float(abs(v - first["onnx"]).max()) for k, v in first.items()}}
    for label, group in (("batch32", big), ("batch1", small)):
        spent: dict[str, list[float]] = {k: [] for k in scorers}
        for _ in range(3):
            seconds = dict.fromkeys(scorers, 0.0)
            for batch in group:
                for k, score in scorers.items():
                    start = time.perf_counter()
                    score(batch)
                    seconds[k] += time.perf_counter() - start
            for k in scorers:
                spent[k].append(seconds[k])
        videos = sum(len(b["mask"]) for b in group)
        result[label] = {k: round(videos / statistics.median(v), 2) for k, v in spent.items()}
        result[f"{label}_rounds"] = {k: [round(videos / t, 2) for t in v] for k, v in spent.items()}
    result["file_mb"] = {k: round((work / k / ONNX_FILE).stat().st_size / 1e6, 1) for k in scorers}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
