"""The CLI driven with generated arguments, files and configs: whatever it is given, `zoo` ends with an exit
code and at most a one-paragraph message, never a raw traceback.

Each example picks a command (score, ensemble, average, data inspect/pack/synth, eval, predict, train,
export, models, plugins) and fills its arguments from a pool of paths -- valid seed files, mutated copies of
them (a prediction CSV, a JSON lines file, a config, a TFRecord, a download plan, a weights file), random
bytes, folders, missing paths, files where folders are expected -- and of option values (huge, negative,
non-numeric, NaN). A run ends with ``SystemExit`` (argparse) or a return code; anything else that escapes
``zoo.cli.main`` is a traceback a user would see, and fails the test.

The budget is bounded for CI (ZOO_CLI_FUZZ_EXAMPLES, default 40, and a time limit); docs/reliability.md
records a long run.
"""

# ruff: noqa: E731 - the argument makers are one-line lambdas over the draw

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zoo_yt8m_data.tfrecord import frame
from zoo_yt8m_data.wire import encode_sequence_example

from zoo.cli import main

EXAMPLES = int(os.environ.get("ZOO_CLI_FUZZ_EXAMPLES", "25"))
"""Examples per command."""
SECONDS = float(os.environ.get("ZOO_CLI_FUZZ_SECONDS", "6"))
"""Time bound per command: examples after it are skipped (13 commands: under 80 s in all)."""
COMMANDS = [
    "score",
    "score-segments",
    "ensemble",
    "average",
    "inspect",
    "pack",
    "synth",
    "eval",
    "predict",
    "train",
    "export",
    "models",
    "plugins",
]
pytestmark = pytest.mark.integration


def _record(vid: bytes, labels: list[int], frames: int) -> bytes:
    rng = np.random.default_rng(len(vid) + frames)
    return frame(
        encode_sequence_example(
            {"id": vid, "labels": labels},
            {
                "rgb": rng.integers(0, 255, (frames, 8), dtype=np.uint8),
                "audio": rng.integers(0, 255, (frames, 4), dtype=np.uint8),
            },
        )
    )


SEEDS = {
    "csv": b"VideoId,LabelConfidencePairs\nv0,1 0.9 2 0.5\nv1,0 0.25\nv2,3 1e-3 1 0.5\n",
    "jsonl": b'{"id": "v0", "classes": [1, 2], "scores": [0.9, 0.5]}\n{"id": "v1", "classes": [0], "scores": [0.2]}\n',
    "yaml": (
        b"dataset: {preset: yt8m, num_classes: 4, features: {rgb: 8, audio: 4}, max_frames: 6}\n"
        b"model: {name: mean-pool}\ntrain: {epoch: 1, batch_size: 2, checkpoint_steps: 0}\n"
        b"predict: {formats: [jsonl]}\n"
    ),
    "tfrecord": b"".join(_record(f"v{i}".encode(), [i % 4], 2 + i) for i in range(3)),
    "plan": json.dumps({"files": {"trainaa.tfrecord": "0" * 32}}).encode(),
    "lock": json.dumps({"pid": 1, "host": "elsewhere"}).encode(),
}
SUFFIX = {
    "csv": ".csv",
    "jsonl": ".jsonl",
    "yaml": ".yaml",
    "tfrecord": ".tfrecord",
    "plan": ".json",
    "lock": "",
}


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """``seed`` as it is, with a few random edits, or random bytes."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.binary(max_size=256))
    if choice <= 2:
        return seed
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat", "byte"]))
        pos = draw(st.integers(0, max(len(data), 1)))
        if op == "flip" and data:
            data[pos % len(data)] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[pos % len(data)] = draw(st.sampled_from([0, 10, 13, 34, 44, 58, 123, 255]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "repeat":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
    return bytes(data)


NUMBERS = st.one_of(
    st.sampled_from(["1", "2", "3", "4"]),
    st.sampled_from(["0", "-1", "10", "1e30", str(10**23), "nan", "inf", "x", "", "1,2"]),
)


@st.composite
def invocation(draw, root, command):
    """(argv, files to write) for one run of ``command``."""
    files = {kind: draw(mutated(seed)) for kind, seed in SEEDS.items()}
    ex = root / f"ex{draw(st.integers(0, 10**9))}"
    paths = {kind: ex / f"file{SUFFIX[kind]}" for kind in files}
    data = ex / "data"  # a data folder of mutated records
    paths.update({"train": data / "train" / "a.tfrecord", "valid": data / "valid" / "a.tfrecord"})
    files.update({"train": draw(mutated(SEEDS["tfrecord"])), "valid": draw(mutated(SEEDS["tfrecord"]))})
    pool = [
        *paths.values(),
        data,
        root / "seed",  # a data folder of valid seed files
        root / "run",  # a trained run (valid weights)
        root / "run" / "model.safetensors",
        root / "seed" / "data.tfrecord",
        root / "seed" / "p.csv",
        ex / "missing",
        ex / "file.csv" / "under-a-file",
        ex,
    ]
    path = lambda: str(draw(st.sampled_from(pool)))
    number = lambda: draw(NUMBERS)
    out = str(draw(st.sampled_from([ex / "out", paths["csv"], ex / "file.csv" / "sub", ex / "new" / "deep"])))
    optional = lambda *args: list(args) if draw(st.booleans()) else []
    weights = lambda: (
        str(draw(st.sampled_from([root / "run", root / "run", ex / "run", paths["csv"]])))
        if draw(st.booleans())
        else path()
    )
    data_dir = lambda: str(draw(st.sampled_from([data, root / "seed"]))) if draw(st.booleans()) else path()
    config = [
        "--config",
        str(draw(st.sampled_from([root / "c.yaml", root / "c.yaml", paths["yaml"], ex / "file"]))),
    ]
    override = optional(
        "-o", draw(st.sampled_from(["train.epoch=", "model.name=", "data.train=", "x.y="])) + number()
    )
    argv = {
        "score": lambda: [
            "score",
            "--predictions",
            path(),
            "--data",
            path(),
            *optional("--num-classes", number()),
            *optional("--top-k", number()),
            *optional("--json"),
        ],
        "score-segments": lambda: [
            "score",
            "--segments",
            path(),
            "--data",
            path(),
            "--num-classes",
            number(),
            *optional("--top-segments", number()),
        ],
        "ensemble": lambda: [
            "ensemble",
            path(),
            path(),
            "--output",
            out,
            *optional("--weights", number() + "," + number()),
            *optional("--mean", "geometric"),
            *optional("--num-classes", number()),
        ],
        "average": lambda: ["average", "--output", out, weights(), weights()],
        "inspect": lambda: ["data", "inspect", path(), *optional("--json")],
        "pack": lambda: [
            "data",
            "pack",
            path(),
            "-o",
            out,
            "-j",
            draw(st.sampled_from(["1", "2", "0", "-1"])),
            *optional("--skip-corrupt"),
        ],
        "synth": lambda: [
            "data",
            "synth",
            "--output",
            out,
            "--train-videos",
            draw(st.sampled_from(["0", "2", "-1", str(10**30), "x"])),
            "--valid-videos",
            "1",
            "--test-videos",
            "0",
            "--classes",
            draw(st.sampled_from(["2", "1", str(10**12)])),
            "--min-frames",
            "1",
            "--max-frames",
            draw(st.sampled_from(["2", "0", str(10**15)])),
        ],
        "eval": lambda: [
            "eval",
            *config,
            "--weights",
            weights(),
            "--data",
            data_dir(),
            "--output",
            out,
            *override,
        ],
        "predict": lambda: [
            "predict",
            *config,
            "--weights",
            weights(),
            "--data",
            data_dir(),
            "--output",
            out,
            *override,
        ],
        "train": lambda: [
            "train",
            *config,
            "--data",
            str(draw(st.sampled_from([data, root / "seed", data]))),
            "--save_dir",
            out,
            *override,
            *optional("--resume"),
        ],
        "export": lambda: ["export", *config, "--weights", weights(), "--output", out, *override],
        "models": lambda: ["models", *optional(draw(st.sampled_from(["nextvlad", "nope", ""])))],
        "plugins": lambda: ["plugins"],
    }[command]()
    return argv, {paths[k]: files[k] for k in files}, ex


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-fuzz")
    seed = root / "seed"
    for split in ("train", "valid"):
        (seed / split).mkdir(parents=True)
        (seed / split / "data.tfrecord").write_bytes(SEEDS["tfrecord"])
    (seed / "data.tfrecord").write_bytes(SEEDS["tfrecord"])
    (seed / "p.csv").write_bytes(SEEDS["csv"])
    (root / "c.yaml").write_bytes(SEEDS["yaml"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            ["train", "--config", str(root / "c.yaml"), "--data", str(seed), "--save_dir", str(root / "run")]
        )
    assert code == 0
    (seed / "p.jsonl").write_bytes(SEEDS["jsonl"])
    return root


@pytest.mark.parametrize("command", COMMANDS)
def test_the_cli_never_shows_a_traceback(root, monkeypatch, command):
    monkeypatch.chdir(root)
    monkeypatch.setenv("ZOO_CACHE_DIR", str(root / "cache"))
    started = time.monotonic()
    ran = {"n": 0}
    outcomes: dict[str, dict[str, int]] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
        database=None,
    )
    @given(st.data())
    def run(data):
        argv, files, ex = data.draw(invocation(root, command))
        if time.monotonic() - started > SECONDS:
            return  # the time bound: the remaining examples are drawn but not run
        ex.mkdir(parents=True, exist_ok=True)
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main(argv)
                except SystemExit as exc:  # argparse's usage errors
                    code = exc.code
        except BaseException as exc:  # noqa: BLE001 - what a user would see as a traceback
            raise AssertionError(f"zoo {' '.join(argv)} raised {type(exc).__name__}: {exc}") from exc
        finally:
            shutil.rmtree(ex, ignore_errors=True)
            shutil.rmtree(root / "runs", ignore_errors=True)
        assert code in (0, 1, 2, None), (argv, code)
        assert "Traceback (most recent call last)" not in err.getvalue(), (argv, err.getvalue())
        ran["n"] += 1
        if os.environ.get("ZOO_CLI_FUZZ_SHOW"):
            print(" ".join(argv)[:300], "->", code, err.getvalue().strip()[-300:])
        name = " ".join(argv[:2]) if argv[0] == "data" else argv[0]
        counts = outcomes.setdefault(name, {})
        counts[f"exit {code or 0}"] = counts.get(f"exit {code or 0}", 0) + 1

    run()
    summary = f"{ran['n']} runs in {time.monotonic() - started:.1f} s: {json.dumps(outcomes, sort_keys=True)}"
    print("\n" + summary)
    if os.environ.get("ZOO_CLI_FUZZ_REPORT"):  # a long run's record (docs/reliability.md)
        with open(os.environ["ZOO_CLI_FUZZ_REPORT"], "a") as f:
            f.write(summary + "\n")
    assert ran["n"] >= min(EXAMPLES, 3)
