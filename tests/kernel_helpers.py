"""The C kernels' tests: a kernel that is not built skips them (an install without a compiler is supported),
unless ``ZOO_REQUIRE_KERNELS=1`` (set by CI, ``.ci/run``), where it fails them: a C file that stops compiling
(the extensions are ``optional`` in pyproject.toml, so pip only warns) must not leave CI green."""

from __future__ import annotations

import os
import shutil
from typing import Any, NoReturn

import pytest

REQUIRE = "ZOO_REQUIRE_KERNELS"


def kernels_required() -> bool:
    return os.environ.get(REQUIRE) == "1"


def kernel_missing(reason: str) -> NoReturn:
    """Skip the test, or fail it where every kernel is required."""
    if kernels_required():
        pytest.fail(
            f"{reason}; {REQUIRE}=1 requires every C kernel: see pip's build log (pip install -v -e .) for why "
            f"it did not build",
            pytrace=False,
        )
    pytest.skip(reason)


def require_kernel(kernel: Any, reason: str) -> Any:
    """``kernel`` (a built extension module), or skip/fail with ``reason`` when it is None."""
    if kernel is None:
        kernel_missing(reason)
    return kernel


def require_compiler(what: str) -> None:
    """A C/C++ compiler on PATH (the custom operator is built on first use), or skip/fail."""
    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        kernel_missing(f"{what} is built on first use and needs a C++ compiler")
