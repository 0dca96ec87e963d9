"""The frame-aggregation baselines (plugins/zoo_baselines): shapes, masking, gradients, parameter counts, configs.

Tiny configurations keep the file fast; the default configurations are only built under paddle.LazyGuard
(shapes without memory) to check the parameter counts against the formulas of docs/baselines.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import zoo
from zoo import DatasetSpec, build_model
from zoo.config import bundled_config, describe_fields, load_config
from zoo.errors import ConfigError
from zoo.testing import model_batch

SPEC = DatasetSpec(num_classes=7, features={"rgb": 12, "audio": 5}, max_frames=20)

# name -> tiny options; every model also runs with dropout 0 / sampling where it has those options
TINY = {
    "mean-pool": {},
    "max-pool": {"classifier": "moe", "moe_mixtures": 3},
    "mean-max-pool": {},
    "dbof": {"cluster_size": 16, "hidden_size": 8},
    "netvlad": {"cluster_sizes": {"rgb": 4, "audio": 2}, "hidden_size": 8},
    "netrvlad": {"cluster_sizes": {"rgb": 4, "audio": 2}, "hidden_size": 8, "classifier": "logistic"},
    "lstm": {"lstm_size": 8, "lstm_layers": 2},
    "attention-cluster": {"cluster_num": 3, "hidden_sizes": [16, 8]},
    "attention-lstm": {"embedding_size": 6, "lstm_size": 5, "hidden_sizes": [16, 8]},
}
VARIANTS = {  # other code paths worth covering
    "dbof-average-nobn": (
        "dbof",
        {
            "cluster_size": 16,
            "hidden_size": 8,
            "pooling": "average",
            "batch_norm": False,
            "classifier": "logistic",
        },
    ),
    "netvlad-relu-plain": (
        "netvlad",
        {
            "cluster_sizes": {"rgb": 4, "audio": 2},
            "hidden_size": 8,
            "hidden_relu": True,
            "gating": False,
            "probability_gating": False,
        },
    ),
    "attention-cluster-moe": (
        "attention-cluster",
        {"cluster_num": 2, "hidden_sizes": [], "hidden_activations": [], "classifier": "moe"},
    ),
}
CASES = {**{name: (name, opts) for name, opts in TINY.items()}, **VARIANTS}
NAMES = list(TINY)


def make_batch(
    paddle, lengths: list[int], seed: int = 0, garbage: bool = True, pad_to: int | None = None
) -> dict:
    """A batch per the batch contract (zoo.testing.model_batch); padding holds large values when ``garbage``."""
    return model_batch(SPEC, lengths, frames=pad_to, garbage=garbage, seed=seed, tensors=True)


def build(paddle, case: str, **extra):
    name, opts = CASES[case]
    paddle.seed(1)
    return build_model(name, spec=SPEC, **{**opts, **extra})


def warm_up(paddle, model) -> None:
    """A few training steps so BatchNorm running statistics are not the trivial initial ones."""
    optimizer = paddle.optimizer.Adam(learning_rate=0.01, parameters=model.parameters())
    model.train()
    for seed in range(3):
        batch = make_batch(paddle, [4, 9, 2, 6], seed=seed)
        loss = paddle.nn.functional.binary_cross_entropy_with_logits(
            model(batch), batch["labels"], reduction="sum"
        )
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()


def test_every_model_is_registered_with_documented_options(paddle):
    for name in NAMES:
        cls = zoo.plugin_class("model", name)
        assert cls.name == name
        assert cls.__module__.startswith("zoo_baselines.")
        undocumented = [f["name"] for f in describe_fields(cls.Config) if not f["doc"]]
        assert not undocumented, f"{name}: Config fields without a docstring: {undocumented}"


@pytest.mark.parametrize("case", list(CASES))
def test_output_shape_and_finite(paddle, case):
    model = build(paddle, case)
    batch = make_batch(paddle, [3, 1, 8])
    for training in (True, False):
        model.train() if training else model.eval()
        logits = model(batch).numpy()
        assert logits.shape == (3, SPEC.num_classes)
        assert np.isfinite(logits).all(), f"{case} (training={training}) gave non-finite logits"


@pytest.mark.parametrize("case", list(CASES))
def test_padding_never_changes_a_videos_output(paddle, case):
    """Eval mode: a video's logits alone equal its logits padded beside a longer video (padding = garbage)."""
    model = build(paddle, case)
    warm_up(paddle, model)
    model.eval()
    both = make_batch(paddle, [3, 11], seed=5)
    alone = {k: (v[:1, :3] if v.ndim >= 2 and k != "labels" else v[:1]) for k, v in both.items()}
    with_padding = model(both).numpy()[0]
    np.testing.assert_allclose(model(alone).numpy()[0], with_padding, atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_training_batch_statistics_ignore_padding(paddle, case):
    """Train mode (BatchNorm on batch statistics): extra padded frames change nothing, not even the stats."""
    extra = {"dropout": 0.0} if "attention" in case else {}
    model = build(paddle, case, **extra)
    model.train()
    lengths = [3, 7, 5]
    paddle.seed(3)
    tight = model(make_batch(paddle, lengths, seed=2)).numpy()
    paddle.seed(3)
    loose = model(make_batch(paddle, lengths, seed=2, pad_to=15)).numpy()
    np.testing.assert_allclose(tight, loose, atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_reach_every_trainable_parameter(paddle, case):
    model = build(paddle, case)
    model.train()
    batch = make_batch(paddle, [5, 2, 8, 4], seed=4)
    loss = paddle.nn.functional.binary_cross_entropy_with_logits(
        model(batch), batch["labels"], reduction="sum"
    )
    loss.backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if not p.stop_gradient and (p.grad is None or not np.abs(p.grad.numpy()).sum() > 0)
    ]
    assert not missing, f"{case}: no gradient reaches {missing}"


@pytest.mark.parametrize("name", ["dbof", "netvlad"])
def test_frame_sampling_draws_only_real_frames(paddle, name):
    """With sample_frames set, training outputs ignore padding; evaluation still uses every frame."""
    model = build(paddle, name, sample_frames=6)
    model.train()
    paddle.seed(7)
    tight = model(make_batch(paddle, [2, 5], seed=1)).numpy()
    paddle.seed(7)
    loose = model(make_batch(paddle, [2, 5], seed=1, pad_to=12)).numpy()
    np.testing.assert_allclose(tight, loose, atol=1e-4, rtol=0)
    model.eval()
    batch = make_batch(paddle, [2, 5], seed=1)
    np.testing.assert_array_equal(model(batch).numpy(), model(batch).numpy())


def test_sample_frames_indices_stay_inside_each_video(paddle):
    from zoo_baselines.common import sample_frames

    lengths = [1, 4, 9]
    x = np.tile(np.arange(9, dtype="float32")[None, :, None], (3, 1, 2))  # frame t holds the value t
    mask = (np.arange(9)[None, :] < np.array(lengths)[:, None]).astype("float32")
    (sampled,), new_mask = sample_frames([paddle.to_tensor(x)], paddle.to_tensor(mask), 200)
    s = sampled.numpy()[..., 0]
    assert s.shape == (3, 200) and new_mask.numpy().all()
    for i, n in enumerate(lengths):
        assert set(np.unique(s[i]).astype(int)) == set(range(n))  # 200 draws hit every real frame, no padding


def count_parameters(model) -> int:
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def test_mean_pool_parameter_count_with_defaults(paddle):
    with paddle.LazyGuard():
        model = build_model("mean-pool", preset="yt8m")
    assert count_parameters(model) == (1024 + 128) * 3862 + 3862  # 4,452,886: one linear layer


def test_netvlad_parameter_counts_with_defaults(paddle):
    c, h, m = 3862, 1024, 2
    inputs = {1024: 256, 128: 128}  # feature size -> clusters
    input_bn = sum(2 * d for d in inputs)
    assign = sum(d * k + 2 * k for d, k in inputs.items())  # FC without bias + BatchNorm
    centers = sum(d * k for d, k in inputs.items())
    vlad_dim = sum(d * k for d, k in inputs.items())
    hidden = vlad_dim * h + h  # netvlad_relu=False: FC with bias, no BatchNorm
    gating = h * h + 2 * h
    moe = h * c * (m + 1) + c * (m + 1) + h * c * m + c * m
    probability_gating = c * c + 2 * c
    expected = input_bn + assign + centers + hidden + gating + moe + probability_gating
    with paddle.LazyGuard():
        netvlad = build_model("netvlad", preset="yt8m")
        netrvlad = build_model("netrvlad", preset="yt8m")
    assert count_parameters(netvlad) == expected == 321_539_966
    assert count_parameters(netrvlad) == expected - centers


@pytest.mark.parametrize("name", NAMES)
def test_bundled_config_and_its_sample_section_validate(paddle, name):
    path = bundled_config(name)
    assert path is not None, f"configs/{name}.yaml is missing"
    cfg = load_config(path)
    assert cfg.model_name == name
    sample = cfg.with_overrides(cfg.sample, "sample")
    sample_spec = DatasetSpec(num_classes=200, features=dict(cfg.dataset.features), max_frames=60)
    with lazy_unless_lstm(paddle, name):
        build_model(name, spec=cfg.dataset, **cfg.model)
    paddle.seed(0)
    model = build_model(name, spec=sample_spec, **sample.model)
    model.eval()
    rng = np.random.default_rng(0)
    batch = {
        f: paddle.to_tensor(rng.normal(size=(2, 10, d)).astype("float32"))
        for f, d in sample_spec.features.items()
    }
    batch["mask"] = paddle.to_tensor(np.ones((2, 10), dtype="float32"))
    batch["num_frames"] = paddle.to_tensor(np.array([10, 10], dtype="int64"))
    assert model(batch).shape == [2, 200]


def lazy_unless_lstm(paddle, name: str):
    """LazyGuard (shapes, no memory) except for models with paddle.nn.LSTM, which cannot be built lazily."""
    import contextlib

    return contextlib.nullcontext() if "lstm" in name else paddle.LazyGuard()


@pytest.mark.parametrize("case", ["mean-pool", "max-pool", "dbof", "netvlad", "netvlad-relu-plain", "lstm"])
def test_classifier_prior_is_the_starting_probability(paddle, case):
    """classifier_prior sets where predictions start (logistic, MoE, and MoE under probability gating)."""
    model = build(paddle, case, classifier_prior=0.05)
    model.eval()
    p = paddle.nn.functional.sigmoid(model(make_batch(paddle, [3, 6, 2, 5]))).numpy()
    assert 0.025 < p.mean() < 0.1, f"{case}: mean starting probability {p.mean():.3f}, wanted about 0.05"
    untouched = build(paddle, case)
    untouched.eval()
    assert paddle.nn.functional.sigmoid(untouched(make_batch(paddle, [3, 6]))).numpy().mean() > 0.12


def test_bad_options_are_config_errors_naming_the_key(paddle):
    with pytest.raises(ConfigError, match=r"cluster_sizes.*audio"):
        build_model("netvlad", spec=SPEC, cluster_sizes={"rgb": 4})
    with pytest.raises(ConfigError, match=r"cluster_sizes.*video"):
        build_model("netrvlad", spec=SPEC, cluster_sizes={"rgb": 4, "audio": 2, "video": 3})
    with pytest.raises(ConfigError, match="hidden_activations"):
        build_model("attention-lstm", spec=SPEC, hidden_sizes=[4, 4], hidden_activations=["relu"])
    with pytest.raises(ConfigError, match="cluster_size"):
        build_model("dbof", spec=SPEC, cluster_size=0)
    with pytest.raises(ConfigError, match="dropout"):
        build_model("attention-cluster", spec=SPEC, dropout=1.0)
    with pytest.raises(ConfigError, match="classifier"):
        build_model("mean-pool", spec=SPEC, classifier="svm")
    with pytest.raises(ConfigError, match="classifier_prior"):
        build_model("lstm", spec=SPEC, lstm_size=4, classifier_prior=1.0)


def test_config_defaults_follow_the_references():
    defaults = {name: dataclasses.asdict(zoo.plugin_class("model", name).Config()) for name in NAMES}
    assert defaults["dbof"]["cluster_size"] == 8192 and defaults["dbof"]["hidden_size"] == 1024
    assert defaults["netvlad"]["cluster_sizes"] == {"rgb": 256, "audio": 128}
    assert defaults["lstm"]["lstm_size"] == 1024 and defaults["lstm"]["lstm_layers"] == 2
    assert defaults["attention-cluster"]["cluster_num"] == 32
    assert (
        defaults["attention-lstm"]["embedding_size"] == 512
        and defaults["attention-lstm"]["lstm_size"] == 1024
    )


@pytest.mark.parametrize("name", ["attention-cluster", "attention-lstm"])
def test_attention_configs_use_the_references_dropout_and_the_default_reads_older_runs(name):
    """The bundled configs follow PaddleVideo 1.x (fluid's downscale_in_infer); the model default stays paddle
    2's upscale_in_train, the mode of runs whose config.json has no dropout_mode."""
    cfg = load_config(bundled_config(name))
    assert cfg.model["dropout_mode"] == "downscale_in_infer"
    from zoo import plugin_class

    assert plugin_class("model", name).Config().dropout_mode == "upscale_in_train"
