"""Each reference-derived baseline against its reference's math, written in numpy from the reference's definition.

The references (google/youtube-8m ``train.py``, ``frame_level_models.py``, ``video_level_models.py``;
WILLOW's ``frame_level_models.py`` and ``video_level_models.py``) run TensorFlow graphs; what they compute is
re-stated here in numpy, in their layouts (TensorFlow's ``[in, out]`` kernels, ``BasicLSTMCell``'s i, j, f, o
gate order with a constant forget bias, WILLOW's ``[D, K]`` VLAD flattening), on every frame of each video
only (the references see no padding: they sample real frames or stop at ``sequence_length``). The zoo models
run in eval mode with their recipe's settings (l2 input normalisation, BatchNorm epsilon 0.001) on fixed
random weights, with padding filled with large random values, and must give the same probabilities.
Also checked here: the optimizer's per-tensor clipping and classifier-only L2 (zoo.engine.optim).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zoo import DatasetSpec, build_model
from zoo.config import TrainConfig

SPEC = DatasetSpec(num_classes=5, features={"rgb": 6, "audio": 4}, max_frames=10)
LENGTHS = [3, 7, 1]
STARTER = {"input_norm": "l2", "bn_momentum": 0.999, "bn_epsilon": 0.001}


@pytest.fixture(scope="module")
def paddle(paddle_cpu):
    return paddle_cpu


def make_batch(seed: int = 0) -> tuple[dict, list[np.ndarray]]:
    """A padded batch (padding = large random values) and, per video, its real frames concatenated ``[n, D]``."""
    rng = np.random.default_rng(seed)
    t = max(LENGTHS) + 2
    batch, mask = {}, np.zeros((len(LENGTHS), t), dtype="float32")
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = 1.0
    for name, dim in SPEC.features.items():
        x = 50.0 * rng.normal(size=(len(LENGTHS), t, dim))
        x[mask > 0] = rng.normal(size=(int(mask.sum()), dim)) + 0.3
        batch[name] = x.astype("float32")
    batch["mask"] = mask
    batch["num_frames"] = mask.sum(axis=1).astype("int64")
    videos = [
        np.concatenate([batch[f][i, :n] for f in SPEC.features], axis=-1) for i, n in enumerate(LENGTHS)
    ]
    return batch, [v.astype("float64") for v in videos]


def randomize(model, seed: int = 1) -> dict[str, np.ndarray]:
    """Give every parameter and BatchNorm statistic a fixed random value; return them as float64 numpy."""
    import paddle

    rng = np.random.default_rng(seed)
    out = {}
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if p.dtype != paddle.float32:  # e.g. the LSTM's dropout state
            continue
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 2.0, size=p.shape)
        elif name.endswith("_mean"):
            value = 0.2 * rng.normal(size=p.shape)
        else:
            value = 0.5 * rng.normal(size=p.shape)
        p.set_value(paddle.to_tensor(value.astype("float32")))
        out[name] = value
    return out


def zoo_probabilities(model, batch: dict) -> np.ndarray:
    import paddle

    model.eval()
    tensors = {k: paddle.to_tensor(v) for k, v in batch.items()}
    with paddle.no_grad():
        logits = model(tensors).numpy().astype("float64")
    return 1.0 / (1.0 + np.exp(-logits))


# ---------------------------------------------------------------------------------------------------------
# The references' math


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """tf.nn.l2_normalize: x * rsqrt(max(sum(x^2), 1e-12))."""
    return x / np.sqrt(np.maximum((x * x).sum(axis=axis, keepdims=True), 1e-12))


def slim_bn(x: np.ndarray, w: dict, prefix: str, eps: float = 0.001) -> np.ndarray:
    """slim.batch_norm(center=True, scale=True) at inference: the moving statistics, epsilon 0.001."""
    mean, var = w[f"{prefix}._mean"], w[f"{prefix}._variance"]
    return w[f"{prefix}.weight"] * (x - mean) / np.sqrt(var + eps) + w[f"{prefix}.bias"]


def logistic_model(x: np.ndarray, w: dict, prefix: str) -> np.ndarray:
    """video_level_models.LogisticModel: sigmoid(x W + b)."""
    return sigmoid(x @ w[f"{prefix}.fc.weight"] + w[f"{prefix}.fc.bias"])


def moe_model(x: np.ndarray, w: dict, prefix: str, classes: int, mixtures: int) -> np.ndarray:
    """video_level_models.MoeModel: per class, softmax over M + 1 gates times M sigmoid experts (the last gate
    is the dummy expert that always says 0). The reference's gates have no bias; the zoo's gate bias is added."""
    gates = (x @ w[f"{prefix}.gates.weight"] + w[f"{prefix}.gates.bias"]).reshape(-1, mixtures + 1)
    experts = (x @ w[f"{prefix}.experts.weight"] + w[f"{prefix}.experts.bias"]).reshape(-1, mixtures)
    p = (softmax(gates)[:, :mixtures] * sigmoid(experts)).sum(axis=1)
    return p.reshape(-1, classes)


def starter_input(video: np.ndarray) -> np.ndarray:
    """train.py: model_input = tf.nn.l2_normalize(model_input_raw, feature_dim) (each frame, all features)."""
    return l2_normalize(video, axis=-1)


def frame_pooling(frames: np.ndarray, method: str) -> np.ndarray:
    """The starter's FrameLevelLogisticModel sum / num_frames and FramePooling's max."""
    return frames.sum(axis=0) / len(frames) if method == "mean" else frames.max(axis=0)


def tf_lstm_kernel(w: dict, layer: int, hidden: int, forget_bias: float) -> tuple[np.ndarray, np.ndarray]:
    """Paddle's LSTM weights as one BasicLSTMCell kernel ``[in + H, 4H]`` (gates i, j, f, o) and bias.

    Paddle's gates are i, f, g(=j), o with two bias vectors; BasicLSTMCell adds forget_bias to f as a
    constant, so its bias is paddle's sum minus forget_bias on f.
    """
    wi, wh = w[f"lstm.weight_ih_l{layer}"], w[f"lstm.weight_hh_l{layer}"]  # [4H, in], [4H, H]
    b = w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]
    order = [0, 2, 1, 3]  # paddle i, f, g, o -> TensorFlow i, j, f, o
    kernel = np.concatenate([wi, wh], axis=1).T.reshape(-1, 4, hidden)[:, order].reshape(-1, 4 * hidden)
    bias = b.reshape(4, hidden)[order].copy()
    bias[2] -= forget_bias
    return kernel, bias.reshape(-1)


def basic_lstm(frames: np.ndarray, kernel: np.ndarray, bias: np.ndarray, forget_bias: float) -> np.ndarray:
    """tf.contrib.rnn.BasicLSTMCell over the real frames; every step's h."""
    hidden = bias.shape[0] // 4
    h, c, out = np.zeros(hidden), np.zeros(hidden), []
    for x in frames:
        i, j, f, o = np.split(np.concatenate([x, h]) @ kernel + bias, 4)
        c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * sigmoid(o)
        out.append(h)
    return np.stack(out)


# ---------------------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize(
    "name,method", [("mean-pool", ["mean"]), ("max-pool", ["max"]), ("mean-max-pool", ["mean", "max"])]
)
def test_pooling_is_the_starters_frame_level_logistic(paddle, name, method):
    model = build_model(name, spec=SPEC, **STARTER)
    w = randomize(model)
    batch, videos = make_batch()
    expected = np.stack(
        [
            logistic_model(np.concatenate([frame_pooling(starter_input(v), m) for m in method]), w, "head")
            for v in videos
        ]
    )
    np.testing.assert_allclose(zoo_probabilities(model, batch), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["max", "average"])
def test_dbof_is_the_starters_dbof_model(paddle, pooling):
    c = SPEC.num_classes
    model = build_model("dbof", spec=SPEC, cluster_size=16, hidden_size=8, pooling=pooling, **STARTER)
    w = randomize(model)
    batch, videos = make_batch()
    expected = []
    for v in videos:
        x = slim_bn(starter_input(v), w, "input_bn")  # reshaped_input -> input_bn
        a = np.clip(slim_bn(x @ w["cluster.weight"], w, "cluster_bn"), 0.0, 6.0)  # cluster_bn, relu6
        a = a.max(axis=0) if pooling == "max" else a.mean(axis=0)  # FramePooling
        h = np.clip(slim_bn(a @ w["hidden.weight"], w, "hidden_bn"), 0.0, 6.0)  # hidden1_bn, relu6
        expected.append(moe_model(h[None], w, "head", c, 2)[0])
    np.testing.assert_allclose(zoo_probabilities(model, batch), np.stack(expected), rtol=1e-4, atol=1e-5)


def test_lstm_is_the_starters_lstm_model(paddle):
    hidden, layers = 5, 2
    model = build_model("lstm", spec=SPEC, lstm_size=hidden, lstm_layers=layers, **STARTER)
    w = randomize(model)
    batch, videos = make_batch()
    expected = []
    for v in videos:
        x = starter_input(v)
        for layer in range(layers):  # MultiRNNCell: each layer's outputs feed the next
            kernel, bias = tf_lstm_kernel(w, layer, hidden, 1.0)
            x = basic_lstm(x, kernel, bias, 1.0)
        expected.append(moe_model(x[-1][None], w, "head", SPEC.num_classes, 2)[0])  # state[-1].h
    np.testing.assert_allclose(zoo_probabilities(model, batch), np.stack(expected), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["netvlad", "netrvlad"])
def test_netvlad_is_willows_gated_netvlad(paddle, name):
    clusters = {"rgb": 4, "audio": 2}
    c, hidden = SPEC.num_classes, 8
    model = build_model(name, spec=SPEC, cluster_sizes=clusters, hidden_size=hidden, **STARTER)
    w = randomize(model)
    batch, videos = make_batch()
    dims = list(SPEC.features.values())
    # WILLOW flattens each VLAD [D, K] (index d * K + k), the zoo [K, D]: the same hidden FC, rows permuted
    rows, offset = [], 0
    for dim, k in zip(dims, clusters.values()):
        rows.append(offset + (np.arange(k)[None, :] * dim + np.arange(dim)[:, None]).reshape(-1))
        offset += dim * k
    hidden_w = w["hidden.weight"][np.concatenate(rows)]
    expected = []
    for v in videos:
        x = starter_input(v)
        descriptors, start = [], 0
        for i, dim in enumerate(dims):
            xi = slim_bn(x[:, start : start + dim], w, f"input_bn.{i}")  # input_bn on the 1152-dim frames
            start += dim
            a = softmax(slim_bn(xi @ w[f"vlad.{i}.assign.weight"], w, f"vlad.{i}.assign_bn"))  # [n, K]
            vlad = (a.T @ xi).T  # [D, K]
            if name == "netvlad":
                vlad = vlad - a.sum(axis=0)[None, :] * w[f"vlad.{i}.centers"].T  # cluster_weights2 [D, K]
            vlad = l2_normalize(vlad, axis=0)  # intra-normalisation over D
            descriptors.append(l2_normalize(vlad.reshape(-1)))
        h = np.concatenate(descriptors) @ hidden_w + w["hidden.bias"]  # netvlad_relu=False: bias, no BN
        h = h * sigmoid(slim_bn(h @ w["gate.fc.weight"], w, "gate.bn"))  # context gating
        p = moe_model(h[None], w, "head", c, 2)[0]
        p = p * sigmoid(slim_bn(p @ w["output_gate.fc.weight"], w, "output_gate.bn"))  # moe_prob_gating
        expected.append(p)
    np.testing.assert_allclose(zoo_probabilities(model, batch), np.stack(expected), rtol=1e-4, atol=1e-5)


def test_l2_input_norm_leaves_padding_zero_and_needs_no_batch_neighbours(paddle):
    """Padding comes back as zeros whatever it held; each real frame has unit joint norm over all features."""
    from zoo.nn import normalize_frames

    batch, videos = make_batch()
    xs = normalize_frames(
        [paddle.to_tensor(batch[f]) for f in SPEC.features], paddle.to_tensor(batch["mask"]), "l2"
    )
    joint = np.concatenate([x.numpy() for x in xs], axis=-1)
    norms = np.sqrt((joint**2).sum(axis=-1))
    np.testing.assert_allclose(norms[batch["mask"] > 0], 1.0, rtol=1e-5)
    assert np.all(joint[batch["mask"] == 0] == 0.0)
    for i, v in enumerate(videos):
        np.testing.assert_allclose(joint[i, : len(v)], starter_input(v), rtol=1e-5, atol=1e-6)


def test_bn_momentum_is_the_decay_of_the_running_averages(paddle):
    """paddle's momentum m: running = m * running + (1 - m) * batch, i.e. slim's decay."""
    model = build_model("dbof", spec=SPEC, cluster_size=4, hidden_size=3, **STARTER)
    model.train()
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model.hidden_bn(paddle.to_tensor(x))
    np.testing.assert_allclose(model.hidden_bn._mean.numpy(), 0.001 * x.mean(axis=0), rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------
# Clipping and L2 scope: two Adam steps on a tiny model, against the update written out in numpy


def tiny_model(paddle):
    from zoo.nn import LogisticHead

    class Tiny(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.body = paddle.nn.Linear(3, 4)
            self.head = LogisticHead(4, 2)

    paddle.seed(0)
    return Tiny()


def run_steps(paddle, model, train_cfg, coefficients):
    """Adam steps on loss = sum_p <p, C_t[p]> (gradient C_t, known exactly); the parameters after each."""
    from zoo.engine.optim import build_optimizer

    opt = build_optimizer(model, train_cfg)
    names = [n for n, _ in model.named_parameters()]
    for coef in coefficients:
        params = dict(model.named_parameters())
        loss = sum((params[n] * paddle.to_tensor(coef[n].astype("float32"))).sum() for n in names)
        loss.backward()
        opt.step()
        opt.clear_grad()
    return {n: p.numpy().astype("float64") for n, p in model.named_parameters()}


def numpy_adam(start, coefficients, lr, clip, mode, l2, penalized):
    """Adam (beta1 0.9, beta2 0.999, eps 1e-8) on clipped gradients, then + l2 * w on the penalised weights."""
    w = {n: v.copy() for n, v in start.items()}
    m = {n: np.zeros_like(v) for n, v in w.items()}
    v2 = {n: np.zeros_like(v) for n, v in w.items()}
    for t, coef in enumerate(coefficients, start=1):
        g = {n: coef[n].astype("float64") for n in w}
        if mode == "per_tensor":
            g = {n: x * min(1.0, clip / np.linalg.norm(x)) for n, x in g.items()}
        else:
            total = np.sqrt(sum((x**2).sum() for x in g.values()))
            g = {n: x * min(1.0, clip / total) for n, x in g.items()}
        for n in w:
            grad = g[n] + (l2 * w[n] if n in penalized else 0.0)
            m[n] = 0.9 * m[n] + 0.1 * grad
            v2[n] = 0.999 * v2[n] + 0.001 * grad**2
            w[n] = w[n] - lr * (m[n] / (1 - 0.9**t)) / (np.sqrt(v2[n] / (1 - 0.999**t)) + 1e-8)
    return w


@pytest.mark.parametrize("mode", ["per_tensor", "global"])
@pytest.mark.parametrize("scope", ["classifier", "all"])
def test_clipping_and_l2_scope_update_math(paddle, mode, scope):
    model = tiny_model(paddle)
    start = {n: p.numpy().astype("float64") for n, p in model.named_parameters()}
    rng = np.random.default_rng(3)
    # gradients of very different sizes per tensor and per step, so both clipping modes change the update
    coefficients = [{n: rng.normal(size=v.shape) * s for (n, v), s in zip(start.items(), (5, 0.1, 3, 0.2))}]
    coefficients.append({n: rng.normal(size=v.shape) * 0.3 for n, v in start.items()})
    cfg = dataclasses.replace(
        TrainConfig(),
        learning_rate=0.1,
        gradient_clip_norm=1.0,
        gradient_clip_mode=mode,
        l2_penalty=0.5,
        l2_scope=scope,
    )
    got = run_steps(paddle, model, cfg, coefficients)
    penalized = {"head.fc.weight"} if scope == "classifier" else set(start)
    expected = numpy_adam(start, coefficients, 0.1, 1.0, mode, 0.5, penalized)
    for n in start:
        np.testing.assert_allclose(got[n], expected[n], rtol=1e-4, atol=1e-6, err_msg=n)
    # and the other choices would have given something else: the test can tell the modes apart
    other_mode = numpy_adam(
        start, coefficients, 0.1, 1.0, {"global": "per_tensor"}.get(mode, "global"), 0.5, penalized
    )
    assert any(not np.allclose(got[n], other_mode[n], rtol=1e-4, atol=1e-6) for n in start)


def test_classifier_scope_penalizes_head_weights_only(paddle):
    from zoo.nn import classifier_weights

    model = build_model("dbof", spec=SPEC, cluster_size=4, hidden_size=3)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in classifier_weights(model)) == [
        "head.experts.weight",
        "head.gates.weight",
    ]


def test_classifier_scope_without_a_head_is_a_config_error(paddle):
    from zoo.engine.optim import build_optimizer
    from zoo.errors import ConfigError

    cfg = dataclasses.replace(TrainConfig(), l2_scope="classifier")
    with pytest.raises(ConfigError, match="l2_scope"):
        build_optimizer(paddle.nn.Linear(2, 2), cfg)
