"""Property tests: random and mutated bytes fed to every parser of user input raise only the project's own
errors (ZooError subclasses, which the CLI turns into a one-paragraph message and exit code 1 or 2), never a
raw traceback. The suite's budget is small (ZOO_FUZZ_EXAMPLES raises it; docs/reliability.md has a long run).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zoo_yt8m_data.download import parse_plan
from zoo_yt8m_data.tfrecord import frame, read_records
from zoo_yt8m_data.wire import (
    decode_feature,
    decode_frames,
    encode_sequence_example,
    parse_example,
    parse_sequence_example,
)
from zoo_yt8m_metrics.kaggle import iter_kaggle_csv

from zoo.config import parse_yaml, read_yaml, validate
from zoo.errors import ZooError

EXAMPLES = int(os.environ.get("ZOO_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

SEED_RECORD = encode_sequence_example(
    {"id": b"vid1", "labels": [3, 7]},
    {"rgb": np.arange(3 * 8, dtype=np.uint8).reshape(3, 8), "audio": np.ones((3, 4), np.uint8)},
)
SEED_CONFIG = (
    b"_base_: base.yaml\nmodel: {name: nextvlad, cluster_size: 8}\ntrain: {epoch: 2, batch_size: 4}\n"
    b"data: {train: [a.tfrecord]}\npredict: {formats: [jsonl]}\n"
)
SEED_CSV = b"VideoId,LabelConfidencePairs\nvid1,3 0.9 7 0.25\nvid2,\nvid3,0 1e-3\n"
SEED_PLAN = json.dumps({"files": {"trainaa.tfrecord": "0" * 32, "validateZ9.tfrecord": "a" * 32}}).encode()


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` with a few random edits (flip, insert, delete, truncate, duplicate), or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat", "byte"]))
        pos = draw(st.integers(0, max(len(data), 1)))
        if op == "flip" and data:
            data[pos % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[pos % len(data)] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "repeat":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 32))]
    return bytes(data)


def only_our_errors(call) -> None:
    try:
        call()
    except ZooError:
        pass


def _decode_all(payload: bytes) -> None:
    context, lists = parse_sequence_example(payload)
    for start, end in context.values():
        decode_feature(payload, start, end)
    for start, end in lists.values():
        decode_frames(payload, start, end, 8)
    parse_example(payload)


@FUZZ
@given(mutated(SEED_RECORD))
def test_protobuf_decoder(payload):
    only_our_errors(lambda: _decode_all(payload))


@FUZZ
@given(mutated(frame(SEED_RECORD) + frame(b"second")), st.booleans())
def test_tfrecord_framing(data, verify_crc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "x.tfrecord")
        path.write_bytes(data)
        only_our_errors(lambda: [bytes(p) for _, p in read_records(str(path), verify_crc=verify_crc)])


@FUZZ
@given(mutated(SEED_CONFIG))
def test_config_loader(data):
    """parse_yaml on any text, then read_yaml (with a _base_ that exists) and validation of what it gave."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "base.yaml").write_text("train: {seed: 1}\n")
        path = Path(tmp, "config.yaml")
        path.write_bytes(data)

        def load() -> None:
            parse_yaml(data.decode("utf-8", errors="replace"), "fuzz")
            validate(read_yaml(path), str(path))

        only_our_errors(load)


@FUZZ
@given(mutated(SEED_CSV))
def test_prediction_csv_parser(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "p.csv")
        path.write_bytes(data)
        only_our_errors(lambda: list(iter_kaggle_csv(path)))


@FUZZ
@given(mutated(SEED_PLAN))
def test_download_plan_parser(data):
    only_our_errors(lambda: parse_plan(data.decode("utf-8", errors="replace"), "fuzz"))


@pytest.mark.parametrize(
    "text",
    [
        '{"files": {"a/b.tfrecord": "' + "0" * 32 + '"}}',
        '{"files": []}',
        "[1]",
        '{"files": {"x.tfrecord": 5}}',
    ],
)
def test_plan_parser_examples(text):
    with pytest.raises(ZooError):
        parse_plan(text, "example")
