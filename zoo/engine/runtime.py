"""The Paddle runtime, set up in one place.

``prepare_environment`` runs when an engine command starts (the first line of its ``run``; importing a
module of the engine sets nothing), before any plugin imports paddle: it steers the bundled MKL off its slow
path on AMD CPUs, quiets glog and paddle's start-up warnings and has glibc keep freed memory
(:func:`keep_freed_memory`; ``zoo models`` leaves the allocator alone). ``init_paddle`` picks the device and
the thread count, preparing the environment first if no command did.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from zoo.errors import UsageError

ENV_MALLOC = "ZOO_MALLOC_TUNING"
"""``ZOO_MALLOC_TUNING=0`` leaves glibc's malloc as it is (see :func:`keep_freed_memory`)."""
_GLIBC_MALLOC_ENV = (
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_TRIM_THRESHOLD_",
)
# mallopt(3) parameters and the values set: no block gets its own mmap (so none is unmapped on free), the heap
# is trimmed only past 1 GiB free at its top, and grows 64 MiB at a time
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_MALLOPT = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20))
_malloc_tuned: bool | None = None


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


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse instead of handing it back to the system at once.

    Paddle's CPU tensors come from malloc, and glibc serves every block over 32 MiB (a ``[32, 300, 1024]``
    float32 activation is 39 MiB) with a mapping of its own that it unmaps on free, so every training step
    and every predictor run faulted its activations in again, page by page: at the reference sizes 130,000
    page faults per exported-NeXtVLAD batch of 32 videos, a third of its time. With blocks kept in the heap
    the next step reuses them. Measured at the reference NeXtVLAD sizes (docs/cli.md): training steps
    1.27-1.42x and Paddle Inference batches 1.5-1.6x faster; the price is a higher peak RSS (+10-13% in
    training), because memory freed at the top of the heap goes back only past 1 GiB.

    Applied once per process, on Linux with glibc only, and not when the environment already sets glibc's
    malloc (``MALLOC_*_`` variables or ``GLIBC_TUNABLES`` naming ``glibc.malloc``) or ``ZOO_MALLOC_TUNING=0``.
    Returns whether it is in effect.
    """
    global _malloc_tuned
    if _malloc_tuned is not None:
        return _malloc_tuned
    _malloc_tuned = False
    from zoo.plugins import truthy

    if os.environ.get(ENV_MALLOC) is not None and not truthy(os.environ[ENV_MALLOC]):
        return False
    if any(name in os.environ for name in _GLIBC_MALLOC_ENV):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a glibc without mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _malloc_tuned = all(mallopt(param, value) == 1 for param, value in _MALLOPT)
    return _malloc_tuned


def prepare_environment(*, tune_malloc: bool = True) -> None:
    """Environment that must be in place before paddle is imported; explicit user settings win.
    ``tune_malloc``: also have glibc keep freed memory (:func:`keep_freed_memory`)."""
    import warnings

    if tune_malloc:
        keep_freed_memory()

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


def init_paddle(device: str = "cpu", threads: int | None = None, *, tune_malloc: bool = True):
    """Import paddle, select ``device`` ("cpu", "gpu" or "gpu:N") and use every available core on CPU."""
    prepare_environment(tune_malloc=tune_malloc)
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
