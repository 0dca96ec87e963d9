"""The training engine's redesign: models that own their loss, callbacks (history, VisualDL, TensorBoard),
mixed precision settings."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np
import paddle
import pytest
from test_engine import tiny_config, weights_of

from zoo import hookimpl
from zoo.contracts import CallbackBase, TrainingState
from zoo.errors import UsageError
from zoo.plugins import get_plugins


@dataclass
class _AuxConfig:
    hidden: int = 8
    aux_weight: float = 1.0
    """Weight of the auxiliary head's loss."""


class AuxHeadDefaultLoss(paddle.nn.Layer):
    """A trunk with a main and an auxiliary classifier head; trained with the engine's default loss."""

    name = "aux-head-default"
    Config = _AuxConfig

    def __init__(self, config: _AuxConfig, spec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.trunk = paddle.nn.Linear(sum(spec.features.values()), config.hidden)
        self.head = paddle.nn.Linear(config.hidden, spec.num_classes)
        self.aux = paddle.nn.Linear(config.hidden, spec.num_classes)
        self.loss_batches: list[set[str]] = []

    def forward(self, batch):
        from zoo.nn import masked_mean

        frames = paddle.concat([batch[name] for name in self.spec.features], axis=-1)
        h = paddle.nn.functional.relu(self.trunk(masked_mean(frames, batch["mask"])))
        return {"logits": self.head(h), "aux_logits": self.aux(h)}


class AuxHead(AuxHeadDefaultLoss):
    """The same model, trained with its own loss: both heads' sigmoid cross-entropy."""

    name = "aux-head"

    def loss(self, outputs, batch):
        from zoo.engine.feed import bce_loss

        assert isinstance(batch["labels"], paddle.Tensor)
        self.loss_batches.append(set(batch))
        labels = batch["labels"]
        return bce_loss(outputs["logits"], labels) + self.config.aux_weight * bce_loss(
            outputs["aux_logits"], labels
        )


class _AuxPlugin:
    @staticmethod
    @hookimpl
    def zoo_register_models(register):
        register(AuxHead)
        register(AuxHeadDefaultLoss)


@pytest.fixture
def aux_models():
    get_plugins().add_plugin(_AuxPlugin, name="aux-plugin", distribution="tests")
    yield
    get_plugins().remove_plugin("aux-plugin")


@pytest.mark.integration
def test_a_model_with_its_own_loss_trains_with_it_and_evaluates_on_its_logits(
    tiny_data,
    tmp_path,
    paddle,
    aux_models,
):
    from zoo.engine.build import build_reader
    from zoo.engine.infer.loops import dygraph_scorer, evaluate
    from zoo.engine.train.trainer import Trainer

    runs = {}
    for model in ("aux-head", "aux-head-default"):
        cfg = tiny_config(tiny_data, tmp_path / model, "train.epoch=1", model=model)
        trainer = Trainer(cfg, progress=False)
        trainer.fit()
        runs[model] = (trainer, weights_of(tmp_path / model), cfg)
    own, default = runs["aux-head"], runs["aux-head-default"]
    # the model's loss was the one used: it saw the labels, and it trained the auxiliary head
    assert own[0].model.loss_batches and all("labels" in keys for keys in own[0].model.loss_batches)
    assert not np.allclose(own[1]["trunk.weight"], default[1]["trunk.weight"])
    rows = [json.loads(line) for line in (tmp_path / "aux-head" / "history.jsonl").read_text().splitlines()]
    rows_default = [
        json.loads(line)
        for line in (tmp_path / "aux-head-default" / "history.jsonl").read_text().splitlines()
    ]
    assert np.isfinite(rows[-1]["train_loss"]) and np.isfinite(rows[-1]["valid_loss"])
    # two heads' losses summed: clearly above the main head's loss alone
    assert rows[-1]["train_loss"] > 1.5 * rows_default[-1]["train_loss"]
    # the auxiliary head learns only from the model's loss (the default loss leaves it to weight decay)
    assert np.abs(default[1]["aux.weight"] - own[1]["aux.weight"]).max() > 1e-2
    # evaluation and prediction read the logits only
    trainer, _, cfg = own
    metrics, _ = evaluate(trainer.model, build_reader(cfg, "valid"), cfg, progress=False)
    assert 0.0 <= metrics["gap"] <= 1.0
    from zoo.engine.feed import batches_for

    batch = next(iter(batches_for(build_reader(cfg, "valid"), cfg, batch_size=4, shuffle=False)))
    probs = dygraph_scorer(trainer.model, cfg.dataset.features)(batch)
    assert probs.shape == (4, cfg.dataset.num_classes) and ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.integration
def test_export_of_a_dict_returning_model_uses_its_logits(tiny_data, tmp_path, paddle, aux_models):
    from zoo.engine.build import build_reader
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.export.tracing import export_model
    from zoo.engine.feed import batches_for
    from zoo.engine.infer.loops import dygraph_scorer
    from zoo.engine.train.trainer import Trainer

    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, run, "train.epoch=1", model="aux-head")
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    out = export_model(cfg, str(run), tmp_path / "export")
    batch = next(iter(batches_for(build_reader(cfg, "valid"), cfg, batch_size=4, shuffle=False)))
    exported = load_exported(out).predict(batch)
    np.testing.assert_allclose(
        exported, dygraph_scorer(trainer.model, cfg.dataset.features)(batch), atol=1e-5
    )


# ---------------------------------------------------------------------------------------------------------
# Callbacks


class Recorder(CallbackBase):
    """Records the events it sees (a third party's callback)."""

    name = "recorder"
    events: list[tuple[str, int]] = []

    def on_train_start(self, state: TrainingState) -> None:
        self.events.append(("start", state.step))

    def on_step(self, state: TrainingState, row) -> None:
        self.events.append(("step", row["step"]))

    def on_validation(self, state: TrainingState, metrics) -> None:
        assert state.headline in metrics
        self.events.append(("validation", state.step))

    def on_epoch(self, state: TrainingState, row) -> None:
        self.events.append(("epoch", row["epoch"]))

    def on_train_end(self, state: TrainingState) -> None:
        self.events.append(("end", state.step))


class _RecorderPlugin:
    @staticmethod
    @hookimpl
    def zoo_register_callbacks(register):
        register(Recorder)


@pytest.mark.integration
def test_callbacks_see_every_event_in_order(tiny_data, tmp_path, paddle):
    from zoo.engine.train.trainer import Trainer

    get_plugins().add_plugin(_RecorderPlugin, name="recorder-plugin", distribution="tests")
    try:
        Recorder.events = []
        cfg = tiny_config(tiny_data, tmp_path / "run", "train.callbacks=[recorder]", "train.log_interval=4")
        Trainer(cfg, progress=False).fit()
    finally:
        get_plugins().remove_plugin("recorder-plugin")
    assert Recorder.events == [
        ("start", 0),
        ("step", 4),
        ("step", 8),
        ("validation", 8),
        ("epoch", 1),
        ("step", 12),
        ("step", 16),
        ("validation", 16),
        ("epoch", 2),
        ("end", 16),
    ]
    # without the history callback no history is written
    assert not (tmp_path / "run" / "history.jsonl").exists()


def test_history_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    import builtins

    from zoo.engine.train.callbacks import History

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)

    history = History(tmp_path)
    history.log_step({"step": 1, "loss": 1.0})
    history.log_epoch({"epoch": 1, "step": 1, "train_loss": 1.0, "valid_loss": 0.9, "valid_score": 0.5})
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert history.plot("score") is None
    assert (tmp_path / "history.csv").read_text().startswith("epoch,step,train_loss,valid_loss,valid_score")
    monkeypatch.setattr(builtins, "__import__", real_import)
    pytest.importorskip("matplotlib")
    assert history.plot("score").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_optional_writer_names_the_extra(tmp_path, monkeypatch):
    import sys

    from zoo.engine.train.callbacks import TensorBoardCallback, VisualDLCallback

    state = TrainingState(tmp_path, None)
    for cls, module, extra in (
        (VisualDLCallback, "visualdl", "visualdl"),
        (TensorBoardCallback, "tensorboardX", "tensorboard"),
    ):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
        with pytest.raises(UsageError, match=rf"yt8m-zoo\[{extra}\]"):
            cls(cls.Config(), state)


def _tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """The scalars of tensorboardX event files: TFRecord framing (length, crc, data, crc) around Event
    protos, decoded with tensorboardX's own proto classes."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event files in {folder}"
    for path in files:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


@pytest.mark.integration
def test_visualdl_and_tensorboard_logs_read_back(tiny_data, tmp_path, paddle):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("visualdl")
    from zoo.engine.train.trainer import Trainer

    run = tmp_path / "run"
    cfg = tiny_config(
        tiny_data, run, "train.callbacks=[history,visualdl,tensorboard]", "train.log_interval=4"
    )
    Trainer(cfg, progress=False).fit()
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    expected_loss = [(r["step"], r["loss"]) for r in steps]

    tb = _tensorboard_scalars(run / "tensorboard")
    assert [s for s, _ in tb["train/loss"]] == [4, 8, 12, 16]
    np.testing.assert_allclose([v for _, v in tb["train/loss"]], [v for _, v in expected_loss], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in tb["valid/gap"]], [r["valid_gap"] for r in history], rtol=1e-6)
    assert [s for s, _ in tb["valid/gap"]] == [8, 16]

    from visualdl import LogReader

    reader = LogReader(file_path=str(next((run / "visualdl").glob("vdlrecords.*"))))
    records = reader.get_data("scalar", "train/loss")
    assert [r.id for r in records] == [4, 8, 12, 16]
    np.testing.assert_allclose([r.value for r in records], [v for _, v in expected_loss], rtol=1e-6)
    gap = reader.get_data("scalar", "valid/gap")
    np.testing.assert_allclose([r.value for r in gap], [r["valid_gap"] for r in history], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Mixed precision


def test_amp_on_cpu_is_refused_rather_than_silently_float32(tiny_data, tmp_path, paddle):
    from zoo.engine.train.trainer import Trainer

    for amp in ("bf16", "fp16"):
        cfg = tiny_config(tiny_data, tmp_path / amp, f"train.amp={amp}")
        with pytest.raises(UsageError, match=rf"train.amp={amp}.*CPU.*train.amp=off"):
            Trainer(cfg, progress=False).fit()
        assert not (tmp_path / amp / "checkpoints").exists()


def test_amp_keeps_batchnorm_softmax_and_l2_normalisation_in_float32(tiny_data, tmp_path, monkeypatch):
    import paddle

    from zoo.engine.train.trainer import AMP_FP32_OPS, Trainer

    assert {"batch_norm", "softmax", "rsqrt", "sum"} <= AMP_FP32_OPS
    seen = {}

    def fake_auto_cast(**kwargs):
        seen.update(kwargs)
        import contextlib

        return contextlib.nullcontext()

    monkeypatch.setattr(paddle.amp, "auto_cast", fake_auto_cast)
    for amp, dtype in (("bf16", "bfloat16"), ("fp16", "float16")):
        trainer = Trainer(tiny_config(tiny_data, tmp_path / amp, f"train.amp={amp}"), progress=False)
        with trainer._autocast():
            pass
        assert seen["dtype"] == dtype and seen["level"] == "O1"
        assert AMP_FP32_OPS <= set(seen["custom_black_list"])
    off = Trainer(tiny_config(tiny_data, tmp_path / "off"), progress=False)
    seen.clear()
    with off._autocast():
        pass
    assert not seen


def test_amp_is_checked_as_a_literal(tiny_data, tmp_path):
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="train.amp"):
        tiny_config(tiny_data, tmp_path, "train.amp=fp8")
