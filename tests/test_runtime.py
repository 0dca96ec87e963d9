"""The process runtime: glibc malloc keeps freed memory (zoo.engine.runtime.keep_freed_memory), and the
environment is set when an engine command runs, never when a module is imported."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.integration,  # each probe is a fresh process
    pytest.mark.skipif(
        sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc tuning: Linux only"
    ),
]

# Allocates, fills and frees a 96 MiB block twice with malloc (as paddle's CPU allocator does) and counts the
# page faults of the second fill: glibc's default maps such a block on its own and unmaps it on free, so every
# page faults again; kept in the heap, the second block reuses the first one's pages.
_PROBE = """
import ctypes, json, resource
from zoo.engine.runtime import keep_freed_memory
tuned = keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
def fill():
    block = libc.malloc(96 << 20)
    ctypes.memset(block, 1, 96 << 20)
    libc.free(block)
fill()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fill()
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "ZOO_MALLOC"))}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_blocks_are_reused_without_page_faults() -> None:
    pages = (96 << 20) // 4096
    tuned = _probe()
    assert tuned["tuned"] is True
    assert tuned["faults"] < pages // 10, tuned
    untuned = _probe(ZOO_MALLOC_TUNING="0")  # the same probe with glibc's defaults faults every page in again
    assert untuned["tuned"] is False
    assert untuned["faults"] > pages // 2, untuned


def test_explicit_glibc_settings_win() -> None:
    assert _probe(MALLOC_ARENA_MAX="2")["tuned"] is False
    assert _probe(ZOO_MALLOC_TUNING="1")["tuned"] is True


_STATE = """
import json, os, warnings
from zoo.engine import runtime

def state():
    return {
        "malloc_tried": runtime._malloc_tuned is not None,
        "glog": os.environ.get("GLOG_minloglevel"),
        "ccache_filter": any(f[1] is not None and f[1].pattern.startswith("No ccache") for f in warnings.filters),
    }
"""
# every module of the engine imported: nothing set
_IMPORT_ALL = (
    _STATE
    + """
import importlib, pkgutil
import zoo.engine
for module in pkgutil.walk_packages(zoo.engine.__path__, "zoo.engine."):
    importlib.import_module(module.name)
print(json.dumps(state()))
"""
)
# `zoo models`, then an engine command that fails at once (weights that do not exist)
_COMMANDS = (
    _STATE
    + """
from zoo.cli import main
main(["models"])
models = state()
code = main(["eval", "nextvlad", "--weights", "/nonexistent/weights.safetensors"])
print(json.dumps({"models": models, "eval": {**state(), "code": code}}))
"""
)


def _run(code: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MALLOC_", "ZOO_MALLOC", "GLOG_", "FLAGS_call_stack"))
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_environment_is_set_when_an_engine_command_runs_not_on_import() -> None:
    assert _run(_IMPORT_ALL) == {"malloc_tried": False, "glog": None, "ccache_filter": False}
    got = _run(_COMMANDS)
    assert got["models"]["malloc_tried"] is False, got  # zoo models leaves the allocator alone
    assert got["eval"]["code"] != 0
    assert got["eval"]["malloc_tried"] and got["eval"]["glog"] == "2" and got["eval"]["ccache_filter"], got
