"""The Paddle runtime, set up in one place.

``prepare_environment`` runs when the engine starts (its command modules are loaded to run), before any
plugin imports paddle: it steers the bundled MKL off its slow path on AMD CPUs and quiets glog. ``init_paddle`` picks the device and the thread count.
"""

from __future__ import annotations

import os
import sys

from zoo.errors import UsageError


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_count() -> int:
    """Cores this process may use (respects affinity masks and cgroup-pinned CPUs)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def prepare_environment() -> None:
    """Environment that must be in place before paddle is imported; explicit user settings win."""
    import warnings

    # paddle's C++-extension helper warns about ccache at every import; it concerns building extensions only.
    warnings.filterwarnings("ignore", message="No ccache found")
    # paddle.nn.BatchNorm1D announces at every training start that it tracks running statistics (it always has).
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")
    if "paddle" in sys.modules:
        return  # too late for the environment variables below
    if _cpu_vendor() == "AuthenticAMD":
        # Paddle's bundled MKL picks a generic code path on AMD: matmuls ~3x, training ~9x slower.
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("FLAGS_call_stack_level", "0")


def visible_gpus(flag: str, otherwise: str) -> int:
    """How many GPUs paddle sees; a usage error naming ``flag`` (and ``otherwise``: what to do instead)
    when there is none: a CPU build of paddle, or no visible device."""
    prepare_environment()
    try:
        import paddle
    except ImportError:
        raise UsageError(
            f"{flag}: paddle is not installed: pip install 'yt8m-zoo[gpu]' (paddlepaddle-gpu)"
        ) from None
    if not paddle.is_compiled_with_cuda():
        raise UsageError(
            f"{flag}: this paddle build has no CUDA support (paddlepaddle CPU build). Install "
            f"paddlepaddle-gpu (pip install 'yt8m-zoo[gpu]'), or {otherwise}"
        )
    count = paddle.device.cuda.device_count()
    if count == 0:
        raise UsageError(
            f"{flag}: paddle has CUDA support but sees no GPU; check the driver and CUDA_VISIBLE_DEVICES, "
            f"or {otherwise}"
        )
    return count


def init_paddle(device: str = "cpu", threads: int | None = None):
    """Import paddle, select ``device`` ("cpu", "gpu" or "gpu:N") and use every available core on CPU."""
    prepare_environment()
    try:
        import paddle
    except ImportError:
        raise UsageError(
            "paddle is not installed: pip install 'yt8m-zoo[cpu]' (or [gpu] for paddlepaddle-gpu)"
        ) from None
    kind, _, index = device.partition(":")
    if kind == "gpu":
        count = visible_gpus("--device gpu", "use --device cpu")
        if index and int(index) >= count:
            raise UsageError(f"--device {device}: only {count} GPU(s) visible (0..{count - 1})")
        paddle.set_device(
            device if index else f"gpu:{os.environ.get('FLAGS_selected_gpus', '0').split(',')[0]}"
        )
    elif kind == "cpu":
        paddle.set_device("cpu")
    else:
        raise UsageError(f"--device {device!r}: expected cpu, gpu or gpu:N")
    n = threads or cpu_count()
    try:
        from paddle.base import core

        core.set_num_threads(n)
    except (ImportError, AttributeError):  # older paddle
        os.environ.setdefault("CPU_NUM", str(n))
    from zoo.nn import set_cpu_threads

    set_cpu_threads(n)
    return paddle
