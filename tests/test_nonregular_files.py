"""A FIFO given as data, as a list file or as a config is refused at once, never opened for a blocking read."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.integration,  # each probe runs in a subprocess with a timeout
    pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo"),
]

PROBE = """
import sys
from zoo.errors import ZooError
try:
    {call}
except ZooError as exc:
    print("REFUSED", exc)
    sys.exit(3)
print("ACCEPTED")
"""


def run_probe(call: str) -> subprocess.CompletedProcess:
    # A subprocess with a timeout: if the FIFO were opened, the read would block and the test would fail
    # on the timeout instead of hanging the suite.
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(call=call)], capture_output=True, text=True, timeout=60
    )


@pytest.fixture()
def fifo(tmp_path):
    path = tmp_path / "pipe.tfrecord"
    os.mkfifo(path)
    return path


def test_fifo_as_a_data_file_is_refused(fifo):
    done = run_probe(f"from zoo.data.sources import expand_paths; expand_paths([{str(fifo)!r}])")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not a regular file" in done.stdout and str(fifo) in done.stdout


def test_fifo_as_a_list_file_is_refused(tmp_path):
    path = tmp_path / "train.list"
    os.mkfifo(path)
    done = run_probe(f"from zoo.data.sources import expand_paths; expand_paths([{str(path)!r}])")
    assert done.returncode == 3 and "not a regular file" in done.stdout, done.stdout + done.stderr


def test_fifo_through_a_reader_is_refused(fifo):
    call = f"import zoo; zoo.build_reader('yt8m-frame', preset='yt8m', paths=[{str(fifo)!r}]).sources()"
    done = run_probe(call)
    assert done.returncode == 3 and "not a regular file" in done.stdout, done.stdout + done.stderr


def test_fifo_as_a_config_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    done = run_probe(f"from zoo.config import read_yaml; read_yaml({str(path)!r})")
    assert done.returncode == 3 and "not a regular file" in done.stdout, done.stdout + done.stderr
