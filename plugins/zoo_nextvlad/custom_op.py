"""NeXtVLAD's assignment kernel as a Paddle custom operator (``assign_op.cc``), for exports made with
``zoo export --custom-ops``.

An exported program can only call operators registered in the process that runs it. Paddle's stock CPU ops
do NeXtVLAD's softmax, attention and mask in four single-threaded passes where this one kernel does one
threaded pass (the same one the dygraph model uses through ``_assign.c``), so an export that calls it runs
faster on CPU, at a price: it needs this operator built and loaded wherever it is run. :func:`load` builds it
on first use with ``paddle.utils.cpp_extension`` (a C++ compiler and the installed paddle's headers; about
15 s) into the cache (``zoo.paths.cache_dir("ops", ...)``, one build per paddle version and source) and
registers it in this process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import shutil
import warnings
from pathlib import Path
from types import ModuleType

from zoo.errors import ZooError
from zoo.paths import cache_dir

OP_NAME = "zoo_nextvlad_assign"
_HERE = Path(__file__).resolve().parent
SOURCES = ("assign_op.cc", "assign_kernel.h")
COMPLETE = "BUILD-COMPLETE"
"""Written into the build directory after a build succeeded; a directory without it is built again."""
_loaded: ModuleType | None = None


def build_directory() -> Path:
    """Where the operator is built: per paddle version and source digest, so an upgrade rebuilds it (the
    directory appears in ``cache_dir("ops")``; the builder's lock file sits beside it)."""
    import paddle

    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((_HERE / name).read_bytes())
    return cache_dir("ops", f"paddle-{paddle.__version__}-{digest.hexdigest()[:16]}")


def load() -> ModuleType:
    """The module whose ``zoo_nextvlad_assign`` runs the operator (built on first use, then from the cache);
    registers the operator in this process. A ZooError says what is missing when it cannot be built."""
    global _loaded
    if _loaded is not None:
        return _loaded
    missing = [name for name in SOURCES if not (_HERE / name).is_file()]
    if missing:
        raise ZooError(
            f"NeXtVLAD's custom operator: {', '.join(missing)} missing from {_HERE}; reinstall yt8m-zoo"
        )
    with warnings.catch_warnings():  # its import warns that ccache is missing, which concerns rebuilds only
        warnings.simplefilter("ignore")
        from paddle.utils.cpp_extension import load as build

    directory = build_directory()
    logging.disable(logging.INFO)  # paddle's builder logs "using custom operator only" at INFO, twice
    try:
        with _locked(directory.with_name(directory.name + ".lock")), contextlib.redirect_stdout(None):
            complete = directory / COMPLETE
            if not complete.is_file():  # first build, or what an interrupted one left: start clean
                shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True, exist_ok=True)
            _loaded = build(
                name="zoo_nextvlad_ops",
                sources=[str(_HERE / SOURCES[0])],
                extra_cxx_cflags=["-O3", "-fno-math-errno"],
                extra_include_paths=[str(_HERE)],
                build_directory=str(directory),
                verbose=False,
            )
            complete.touch()
    except Exception as exc:  # noqa: BLE001 - the compiler and paddle's builder raise many types
        raise ZooError(
            f"could not build NeXtVLAD's custom operator in {directory} (it needs a C++ compiler and "
            f"paddle's headers): {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
            "; export without --custom-ops, or install a compiler (e.g. apt install g++)"
        ) from exc
    finally:
        logging.disable(logging.NOTSET)
    return _loaded


@contextlib.contextmanager
def _locked(path: Path):
    """One build at a time per directory, across processes (a second one waits, then loads the first's)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
