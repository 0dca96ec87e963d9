"""The NeXtVLAD plugin (plugins/zoo_nextvlad): size, masking, reverse whitening, PaddleVideo 1.x weights.

Small configurations keep the file fast; the default 89M-parameter model is built once for its count.
A numpy re-implementation of PaddleVideo 1.x's graph (one unpadded video at a time, like its LoD input)
checks that converted 1.x weights give the 1.x outputs.
"""

from __future__ import annotations

import nextvlad_helpers
import numpy as np
import pytest
from nextvlad_helpers import SPEC, make_batch

import zoo
from zoo import build_model
from zoo.config import bundled_config, load_config
from zoo.errors import ConfigError, DataError


def small_model(paddle, seed: int = 0, **options):
    return nextvlad_helpers.small_model(paddle, "nextvlad", seed, **options)


def trainable(model) -> int:
    """The count `zoo models --params` and `zoo run` report."""
    from zoo.engine.build import count_parameters

    return count_parameters(model)


def test_default_model_has_the_papers_89m_parameters(paddle):
    model = build_model(
        "nextvlad", preset="yt8m"
    )  # num_classes 3862, rgb 1024 + audio 128, PaddleVideo's options
    assert trainable(model) == 89_088_550
    assert model.branches["rgb"].output_size == 128 * 256
    assert model.branches["audio"].output_size == 128 * 32


@pytest.mark.parametrize("classifier", ["logistic", "moe"])
def test_forward_gives_finite_logits_in_both_modes(paddle, classifier):
    model = small_model(paddle, classifier=classifier, moe_mixtures=3)
    batch = make_batch(paddle, [7, 2, 4])
    for mode in ("train", "eval"):
        getattr(model, mode)()
        out = model(batch).numpy()
        assert out.shape == (3, SPEC.num_classes)
        assert np.isfinite(out).all()
    if classifier == "moe":
        assert {"head.gates.weight", "head.experts.weight"} <= set(model.state_dict())


def test_eval_output_of_a_video_does_not_depend_on_its_batch(paddle):
    model = small_model(paddle)
    model.train()
    for seed in range(3):  # move the BatchNorm running statistics away from their initial values
        model(make_batch(paddle, [9, 5, 12], seed=seed))
    model.eval()
    alone = model(make_batch(paddle, [5], seed=1, garbage=False)).numpy()[0]
    batched = model(make_batch(paddle, [5, 14], seed=1, pad_to=18)).numpy()[0]
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-5)


def test_training_statistics_come_from_valid_frames_only(paddle):
    """Train mode: extra padding (zeros or garbage) changes neither the outputs nor any running statistic."""
    outputs, stats = [], []
    for pad_to, garbage in ((None, False), (15, True)):
        model = small_model(paddle, seed=3, dropout=0.0)
        model.train()
        outputs.append(model(make_batch(paddle, [6, 3, 9], seed=2, pad_to=pad_to, garbage=garbage)).numpy())
        stats.append(
            {k: v.numpy() for k, v in model.state_dict().items() if k.endswith(("_mean", "_variance"))}
        )
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for key in stats[0]:
        np.testing.assert_allclose(stats[1][key], stats[0][key], rtol=1e-5, atol=1e-6, err_msg=key)

    # the frame-level BatchNorm's running mean is the mean over the 18 valid frames of the cluster logits
    model = small_model(paddle, seed=3, dropout=0.0)
    model.train()
    batch = make_batch(paddle, [6, 3, 9], seed=2, pad_to=15)
    branch = model.branches["rgb"]
    w, b = branch.expansion.weight.numpy(), branch.expansion.bias.numpy()
    valid = np.concatenate([batch["rgb"].numpy()[i, :n] for i, n in enumerate([6, 3, 9])])
    expected = ((valid @ w + b) @ branch.cluster_weights.numpy()).mean(axis=0)
    model(batch)
    np.testing.assert_allclose(branch.cluster_bn._mean.numpy(), 0.1 * expected, rtol=1e-4, atol=1e-6)


def test_gradient_reaches_every_parameter(paddle):
    model = small_model(paddle, classifier="moe")
    model.train()
    logits = model(make_batch(paddle, [5, 3]))
    labels = paddle.to_tensor(np.eye(SPEC.num_classes, dtype=np.float32)[[1, 4]])
    loss = paddle.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
    loss.backward()
    dead = [
        name
        for name, p in model.named_parameters()
        if not p.stop_gradient and (p.grad is None or not np.abs(p.grad.numpy()).max() > 0)
    ]
    assert not dead, f"no gradient reaches {dead}"
    assert all(np.isfinite(p.grad.numpy()).all() for p in model.parameters() if p.grad is not None)


def test_reverse_whitening_scales_rgb_by_sqrt_eigenvalues(paddle, shared_dir):
    path = shared_dir / "data" / "yt8m_pca_eigenvals.npy"
    eigen = np.load(path)[:16, 0].astype(np.float64)
    whitened = small_model(paddle, seed=5, eigenvalues=str(path))
    plain = small_model(paddle, seed=5)
    scale = np.sqrt(eigen) + 1e-4
    np.testing.assert_allclose(whitened.branches["rgb"].input_scale.numpy(), scale, rtol=1e-6)
    assert np.all(whitened.branches["audio"].input_scale.numpy() == 1.0)
    whitened.eval()
    plain.eval()
    batch = make_batch(paddle, [4, 6])
    scaled = dict(batch, rgb=batch["rgb"] * paddle.to_tensor(scale.astype(np.float32)))
    np.testing.assert_allclose(whitened(batch).numpy(), plain(scaled).numpy(), rtol=1e-4, atol=1e-5)


def test_eigenvalue_file_errors_name_the_file(paddle, tmp_path):
    missing = tmp_path / "no-such-eigenvals.npy"
    with pytest.raises(ConfigError, match="no-such-eigenvals.npy"):
        small_model(paddle, eigenvalues=str(missing))
    short = tmp_path / "short.npy"
    np.save(short, np.ones((10, 1), np.float32))
    with pytest.raises(DataError, match=r"short\.npy.*\[10, 1\].*n >= 16"):
        small_model(paddle, eigenvalues=str(short))
    wide = tmp_path / "wide.npy"
    np.save(wide, np.ones((2048, 2), np.float32))
    with pytest.raises(DataError, match="wide.npy"):
        small_model(paddle, eigenvalues=str(wide))
    negative = tmp_path / "negative.npy"
    np.save(negative, -np.ones(2048, np.float32))
    with pytest.raises(DataError, match="negative.npy"):
        small_model(paddle, eigenvalues=str(negative))


def test_bad_options_are_config_errors(paddle):
    with pytest.raises(ConfigError, match="groups"):
        small_model(paddle, groups=5)  # 2*16 = 32 is not divisible by 5
    with pytest.raises(ConfigError, match="gating_reduction"):
        small_model(paddle, gating_reduction=5)
    with pytest.raises(ConfigError, match="eigenvalues_feature"):
        small_model(paddle, eigenvalues="x.npy", eigenvalues_feature="video")


# --- PaddleVideo 1.x weights ------------------------------------------------------------------------------


def paddlevideo_state(rng, rgb: int, audio: int, k: int, g: int, hidden: int, reduction: int, classes: int):
    """Random PaddleVideo 1.x NEXTVLAD parameters under their 1.x names (plus optimizer leftovers)."""
    state = {}
    bn = 0

    def batch_norm(size: int) -> None:
        nonlocal bn
        state[f"batch_norm_{bn}.w_0"] = rng.uniform(0.5, 1.5, size)
        state[f"batch_norm_{bn}.b_0"] = rng.normal(0, 0.1, size)
        state[f"batch_norm_{bn}.w_1"] = rng.normal(0, 0.5, size)
        state[f"batch_norm_{bn}.w_2"] = rng.uniform(0.5, 2.0, size)
        bn += 1

    vlad = 0
    for prefix, d in (("video", rgb), ("audio", audio)):
        e = 2 * d
        state[f"{prefix}_fc_expansion_w"] = rng.normal(0, 1 / np.sqrt(d), (d, e))
        state[f"{prefix}_fc_expansion_b"] = rng.normal(0, 0.1, e)
        state[f"{prefix}_fc_group_attention_w"] = rng.normal(0, 1 / np.sqrt(e), (e, g))
        state[f"{prefix}_fc_group_attention_b"] = rng.normal(0, 0.1, g)
        state[f"{prefix}_cluster_weights"] = rng.normal(0, 1 / np.sqrt(e), (e, g * k))
        state[f"{prefix}_cluster_weights2"] = rng.normal(0, 0.5, (k, e // g))
        batch_norm(g * k)
        batch_norm(k * e // g)
        vlad += k * e // g
    state["hidden1_fc_weights"] = rng.normal(0, 1 / np.sqrt(vlad), (vlad, hidden))
    batch_norm(hidden)
    state["gating_fc1_weights"] = rng.normal(0, 1 / np.sqrt(hidden), (hidden, hidden // reduction))
    batch_norm(hidden // reduction)
    state["gating_fc2_weights"] = rng.normal(
        0, 1 / np.sqrt(hidden // reduction), (hidden // reduction, hidden)
    )
    state["logits_clf_weights"] = rng.normal(0, 1 / np.sqrt(hidden), (hidden, classes))
    state["logits_clf_bias"] = rng.normal(0, 0.1, classes)
    state["eigen_param"] = np.sqrt(rng.uniform(0.01, 10, rgb)) + 1e-4
    state = {key: value.astype(np.float32) for key, value in state.items()}
    state["learning_rate_0"] = np.array([2e-4], np.float32)
    state["video_fc_expansion_w_moment1_0"] = np.zeros_like(state["video_fc_expansion_w"])
    return state


def paddlevideo_infer(state, rgb_q: np.ndarray, audio_q: np.ndarray, g: int, k: int, drop_rate: float):
    """PaddleVideo 1.x's inference graph for ONE unpadded video, from quantized frames (uint8 values)."""

    def bn(x, index):
        p = [state[f"batch_norm_{index}.{s}"].astype(np.float64) for s in ("w_0", "b_0", "w_1", "w_2")]
        return (x - p[2]) / np.sqrt(p[3] + 1e-5) * p[0] + p[1]

    def nextvlad(x, prefix, first_bn):
        s = {
            n: state[f"{prefix}_{n}"].astype(np.float64)
            for n in (
                "fc_expansion_w",
                "fc_expansion_b",
                "fc_group_attention_w",
                "fc_group_attention_b",
                "cluster_weights",
                "cluster_weights2",
            )
        }
        h = x @ s["fc_expansion_w"] + s["fc_expansion_b"]
        attention = 1 / (1 + np.exp(-(h @ s["fc_group_attention_w"] + s["fc_group_attention_b"])))
        act = bn(h @ s["cluster_weights"], first_bn).reshape(len(x), g, k)
        act = np.exp(act - act.max(-1, keepdims=True))
        act = act / act.sum(-1, keepdims=True) * attention[:, :, None]
        a = act.sum(axis=(0, 1))[:, None] * s["cluster_weights2"]  # [K, F]
        vlad = np.einsum("tgk,tgf->kf", act, h.reshape(len(x), g, -1)) - a
        vlad = vlad.T / np.sqrt((vlad.T**2).sum(axis=0, keepdims=True) + 1e-12)  # [F, K], L2 over F
        return bn(vlad.reshape(-1), first_bn + 1)

    rgb = (rgb_q * (4 / 255) - 2) * state["eigen_param"].astype(np.float64)
    audio = audio_q * (4 / 255) - 2 + 4 / 512
    x = np.concatenate([nextvlad(rgb, "video", 0), nextvlad(audio, "audio", 2)]) * (1 - drop_rate)
    x = bn(x @ state["hidden1_fc_weights"], 4)
    gates = np.maximum(bn(x @ state["gating_fc1_weights"], 5), 0) @ state["gating_fc2_weights"]
    x = x / (1 + np.exp(-gates))
    return x @ state["logits_clf_weights"] + state["logits_clf_bias"]


def test_converted_paddlevideo_weights_reproduce_paddlevideo_outputs(paddle):
    rng = np.random.default_rng(7)
    k, g, hidden, reduction = 4, 2, 12, 3
    state = paddlevideo_state(rng, 16, 8, k, g, hidden, reduction, SPEC.num_classes)
    paddle.seed(0)
    model = build_model(
        "nextvlad", spec=SPEC, cluster_size=k, groups=g, hidden_size=hidden, gating_reduction=reduction
    )
    unused = model.load_paddlevideo(state, source="NEXTVLAD_final.pdparams")
    assert unused == ["learning_rate_0", "video_fc_expansion_w_moment1_0"]
    model.eval()
    lengths = [5, 2, 7]
    quantized = {name: rng.integers(0, 256, (3, 7, d)) for name, d in SPEC.features.items()}
    batch = make_batch(paddle, lengths, garbage=True)
    for name in SPEC.features:  # our readers' dequantization: x * 4/255 - 2 + 4/512
        x = quantized[name] * (4 / 255) - 2 + 4 / 512
        x[batch["mask"].numpy() == 0] = 123.0
        batch[name] = paddle.to_tensor(x.astype(np.float32))
    ours = model(batch).numpy()
    for i, n in enumerate(lengths):
        theirs = paddlevideo_infer(state, quantized["rgb"][i, :n], quantized["audio"][i, :n], g, k, 0.5)
        np.testing.assert_allclose(ours[i], theirs, rtol=2e-4, atol=2e-4)


def test_paddlevideo_round_trip(paddle, shared_dir):
    eigen = str(shared_dir / "data" / "yt8m_pca_eigenvals.npy")
    model = small_model(paddle, seed=11, eigenvalues=eigen)
    model.train()
    model(make_batch(paddle, [4, 6]))  # non-trivial BatchNorm statistics
    model.eval()
    archive = model.to_paddlevideo()
    names = {
        "video_fc_expansion_w",
        "audio_cluster_weights2",
        "batch_norm_0.w_1",
        "batch_norm_5.w_2",
        "hidden1_fc_weights",
        "gating_fc2_weights",
        "logits_clf_weights",
        "logits_clf_bias",
        "eigen_param",
    }
    assert names <= set(archive)
    assert len(archive) == len(model.state_dict()) - 1  # audio's all-ones input scale has no 1.x name
    archive["@LR_DECAY_COUNTER@"] = np.zeros(1, np.int64)
    mapped, unused = zoo.plugin_class("model", "nextvlad").convert_paddlevideo(archive)
    assert unused == ["@LR_DECAY_COUNTER@"]
    own = {key: value.numpy() for key, value in model.state_dict().items()}
    assert set(mapped) == set(own)
    for key, value in own.items():
        np.testing.assert_allclose(mapped[key], value, rtol=1e-5, atol=1e-6, err_msg=key)

    fresh = small_model(paddle, seed=12)
    fresh.load_paddlevideo(archive)
    fresh.eval()
    batch = make_batch(paddle, [3, 5])
    np.testing.assert_allclose(fresh(batch).numpy(), model(batch).numpy(), rtol=1e-5, atol=1e-5)


def test_paddlevideo_weights_that_do_not_fit_are_refused(paddle):
    state = paddlevideo_state(np.random.default_rng(1), 16, 8, 4, 2, 12, 3, SPEC.num_classes)
    model = small_model(paddle)  # cluster_size 6: every cluster tensor has the wrong shape
    with pytest.raises(DataError, match=r"final\.pdparams: .*cluster_weights.* shape"):
        model.load_paddlevideo(state, source="final.pdparams")
    moe = small_model(paddle, classifier="moe")
    with pytest.raises(DataError, match="no value for head"):
        moe.load_paddlevideo(state)
    with pytest.raises(DataError, match="head.gates"):
        moe.to_paddlevideo()


# --- the bundled config ------------------------------------------------------------------------------------


def test_bundled_config_spells_out_the_defaults_and_a_sample_scale(paddle):
    config = load_config(bundled_config("nextvlad"))
    defaults = zoo.plugin_class("model", "nextvlad").Config()
    for key, value in config.model.items():
        assert getattr(defaults, key) == value, key
    assert set(config.model) >= {
        "cluster_size",
        "groups",
        "expansion",
        "hidden_size",
        "dropout",
        "classifier",
    }
    sample = config.with_overrides({"dataset": {"num_classes": 200}, **config.sample}, "sample")
    model = build_model("nextvlad", preset="yt8m", num_classes=200, **sample.model)
    assert trainable(model) < 10_000_000  # vs 89M
    model.eval()
    out = model(make_sample_batch(paddle))
    assert out.shape == [2, 200] and np.isfinite(out.numpy()).all()


def make_sample_batch(paddle):
    rng = np.random.default_rng(0)
    mask = np.ones((2, 10), np.float32)
    mask[1, 4:] = 0
    return {
        "rgb": paddle.to_tensor(rng.uniform(-2, 2, (2, 10, 1024)).astype(np.float32)),
        "audio": paddle.to_tensor(rng.uniform(-2, 2, (2, 10, 128)).astype(np.float32)),
        "mask": paddle.to_tensor(mask),
        "num_frames": paddle.to_tensor(np.array([10, 4], np.int64)),
    }


def test_engine_loads_a_paddlevideo_pdparams_file(paddle, tmp_path):
    """A 1.x ``NEXTVLAD_final.pdparams`` (protocol-2 pickle of arrays) goes through the engine's loader."""
    import pickle

    from zoo.engine.runs.weights import apply_weights, read_weights

    state = paddlevideo_state(np.random.default_rng(3), 16, 8, 4, 2, 12, 3, SPEC.num_classes)
    path = tmp_path / "NEXTVLAD_final.pdparams"
    path.write_bytes(pickle.dumps(state, protocol=2))
    options = {"cluster_size": 4, "groups": 2, "hidden_size": 12, "gating_reduction": 3}
    model = build_model("nextvlad", spec=SPEC, **options)
    report = apply_weights(model, read_weights(str(path)), strict=True)
    assert set(report.unexpected) == {"learning_rate_0", "video_fc_expansion_w_moment1_0"}
    reference = build_model("nextvlad", spec=SPEC, **options)
    reference.load_paddlevideo(state)
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key].numpy(), value.numpy(), err_msg=key)
