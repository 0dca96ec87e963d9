"""One contract for every registered model (built-in or third-party)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import zoo
from zoo.config import describe_fields
from zoo.plugins import get_plugins

MODELS = get_plugins().registry("model").names()
SPEC = zoo.DatasetSpec(num_classes=11, features={"rgb": 16, "audio": 8}, max_frames=12)


def tiny_batch(paddle, lengths=(5, 3)):
    rng = np.random.default_rng(0)
    b, t = len(lengths), max(lengths)
    mask = np.zeros((b, t), np.float32)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    batch = {
        name: paddle.to_tensor(rng.uniform(-2, 2, (b, t, d)).astype(np.float32) * mask[..., None])
        for name, d in SPEC.features.items()
    }
    batch["mask"] = paddle.to_tensor(mask)
    batch["num_frames"] = paddle.to_tensor(np.array(lengths, np.int64))
    return batch


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_finite_logits(name, paddle_cpu):
    paddle_cpu.seed(0)
    model = zoo.build_model(name, spec=SPEC)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        out = model(tiny_batch(paddle_cpu))
        if isinstance(out, dict):  # the contract: logits, or a dict holding them under "logits"
            out = out["logits"]
        assert tuple(out.shape) == (2, SPEC.num_classes), f"{name} ({mode}): {out.shape}"
        assert np.isfinite(out.numpy()).all(), f"{name} ({mode}) gave non-finite logits"


@pytest.mark.parametrize("name", MODELS)
def test_config_is_typed_and_documented(name):
    cls = zoo.plugin_class("model", name)
    assert dataclasses.is_dataclass(cls.Config)
    cls.Config()  # every option has a default
    undocumented = [f["name"] for f in describe_fields(cls.Config) if not f["doc"]]
    assert not undocumented, f"{name}: options without a docstring: {undocumented}"
    assert (cls.__doc__ or "").strip(), f"{name}: the model class needs a docstring (shown by `zoo models`)"
