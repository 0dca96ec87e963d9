"""Google's Inception graph converted to ONNX by tf2onnx, in a process of its own (``--runtime onnx``).

Why a process, with protobuf's pure-Python implementation: tf2onnx's optimizer rewrites every node's
attributes after each of its passes (12 optimizers, repeated until nothing changes), and with protobuf's
default (upb) backend the replaced attributes stay allocated in the node's arena as long as the node lives,
so every pass keeps one more copy of every weight: about 26 copies of an 87 MB Inception-sized graph, 5.5 GB
at the peak. With the pure-Python implementation the replaced attributes are freed, and the conversion peaks
at about 1.9 GB (most of it TensorFlow itself), then gives all of it back when the process ends. The
implementation has to be chosen before protobuf is first imported, hence the process.

    python -m zoo_yt8m_extract.onnx_conversion GRAPH.pb OUT.onnx

prints one JSON line (``seconds``, ``rss_before_mib``: before converting, ``peak_rss_mib``) and exits 0,
or prints the reason and exits 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from zoo.errors import DataError

INPUT = "DecodeJpeg:0"  # as networks.INPUT / OUTPUT (networks imports TensorFlow, this module must not)
OUTPUT = "pool_3/_reshape:0"
OPSET = 17
PROTOBUF_ENV = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"


def convert(graph: Path, out: Path, where: str) -> dict:
    """Convert the GraphDef in ``graph`` to ``out`` in a child process; its ``seconds`` and ``peak_rss_mib``."""
    env = dict(os.environ)
    env[PROTOBUF_ENV] = "python"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = subprocess.run(
        [sys.executable, "-m", "zoo_yt8m_extract.onnx_conversion", str(graph), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode < 0:
        raise DataError(
            f"{where}: the ONNX conversion was killed (signal {-result.returncode}; out of memory?); "
            "use --runtime tensorflow"
        )
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise DataError(f"{where}: cannot be converted to ONNX ({reason}); use --runtime tensorflow")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    graph, out = Path(argv[0]), Path(argv[1])
    start = time.perf_counter()
    try:
        import tensorflow as tf
        import tf2onnx

        from zoo.atomic import atomic_write_bytes

        graph_def = tf.compat.v1.GraphDef.FromString(graph.read_bytes())
        before = _rss_mib()
        model, _ = tf2onnx.convert.from_graph_def(
            graph_def, input_names=[INPUT], output_names=[OUTPUT], opset=OPSET
        )
        atomic_write_bytes(out, model.SerializeToString())
    except Exception as exc:  # tf2onnx raises many kinds of errors for ops it cannot convert
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    numbers = {"seconds": time.perf_counter() - start, "rss_before_mib": before, "peak_rss_mib": _peak_mib()}
    print(json.dumps({key: round(value, 1) for key, value in numbers.items()}))
    return 0


def _peak_mib() -> float:
    """This process's peak resident memory (``VmHWM``: unlike ``ru_maxrss``, not the parent's at the fork)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise OSError("no VmHWM in /proc/self/status")


def _rss_mib() -> float:
    """The resident memory now (TensorFlow imported, the graph read): what the conversion adds is above it."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
