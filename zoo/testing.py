"""The contract kit: reusable pytest checks for models, readers and metrics (built-in or a plugin's).

A plugin's test file stays a few lines::

    from zoo.testing import ModelContract, check_metric, check_reader

    class TestMyModel(ModelContract):
        model = "my-model"          # a registered name, or the class itself

    def test_reader(tmp_path):
        check_reader("my-reader", paths=None)   # None: the reader's own sample_data()

Each ``check_*`` raises ``AssertionError`` naming the plugin and what broke, so a failure reads like any
other pytest failure. The checks are the ones the engine relies on (docs/writing_plugins.md explains each):
a model's logits are ``[B, C]`` and finite, padding frames (``mask == 0``, any value) change nothing, every
trainable parameter gets a gradient, BatchNorm statistics ignore padding, the Paddle Inference export
reproduces the dygraph model and a model's own loss is finite; a reader yields the documented dict and
names the file it cannot read; a metric merges rank states into one pass, documents its tie rule and
reports its headline key. This module is part of the installed package but is never imported by the CLI.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.contracts import DatasetSpec, ModelWithLoss, SampleDataReader

SPEC = DatasetSpec(num_classes=11, features={"rgb": 16, "audio": 8}, max_frames=12)
"""A small dataset spec for model checks: two features, enough frames to append padding."""

MODEL_CHECKS = ("output_shape", "finite", "padding", "gradients", "batchnorm", "loss", "export")
"""Every model check, in the order :func:`check_model` runs them."""

GARBAGE = 57.0
"""Scale of the values written into padding frames: a model that reads them cannot hide it."""

EXPORT_TIMEOUT_S = 600


# ---------------------------------------------------------------------------------------------------------
# Building plugins from a name or a class


def _target(kind: str, name_or_cls: str | type) -> tuple[type, str]:
    """The class and the name to show in messages."""
    if isinstance(name_or_cls, str):
        import zoo

        return zoo.plugin_class(kind, name_or_cls), name_or_cls
    return name_or_cls, getattr(name_or_cls, "name", name_or_cls.__qualname__)


def build(
    kind: str, name_or_cls: str | type, spec: DatasetSpec, config: Mapping[str, Any] | None = None
) -> Any:
    """A model, reader or metric from its registered name or its class, with ``config`` checked against its
    ``Config`` exactly as a YAML section is."""
    from zoo.config import build_dataclass

    cls, label = _target(kind, name_or_cls)
    options = build_dataclass(cls.Config, dict(config or {}), f"{kind} {label!r}", f"{kind} {label!r}")
    return cls(options, spec)


# ---------------------------------------------------------------------------------------------------------
# Model checks


def model_batch(
    spec: DatasetSpec,
    lengths: Sequence[int],
    *,
    frames: int | None = None,
    garbage: bool = False,
    seed: int = 0,
    tensors: bool = False,
) -> dict[str, Any]:
    """A batch as the pipeline builds it, for tests of models: features ``[B, T, D]`` float32 (T = ``frames``
    or the longest video), ``mask`` ``[B, T]``, ``num_frames`` ``[B]`` int64 and multi-hot ``labels``
    ``[B, num_classes]`` (each video has at least one class).

    Video ``i``'s real frames (uniform in [-2, 2], the dequantized range) depend only on ``seed``, ``i`` and
    its length, never on the other videos or on T, so a video gives the same frames alone, in any batch and
    under any padding. Padding frames are 0, or large random values with ``garbage=True`` (a model that
    reads them cannot hide it). numpy arrays, or paddle tensors with ``tensors=True``."""
    b, t = len(lengths), frames or max(lengths)
    if min(lengths) < 0 or max(lengths) > t:
        raise ValueError(f"model_batch: lengths {list(lengths)} must lie in 0..{t} (frames)")
    mask = (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)
    junk = np.random.default_rng(seed + 1)
    batch: dict[str, Any] = {}
    for f, (name, size) in enumerate(spec.features.items()):
        value = np.zeros((b, t, size), np.float32)
        for i, n in enumerate(lengths):
            value[i, :n] = np.random.default_rng([seed, i, f]).uniform(-2.0, 2.0, (n, size))
        if garbage:
            value += (1.0 - mask[..., None]) * junk.uniform(-GARBAGE, GARBAGE, value.shape).astype(np.float32)
        batch[name] = value
    batch["mask"] = mask
    batch["num_frames"] = np.asarray(lengths, np.int64)
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=(b, spec.num_classes)) < 0.3).astype(np.float32)
    labels[np.arange(b), rng.integers(0, spec.num_classes, b)] = 1.0
    batch["labels"] = labels
    return _tensors(batch) if tensors else batch


def _tensors(batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
    import paddle

    return {k: paddle.to_tensor(v) for k, v in batch.items()}


def logits_of(outputs: Any) -> Any:
    """The logits of a forward's outputs (a tensor, or a dict holding them under ``"logits"``)."""
    if isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise AssertionError(f"forward returned a dict without 'logits' (keys: {sorted(outputs)})")
        return outputs["logits"]
    return outputs


def training_loss(model: Any, outputs: Any, batch: Mapping[str, Any]) -> Any:
    """The loss the engine trains with: the model's own, else sigmoid cross-entropy (the YouTube-8M loss)."""
    if isinstance(model, ModelWithLoss):
        return model.loss(outputs, batch)
    import paddle.nn.functional as F

    logits = logits_of(outputs)
    return F.binary_cross_entropy_with_logits(logits, batch["labels"], reduction="none").sum(axis=1).mean()


def _lengths(spec: DatasetSpec) -> tuple[list[int], int]:
    """Three videos of different lengths, and how many padding frames fit after the longest."""
    t = max(1, min(5, spec.max_frames - 2))
    return [t, max(1, t - 2), 1], min(3, spec.max_frames - t)


def _without_dropout(model: Any) -> None:
    """Train mode (BatchNorm uses batch statistics) with dropout off, so two passes are comparable."""
    import paddle

    model.train()
    for layer in model.sublayers(include_self=True):
        if isinstance(
            layer, (paddle.nn.Dropout, paddle.nn.Dropout2D, paddle.nn.Dropout3D, paddle.nn.AlphaDropout)
        ):
            layer.eval()


def _batchnorm_buffers(model: Any) -> dict[str, np.ndarray]:
    return {
        name: value.numpy().copy()
        for name, value in model.state_dict().items()
        if name.endswith(("_mean", "_variance", "running_mean", "running_var"))
    }


def trained_model(cfg: Any, seed: int = 0) -> Any:
    """``cfg``'s model (a :class:`zoo.config.ZooConfig`) in eval mode, seeded, with its BatchNorm statistics
    moved off their initial 0 / 1 as training moves them: an export or conversion that drops or misapplies a
    BatchNorm changes the predictions only then. For export tests and inference benchmarks."""
    import paddle

    from zoo.engine.build import build_model

    paddle.seed(seed)
    model = build_model(cfg)
    move_batchnorm_statistics(model, np.random.default_rng(seed))
    model.eval()
    return model


def move_batchnorm_statistics(model: Any, rng: np.random.Generator) -> None:
    """Set every BatchNorm running mean to N(0, 0.3) and running variance to U(0.5, 2) draws from ``rng``, in
    ``state_dict`` order: statistics as training leaves them, away from their initial 0 / 1."""
    for name, tensor in model.state_dict().items():
        if name.endswith("_mean"):
            tensor.set_value(rng.normal(0, 0.3, tensor.shape).astype(np.float32))
        elif name.endswith("_variance"):
            tensor.set_value(rng.uniform(0.5, 2.0, tensor.shape).astype(np.float32))


class _ModelChecks:
    """The model checks, sharing one model and one batch per check."""

    def __init__(self, target: str | type, spec: DatasetSpec, config: Mapping[str, Any] | None, atol: float):
        from zoo.engine.runtime import init_paddle

        self.paddle = init_paddle("cpu")
        self.target, self.spec, self.config, self.atol = target, spec, dict(config or {}), atol
        self.cls, self.label = _target("model", target)
        self.lengths, self.extra = _lengths(spec)

    def model(self, seed: int = 0) -> Any:
        self.paddle.seed(seed)
        return build("model", self.target, self.spec, self.config)

    def batch(self, **kw: Any) -> dict[str, Any]:
        return _tensors(model_batch(self.spec, self.lengths, **kw))

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"model {self.label!r}: {message}")

    def output_shape(self) -> None:
        model = self.model()
        for mode in ("train", "eval"):
            getattr(model, mode)()
            logits = logits_of(model(self.batch()))
            want = (len(self.lengths), self.spec.num_classes)
            if tuple(logits.shape) != want:
                raise self.fail(f"{mode} mode: logits have shape {list(logits.shape)}, expected {list(want)}")

    def finite(self) -> None:
        model = self.model()
        for mode in ("train", "eval"):
            getattr(model, mode)()
            logits = logits_of(model(self.batch())).numpy()
            if not np.isfinite(logits).all():
                raise self.fail(f"{mode} mode: the logits hold NaN or inf")

    def padding(self) -> None:
        model = self.model()
        model.eval()
        clean = logits_of(model(self.batch())).numpy()
        frames = max(self.lengths) + self.extra
        padded = logits_of(model(self.batch(frames=frames, garbage=True))).numpy()
        worst = float(np.max(np.abs(clean - padded)))
        if not np.allclose(clean, padded, atol=self.atol, rtol=self.atol):
            raise self.fail(
                f"padding frames change the logits by up to {worst:.3g}: {self.extra} padding frames with "
                f"values up to +-{GARBAGE:g} (mask 0) were appended; a model must read only frames where "
                f"mask is 1 (zoo.nn.masked_mean / masked_max / MaskedBatchNorm do)"
            )

    def gradients(self) -> None:
        model = self.model()
        model.train()
        batch = self.batch()
        training_loss(model, model(batch), batch).backward()
        missing, bad = [], []
        for name, param in model.named_parameters():
            if param.stop_gradient:
                continue
            if param.grad is None:
                missing.append(name)
            elif not np.isfinite(param.grad.numpy()).all():
                bad.append(name)
        if missing:
            raise self.fail(
                f"trainable parameters without a gradient: {', '.join(missing)} (unused in forward? set "
                f"stop_gradient=True on parameters that are not trained)"
            )
        if bad:
            raise self.fail(f"non-finite gradients for {', '.join(bad)}")

    def batchnorm(self) -> None:
        import paddle

        reference = self.model()
        if not _batchnorm_buffers(reference):
            return  # no running statistics: nothing to compare
        states = []
        for frames, garbage in ((None, False), (max(self.lengths) + self.extra, True)):
            model = self.model()
            model.set_state_dict(reference.state_dict())
            _without_dropout(model)
            optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
            batch = self.batch(frames=frames, garbage=garbage)
            training_loss(model, model(batch), batch).backward()
            optimizer.step()
            states.append(_batchnorm_buffers(model))
        for name, clean in states[0].items():
            if not np.allclose(clean, states[1][name], atol=self.atol, rtol=self.atol):
                worst = float(np.max(np.abs(clean - states[1][name])))
                raise self.fail(
                    f"BatchNorm statistic {name} differs by {worst:.3g} after one train step with extra "
                    f"padding frames: padding is counted in the batch statistics (use zoo.nn.MaskedBatchNorm)"
                )

    def loss(self) -> None:
        model = self.model()
        if not isinstance(model, ModelWithLoss):
            return  # the engine's sigmoid cross-entropy
        model.train()
        batch = self.batch()
        value = model.loss(model(batch), batch)
        if int(np.prod(value.shape)) != 1:
            raise self.fail(f"loss() returned shape {list(value.shape)}, expected a scalar")
        if not math.isfinite(float(value)):
            raise self.fail(f"loss() is not finite: {float(value)}")

    def export(self) -> None:
        check_export(self.target, self.spec, self.config, atol=max(self.atol, 1e-4))


def check_model(
    name_or_cls: str | type,
    spec: DatasetSpec | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    checks: Iterable[str] = MODEL_CHECKS,
    atol: float = 1e-5,
) -> None:
    """Run the model ``checks`` (default: all of :data:`MODEL_CHECKS`) on a model built from ``spec`` (default
    :data:`SPEC`) and ``config`` (its Config fields). ``export`` runs in a fresh Python process."""
    runner = _ModelChecks(name_or_cls, spec or SPEC, config, atol)
    for check in checks:
        if check not in MODEL_CHECKS:
            raise ValueError(f"unknown model check {check!r}; known: {', '.join(MODEL_CHECKS)}")
        getattr(runner, check)()


_EXPORT_SCRIPT = """
import json, sys, tempfile
from zoo.testing import _export_in_this_process
print(json.dumps(_export_in_this_process(json.loads(sys.argv[1]))))
"""


def check_export(
    name_or_cls: str | type,
    spec: DatasetSpec | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Export the model through ``zoo.engine.export.tracing`` and compare the Paddle Inference predictions with the
    dygraph model's on a padded batch. Runs in a fresh Python process: paddle's dynamic-to-static tracer can
    leave a long pytest process to crash later. Returns the export's metadata check and the difference."""
    cls, label = _target("model", name_or_cls)
    target = name_or_cls if isinstance(name_or_cls, str) else f"{cls.__module__}:{cls.__qualname__}"
    if "<locals>" in target or cls.__module__ == "__main__":
        raise ValueError(
            f"model {label!r}: the export check imports the class in a new process; define it in a module"
        )
    job = {
        "target": target,
        "registered": isinstance(name_or_cls, str),
        "spec": dataclasses.asdict(spec or SPEC),
    }
    job.update(config=dict(config or {}), atol=atol)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", _EXPORT_SCRIPT, json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=EXPORT_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"model {label!r}: the export check failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["error"]:
        raise AssertionError(f"model {label!r}: {result['error']}")
    return result


def _export_in_this_process(job: dict[str, Any]) -> dict[str, Any]:
    """The export check's body (in the child process): export, load, compare on a padded batch."""
    import importlib

    import zoo
    from zoo.config import SECTIONS as CORE_SECTIONS
    from zoo.config import DataConfig, ZooConfig, sections
    from zoo.engine.export.metadata import read_metadata
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.export.tracing import export_model
    from zoo.engine.runtime import init_paddle
    from zoo.plugins import get_plugins

    paddle = init_paddle("cpu")
    spec = DatasetSpec(**job["spec"])
    if job["registered"]:
        name = job["target"]
    else:
        module, _, attr = job["target"].partition(":")
        cls: Any = importlib.import_module(module)
        for part in attr.split("."):
            cls = getattr(cls, part)
        name = cls.name
        models = get_plugins().registry("model")
        if name not in models or models.get(name).cls is not cls:

            class _Checked:
                @zoo.hookimpl
                def zoo_register_models(self, register: Any) -> None:
                    register(cls)

            get_plugins().add_plugin(_Checked(), name="zoo-testing-export", distribution="zoo.testing")
            if get_plugins().registry("model").get(name).cls is not cls:
                return {"error": f"the name {name!r} is registered for another class"}
    cfg = ZooConfig(
        dataset=spec,
        model_name=name,
        model=job["config"],
        data=DataConfig(),
        reader={},
        sections={name: cls() for name, cls in sections().items() if name not in CORE_SECTIONS},
    )
    paddle.seed(0)
    reference = zoo.build_model(name, spec=spec, **job["config"])
    reference.eval()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        paddle.seed(0)  # the same initial weights as the reference
        try:
            export_model(cfg, None, out, allow_random=True)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as the check's failure
            return {"error": f"export failed: {type(exc).__name__}: {exc}"}
        meta = read_metadata(out)
        exported = load_exported(out, device="cpu")
        lengths, extra = _lengths(spec)
        batch = model_batch(spec, lengths, frames=max(lengths) + extra, garbage=True, seed=3)
        expected = paddle.nn.functional.sigmoid(logits_of(reference(_tensors(batch)))).numpy()
        got = exported.predict(batch)
    diff = float(np.max(np.abs(got - expected)))
    error = None
    if got.shape != expected.shape:
        error = f"the export returns shape {list(got.shape)}, the model {list(expected.shape)}"
    elif diff > job["atol"]:
        error = f"the exported model's probabilities differ from the dygraph model's by {diff:.3g}"
    return {"error": error, "max_abs_diff": diff, "frames": meta.get("frames"), "check": meta.get("check")}


class ModelContract:
    """Subclass in a test file (``class TestMine(ModelContract): model = "mine"``) to get one pytest test per
    model check. Set ``spec``/``config`` to build it differently; list checks to leave out in ``skip``."""

    model: str | type = ""
    spec: DatasetSpec = SPEC
    config: Mapping[str, Any] = {}
    skip: Sequence[str] = ()
    atol: float = 1e-5

    def _run(self, check: str) -> None:
        import pytest

        if not self.model:
            pytest.fail(f"{type(self).__name__}: set model = 'registered-name' (or the class)")
        if check in self.skip:
            pytest.skip(f"{check} is listed in {type(self).__name__}.skip")
        check_model(self.model, self.spec, self.config, checks=[check], atol=self.atol)

    def test_output_shape(self) -> None:
        self._run("output_shape")

    def test_finite(self) -> None:
        self._run("finite")

    def test_padding_changes_nothing(self) -> None:
        self._run("padding")

    def test_every_parameter_gets_a_gradient(self) -> None:
        self._run("gradients")

    def test_batchnorm_ignores_padding(self) -> None:
        self._run("batchnorm")

    def test_loss_is_finite(self) -> None:
        self._run("loss")

    def test_export_matches_dygraph(self) -> None:
        self._run("export")


# ---------------------------------------------------------------------------------------------------------
# Reader checks


def check_reader(
    name_or_cls: str | type,
    spec: DatasetSpec | None = None,
    paths: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    corrupt: str | os.PathLike | Callable[[Path], Path] | None = None,
) -> list[dict[str, Any]]:
    """Check a reader on ``paths`` (None: its ``sample_data()`` training split, for a
    :class:`~zoo.contracts.SampleDataReader`): the documented video dicts, stable sources, ``iter`` equal to
    ``read`` over the sources, frames truncated to ``max_frames``, and an error naming a damaged file.

    ``corrupt`` is a damaged file of the reader's format, or a function that writes one into the folder it is
    given; by default the first source is copied and cut in half. Returns the videos read."""
    cls, label = _target("reader", name_or_cls)
    with tempfile.TemporaryDirectory(prefix="zoo-reader-check-") as tmp:
        root = Path(tmp)
        if paths is None:
            if not isinstance(cls, SampleDataReader):
                raise ValueError(f"reader {label!r} has no sample_data(): pass paths=[...]")
            info = cls.sample_data(root / "sample")
            paths = [str(p) for p in info["train"]]
            spec = dataclasses.replace(spec or _spec_of_sample(cls), num_classes=int(info["num_classes"]))
        if spec is None:
            raise ValueError(f"reader {label!r}: pass the dataset spec of the files in paths")
        videos = _check_videos(name_or_cls, label, spec, list(paths), config)
        _check_truncation(name_or_cls, label, spec, list(paths), config, videos)
        damaged = _damaged_file(label, root, list(paths), corrupt, name_or_cls, spec, config)
        _check_damaged(name_or_cls, label, spec, damaged, config)
    return videos


def _spec_of_sample(cls: type) -> DatasetSpec:
    from zoo.plugins import get_plugins

    for preset, _owner in get_plugins().datasets.values():
        if preset.reader == cls.name:
            return preset.spec
    raise ValueError(f"reader {cls.name!r}: no dataset preset names it; pass spec=")


def _reader(target: str | type, spec: DatasetSpec, paths: list[str], config: Mapping[str, Any] | None) -> Any:
    return build("reader", target, spec, {**(config or {}), "paths": paths})


def _check_videos(
    target: str | type, label: str, spec: DatasetSpec, paths: list[str], config: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    reader = _reader(target, spec, paths, config)
    sources = reader.sources()
    if not sources or not all(isinstance(s, str) for s in sources):
        raise AssertionError(f"reader {label!r}: sources() must list the files as str, got {sources!r}")
    if reader.sources() != sources:
        raise AssertionError(f"reader {label!r}: sources() changed between two calls")
    videos = list(reader)
    if not videos:
        raise AssertionError(f"reader {label!r}: read no video from {paths}")
    by_source = [v["id"] for s in sources for v in reader.read(s)]
    if by_source != [v["id"] for v in videos]:
        raise AssertionError(f"reader {label!r}: iterating differs from read() over sources() in order")
    for video in videos:
        _check_video(label, spec, video)
    _check_capabilities(reader, label, spec, sources, videos)
    return videos


def _check_capabilities(
    reader: Any, label: str, spec: DatasetSpec, sources: list[str], videos: list[dict[str, Any]]
) -> None:
    """The optional reader capabilities the engine uses (:mod:`zoo.contracts`), where the reader has them;
    a reader that yields uint8 codes must have ``dequantize_into`` (the engine cannot train without it)."""
    from zoo.contracts import (
        CountingReader,
        DequantizingReader,
        PartCountingReader,
        PartitionedReader,
        SkipReportingReader,
    )

    quantized = sorted({n for v in videos for n in spec.features if np.asarray(v[n]).dtype == np.uint8})
    if quantized and not isinstance(reader, DequantizingReader):
        raise AssertionError(
            f"reader {label!r} yields uint8 codes for {', '.join(quantized)} but has no "
            f"dequantize_into(values, out): the engine cannot turn them into float32 frames; add the method "
            f"(zoo.contracts.DequantizingReader) or yield float32"
        )
    if isinstance(reader, DequantizingReader):
        codes = np.arange(256, dtype=np.uint8)
        out = np.full(256, np.nan, np.float32)
        reader.dequantize_into(codes, out)
        if not np.isfinite(out).all():
            raise AssertionError(f"reader {label!r}: dequantize_into left non-finite values for some codes")
    for source in sources:
        ids = [v["id"] for v in reader.read(source)]
        if isinstance(reader, CountingReader) and reader.count(source) != len(ids):
            raise AssertionError(
                f"reader {label!r}: count({source!r}) is {reader.count(source)}, read() yields {len(ids)}"
            )
        if isinstance(reader, PartitionedReader):
            parts = [[v["id"] for v in reader.read_part(source, start, 2)] for start in (0, 1)]
            # a reader of several examples per record (PartCountingReader) splits by record, not by example
            split = isinstance(reader, PartCountingReader) or parts[0] + parts[1] == ids[0::2] + ids[1::2]
            if not split or sorted(parts[0] + parts[1]) != sorted(ids):
                raise AssertionError(
                    f"reader {label!r}: read_part({source!r}, start, 2) for start 0 and 1 must together yield "
                    f"what read() does, split by record position (even, odd)"
                )
            if isinstance(reader, PartCountingReader):
                counted = [reader.count_part(source, start, 2) for start in (0, 1)]
                if counted != [len(part) for part in parts]:
                    raise AssertionError(
                        f"reader {label!r}: count_part({source!r}, start, 2) gives {counted}, read_part "
                        f"yields {[len(part) for part in parts]}"
                    )
    if isinstance(reader, SkipReportingReader) and not isinstance(reader.skipped, list):
        raise AssertionError(f"reader {label!r}: skipped must be a list of the records it skipped")


def _check_video(label: str, spec: DatasetSpec, video: Mapping[str, Any]) -> None:
    where = f"reader {label!r}, video {video.get('id')!r}"
    missing = [k for k in ("id", "labels", "num_frames", *spec.features) if k not in video]
    if missing:
        raise AssertionError(f"{where}: the dict lacks {', '.join(missing)} (has {', '.join(sorted(video))})")
    if not isinstance(video["id"], str):
        raise AssertionError(f"{where}: id must be a str, got {type(video['id']).__name__}")
    labels = np.asarray(video["labels"])
    if labels.size and (
        labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= spec.num_classes
    ):
        raise AssertionError(f"{where}: labels must be class ids in [0, {spec.num_classes}), got {labels}")
    n = video["num_frames"]
    if not isinstance(n, (int, np.integer)) or not 0 <= n <= spec.max_frames:
        raise AssertionError(f"{where}: num_frames must be an int in [0, {spec.max_frames}], got {n!r}")
    for name, size in spec.features.items():
        value = video[name]
        if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.uint8):
            raise AssertionError(f"{where}: feature {name!r} must be a float32 (or uint8) numpy array")
        if value.shape != (n, size):
            raise AssertionError(
                f"{where}: feature {name!r} has shape {list(value.shape)}, expected [num_frames={n}, {size}]"
            )


def _check_truncation(
    target: str | type,
    label: str,
    spec: DatasetSpec,
    paths: list[str],
    config: Mapping[str, Any] | None,
    videos: list[dict[str, Any]],
) -> None:
    longest = max(int(v["num_frames"]) for v in videos)
    if longest < 2:
        return
    short = dataclasses.replace(spec, max_frames=longest - 1)
    full = {v["id"]: v for v in videos}
    for video in _reader(target, short, paths, config):
        before = full[video["id"]]
        want = min(int(before["num_frames"]), short.max_frames)
        if int(video["num_frames"]) != want:
            raise AssertionError(
                f"reader {label!r}, video {video['id']!r}: with max_frames={short.max_frames} it has "
                f"num_frames={video['num_frames']}, expected {want} (the first max_frames frames)"
            )
        for name in spec.features:
            if not np.array_equal(video[name], before[name][:want]):
                raise AssertionError(
                    f"reader {label!r}, video {video['id']!r}: with max_frames={short.max_frames}, "
                    f"feature {name!r} is not the first {want} frames"
                )


def _damaged_file(
    label: str,
    root: Path,
    paths: list[str],
    corrupt: str | os.PathLike | Callable[[Path], Path] | None,
    target: str | type,
    spec: DatasetSpec,
    config: Mapping[str, Any] | None,
) -> Path:
    if callable(corrupt):
        return Path(corrupt(root))
    if corrupt is not None:
        return Path(corrupt)
    source = Path(_reader(target, spec, paths, config).sources()[0])
    if not source.is_file():
        raise ValueError(f"reader {label!r}: {source} is not a file; pass corrupt= (a damaged file)")
    damaged = root / f"damaged-{source.name}"
    data = source.read_bytes()
    damaged.write_bytes(data[: max(1, len(data) // 2)])
    return damaged


def _check_damaged(
    target: str | type, label: str, spec: DatasetSpec, damaged: Path, config: Mapping[str, Any] | None
) -> None:
    from zoo.errors import ZooError

    try:
        for _ in _reader(target, spec, [str(damaged)], config):
            pass
    except ZooError as exc:
        if damaged.name not in str(exc):
            raise AssertionError(
                f"reader {label!r}: the error for the damaged file {damaged} does not name it: {exc}"
            ) from None
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(
            f"reader {label!r}: reading the damaged file {damaged} raised {type(exc).__name__}: {exc}; "
            f"raise zoo.DataError naming the file (and the record) instead"
        ) from None
    raise AssertionError(f"reader {label!r}: reading the damaged file {damaged} raised no error")


# ---------------------------------------------------------------------------------------------------------
# Metric checks


def metric_batches(
    spec: DatasetSpec, sizes: Sequence[int] = (6, 3, 5, 1), seed: int = 0, *, masked: bool = False
) -> list[tuple]:
    """``(scores, labels, loss)`` batches: probabilities on a coarse grid (so they tie) and multi-hot labels.

    ``masked``: ``(scores, labels, loss, mask)`` batches as segment-mode data gives them: about half the
    (example, class) pairs rated, each example rated on at least one of its labels."""
    rng = np.random.default_rng(seed)
    out = []
    for b in sizes:
        scores = np.round(rng.uniform(size=(b, spec.num_classes)), 1).astype(np.float32)
        labels = (rng.uniform(size=(b, spec.num_classes)) < 0.3).astype(np.float32)
        sure = rng.integers(0, spec.num_classes, b)
        labels[np.arange(b), sure] = 1.0
        loss = float(rng.uniform(0.1, 2.0))
        if masked:
            mask = (rng.uniform(size=(b, spec.num_classes)) < 0.5).astype(np.float32)
            mask[np.arange(b), sure] = 1.0
            out.append((scores, labels, loss, mask))
        else:
            out.append((scores, labels, loss))
    return out


def update_metric(metric: Any, batch: Any) -> None:
    """Feed one ``(scores, labels[, loss[, mask]])`` batch through ``Metric.update``."""
    scores, labels, *rest = batch
    loss = rest[0] if rest else None
    mask = rest[1] if len(rest) > 1 else None
    metric.update(scores, labels, loss=loss, mask=mask)


def _reversed_rows(batch: tuple) -> tuple:
    """The batch with its examples in reverse order (scores, labels and a mask; the loss stays)."""
    scores, labels, *rest = batch
    if len(rest) > 1 and rest[1] is not None:
        rest = [rest[0], rest[1][::-1], *rest[2:]]
    return (scores[::-1], labels[::-1], *rest)


def _same(a: Mapping[str, Any], b: Mapping[str, Any], rel: float = 1e-9) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [
        f"{k}: {a.get(k)!r} vs {b.get(k)!r}"
        for k in keys
        if k not in a or k not in b or not math.isclose(float(a[k]), float(b[k]), rel_tol=rel, abs_tol=rel)
    ]


def check_metric(
    name_or_cls: str | type,
    spec: DatasetSpec | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    batches: Sequence[Any] | None = None,
    feed: Callable[[Any, Any], None] = update_metric,
    ties: Sequence[tuple[Any, Mapping[str, float]]] = (),
) -> dict[str, float]:
    """Check a metric: ``update`` takes ``mask`` (the contract); ``compute()`` reports ``headline`` (also
    first in ``display``); ``reset()`` forgets; the ``state()`` of several ranks, pickled and ``merge``d in
    any order, equals one pass; the class docstring states its tie rule, results do not depend on the order
    of tied videos, and each
    ``(batch, expected)`` of ``ties`` gives the documented values. ``feed(metric, batch)`` adds a batch
    (default: :func:`update_metric` with :func:`metric_batches`; ``metric_batches(spec, masked=True)`` for a
    metric of segment-mode batches). Returns the one-pass results."""
    spec = spec or SPEC
    cls, label = _target("metric", name_or_cls)
    batches = list(batches) if batches is not None else metric_batches(spec)

    def fresh() -> Any:
        return build("metric", name_or_cls, spec, config)

    def run(items: Sequence[Any], metric: Any | None = None) -> Any:
        metric = metric or fresh()
        for item in items:
            feed(metric, item)
        return metric

    params = inspect.signature(cls.update).parameters
    if "mask" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise AssertionError(
            f"metric {label!r}: update() must accept mask=None (zoo.contracts.Metric: the engine passes the "
            f"batch's label_mask); raise zoo.DataError from it if the metric cannot honour a mask"
        )
    one = run(batches)
    results = one.compute()
    headline = cls.headline
    if headline not in results or not math.isfinite(float(results[headline])):
        raise AssertionError(
            f"metric {label!r}: compute() lacks its headline {headline!r} (got {sorted(results)})"
        )
    if not cls.display or cls.display[0] != headline:
        raise AssertionError(
            f"metric {label!r}: display {cls.display!r} must start with the headline {headline!r}"
        )
    if "tie" not in (cls.__doc__ or "").lower():
        raise AssertionError(
            f"metric {label!r}: the class docstring must state the tie rule (how equal scores are ordered)"
        )
    one.reset()
    again = run(batches, one).compute()
    if _same(results, again):
        raise AssertionError(f"metric {label!r}: reset() does not forget: {'; '.join(_same(results, again))}")
    ranks = [run(batches[r::2]) for r in range(2)]
    states = [pickle.loads(pickle.dumps(m.state())) for m in ranks]
    for order in (states, states[::-1]):
        merged = fresh()
        merged.reset()
        merged.merge(list(order))
        diff = _same(results, merged.compute())
        if diff:
            raise AssertionError(
                f"metric {label!r}: merged rank states differ from one pass: {'; '.join(diff)}"
            )
    if batches and all(isinstance(b, tuple) and len(b) >= 2 for b in batches):
        flipped = [_reversed_rows(b) for b in batches]
        diff = _same(results, run(flipped).compute())
        if diff:
            raise AssertionError(
                f"metric {label!r}: reversing the videos of each batch (tied scores included) changes the "
                f"results: {'; '.join(diff)}"
            )
    for i, (batch, expected) in enumerate(ties):
        got = run([batch]).compute()
        wrong = [
            f"{k}={got.get(k)!r}, documented {v!r}"
            for k, v in expected.items()
            if not math.isclose(got.get(k, math.nan), v, abs_tol=1e-9)
        ]
        if wrong:
            raise AssertionError(f"metric {label!r}: tie case {i}: {'; '.join(wrong)}")
    return results


__all__ = [
    "MODEL_CHECKS",
    "SPEC",
    "ModelContract",
    "build",
    "check_export",
    "check_metric",
    "check_model",
    "check_reader",
    "logits_of",
    "metric_batches",
    "model_batch",
    "move_batchnorm_statistics",
    "training_loss",
    "update_metric",
]
