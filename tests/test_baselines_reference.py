"""Each reference-derived baseline against its reference's math, written in numpy from the reference's definition.

The references (google/youtube-8m ``train.py``, ``frame_level_models.py``, ``video_level_models.py``;
WILLOW's ``frame_level_models.py`` and ``video_level_models.py``) run TensorFlow graphs; what they compute is
re-stated here in numpy, in their layouts (TensorFlow's ``[in, out]`` kernels, ``BasicLSTMCell``'s i, j, f, o
gate order with a constant forget bias, WILLOW's ``[D, K]`` VLAD flattening), on every frame of each video
only (the references see no padding: they sample real frames or stop at ``sequence_length``). The zoo models
run in eval mode with their recipe's settings (l2 input normalisation, BatchNorm epsilon 0.001) on fixed
random weights, with padding filled with large random values, and must give the same probabilities.
The PaddleVideo 1.x models (PaddlePaddle/models ``PaddleCV/video/models/attention_cluster`` and
``attention_lstm``: fluid graphs, LoD sequences without padding) are re-stated the same way in fluid's layouts
(a 1x1 conv for the attention scores, ``dynamic_lstm``'s c, i, f, o gates with peepholes, dropout's
``downgrade_in_infer`` scaling at inference) with their recipe's raw, un-normalised features.
Also checked here: the optimizer's per-tensor clipping and classifier-only L2 (zoo.engine.train.optimizer).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zoo import DatasetSpec, build_model
from zoo.engine.settings import TrainConfig
from zoo.testing import model_batch

SPEC = DatasetSpec(num_classes=5, features={"rgb": 6, "audio": 4}, max_frames=10)
LENGTHS = [3, 7, 1]
STARTER = {"input_norm": "l2", "bn_momentum": 0.999, "bn_epsilon": 0.001}


def make_batch(seed: int = 0) -> tuple[dict, list[np.ndarray]]:
    """A padded batch (zoo.testing.model_batch, padding = large random values) as numpy arrays and, per video,
    its real frames concatenated ``[n, D]``."""
    batch = model_batch(SPEC, LENGTHS, frames=max(LENGTHS) + 2, garbage=True, seed=seed)
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


def fluid_dropout_infer(x: np.ndarray, rate: float) -> np.ndarray:
    """fluid.layers.dropout(is_test=True) with its default downgrade_in_infer: x * (1 - rate)."""
    return x * (1.0 - rate)


def shifting_attention(x: np.ndarray, conv_w: np.ndarray, conv_b: np.ndarray, shift_w, shift_b) -> np.ndarray:
    """ShiftingAttentionModel.forward on one video's frames ``x [L, F]``.

    conv2d 1x1 (``conv_w [C, F, 1, 1]``) over the transposed input gives scores ``[C, L]``; softmax_m1
    softmaxes each unit's scores over the frames; unit i: reduce_sum(x * weight_i, frames) * w_i + b_i,
    l2_normalize, divided by sqrt(C); the units are concatenated in order.
    """
    clusters = conv_w.shape[0]
    trans_x = x.T[:, :, None]  # [F, L, 1]
    scores = np.einsum("cf,flk->clk", conv_w[:, :, 0, 0], trans_x)[:, :, 0] + conv_b[:, None]  # [C, L]
    weights = softmax(scores, axis=-1)
    outs = []
    for i in range(clusters):
        shift = (x * weights[i][:, None]).sum(axis=0) * shift_w[i] + shift_b[i]
        outs.append(l2_normalize(shift) / np.sqrt(clusters))
    return np.concatenate(outs)


def fluid_gate_layout(w: np.ndarray, hidden: int) -> np.ndarray:
    """Paddle's LSTM gate blocks (rows i, f, g, o) as fluid's dynamic_lstm columns (c, i, f, o)."""
    blocks = w.reshape(4, hidden, *w.shape[1:])[[2, 0, 1, 3]]
    return blocks.reshape(4 * hidden, *w.shape[1:]).T


def dynamic_lstm(gates_x: np.ndarray, w_h: np.ndarray, bias: np.ndarray, reverse: bool) -> np.ndarray:
    """fluid.layers.dynamic_lstm (use_peepholes=True, sigmoid / tanh / tanh) on one sequence; every step's h.

    ``gates_x [L, 4H]`` is the input fc's output, ``w_h [H, 4H]``, ``bias [7H]``: b_c, b_i, b_f, b_o and the
    peepholes W_ic, W_fc, W_oc. is_reverse runs from the last frame to the first.
    """
    hidden = w_h.shape[0]
    b, w_ic, w_fc, w_oc = bias[: 4 * hidden], *np.split(bias[4 * hidden :], 3)
    h, c, out = np.zeros(hidden), np.zeros(hidden), [None] * len(gates_x)
    for t in reversed(range(len(gates_x))) if reverse else range(len(gates_x)):
        g_c, g_i, g_f, g_o = np.split(gates_x[t] + h @ w_h + b, 4)
        i = sigmoid(g_i + w_ic * c)
        f = sigmoid(g_f + w_fc * c)
        c = f * c + i * np.tanh(g_c)
        o = sigmoid(g_o + w_oc * c)
        h = o * np.tanh(c)
        out[t] = h
    return np.stack(out)


def lstm_attention(x: np.ndarray, w: dict, prefix: str, hidden: int, rate: float) -> np.ndarray:
    """LSTMAttentionModel.forward (is_training=False) on one video's frames ``x [L, F]``.

    fc tanh embedding; per direction an fc to 4H gate inputs and a dynamic_lstm; concat [forward, backward];
    dropout; fc to 1 with sequence_softmax over the frames; elementwise_mul; sequence_pool sum.
    The zoo's LSTM has no peepholes (as PaddleVideo 2.x's nn.LSTM), so they are zero here.
    """
    emb = np.tanh(x @ w[f"{prefix}.embed.weight"] + w[f"{prefix}.embed.bias"])
    states = []
    for suffix, reverse in (("", False), ("_reverse", True)):
        fc_w = fluid_gate_layout(w[f"{prefix}.lstm.weight_ih_l0{suffix}"], hidden)  # [E, 4H]
        fc_b = fluid_gate_layout(w[f"{prefix}.lstm.bias_ih_l0{suffix}"], hidden)
        w_h = fluid_gate_layout(w[f"{prefix}.lstm.weight_hh_l0{suffix}"], hidden)  # [H, 4H]
        bias = np.concatenate(
            [fluid_gate_layout(w[f"{prefix}.lstm.bias_hh_l0{suffix}"], hidden), np.zeros(3 * hidden)]
        )
        states.append(dynamic_lstm(emb @ fc_w + fc_b, w_h, bias, reverse))
    dropped = fluid_dropout_infer(np.concatenate(states, axis=1), rate)  # [L, 2H]
    weight = softmax(dropped @ w[f"{prefix}.score.weight"] + w[f"{prefix}.score.bias"], axis=0)  # [L, 1]
    return (dropped * weight).sum(axis=0)


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


@pytest.mark.parametrize(
    ("pooling", "activation"), [("max", "sigmoid"), ("average", "sigmoid"), ("max", "relu6")]
)
def test_dbof_is_the_starters_dbof_model(paddle, pooling, activation):
    c = SPEC.num_classes
    model = build_model(
        "dbof", spec=SPEC, cluster_size=16, hidden_size=8, pooling=pooling, activation=activation, **STARTER
    )
    w = randomize(model)
    batch, videos = make_batch()
    # the starter's dbof_activation: sigmoid (its default since August 2019) or relu6
    act = (
        (lambda z: 1.0 / (1.0 + np.exp(-z))) if activation == "sigmoid" else (lambda z: np.clip(z, 0.0, 6.0))
    )
    expected = []
    for v in videos:
        x = slim_bn(starter_input(v), w, "input_bn")  # reshaped_input -> input_bn
        a = act(slim_bn(x @ w["cluster.weight"], w, "cluster_bn"))  # cluster_bn, act_fn
        a = a.max(axis=0) if pooling == "max" else a.mean(axis=0)  # FramePooling
        h = act(slim_bn(a @ w["hidden.weight"], w, "hidden_bn"))  # hidden1_bn, act_fn
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


@pytest.mark.parametrize("clusters", [1, 3])
def test_attention_cluster_is_paddlevideos_attention_cluster(paddle, clusters):
    rate, dims = 0.5, list(SPEC.features.values())
    model = build_model(
        "attention-cluster",
        spec=SPEC,
        cluster_num=clusters,
        hidden_sizes=[7, 6],
        dropout=rate,
        dropout_mode="downscale_in_infer",  # as configs/attention-cluster.yaml
    )
    w = randomize(model)
    batch, videos = make_batch()
    expected = []
    for v in videos:
        outs, start = [], 0
        for i, dim in enumerate(dims):  # satt0 (rgb), satt1 (audio): raw features, no normalisation
            conv_w = w[f"attention.{i}.scores.weight"].T[:, :, None, None]  # [C, F, 1, 1]
            shift_w, shift_b = w[f"attention.{i}.shift_w"][:, 0], w[f"attention.{i}.shift_b"][:, 0]
            a = v[:, start : start + dim]
            outs.append(shifting_attention(a, conv_w, w[f"attention.{i}.scores.bias"], shift_w, shift_b))
            start += dim
        h = fluid_dropout_infer(np.concatenate(outs), rate)
        h = np.tanh(h @ w["mlp.layers.0.weight"] + w["mlp.layers.0.bias"])  # fc1, tanh
        h = np.tanh(h @ w["mlp.layers.1.weight"] + w["mlp.layers.1.bias"])  # fc2, tanh
        expected.append(logistic_model(h, w, "head"))  # LogisticModel: sigmoid(fc)
    np.testing.assert_allclose(zoo_probabilities(model, batch), np.stack(expected), rtol=1e-4, atol=1e-5)


def test_attention_lstm_is_paddlevideos_attention_lstm(paddle):
    rate, hidden, dims = 0.5, 5, list(SPEC.features.values())
    model = build_model(
        "attention-lstm",
        spec=SPEC,
        embedding_size=4,
        lstm_size=hidden,
        hidden_sizes=[7, 6],
        dropout=rate,
        dropout_mode="downscale_in_infer",  # as configs/attention-lstm.yaml
    )
    w = randomize(model)
    batch, videos = make_batch()
    expected = []
    for v in videos:
        outs, start = [], 0
        for i, dim in enumerate(dims):  # one LSTMAttentionModel per feature, raw features
            outs.append(lstm_attention(v[:, start : start + dim], w, f"branches.{i}", hidden, rate))
            start += dim
        h = np.maximum(np.concatenate(outs) @ w["mlp.layers.0.weight"] + w["mlp.layers.0.bias"], 0.0)  # relu
        h = np.tanh(h @ w["mlp.layers.1.weight"] + w["mlp.layers.1.bias"])  # tanh
        expected.append(logistic_model(h, w, "head"))  # logit fc, sigmoid
    np.testing.assert_allclose(zoo_probabilities(model, batch), np.stack(expected), rtol=1e-4, atol=1e-5)


def test_attention_models_start_as_paddlevideo_does(paddle):
    """Initialisers (fluid's MSRA / Xavier) and which biases escape AttentionLSTM's weight decay."""
    spec = DatasetSpec(num_classes=400, features={"rgb": 300, "audio": 200}, max_frames=10)
    cluster = dict(build_model("attention-cluster", spec=spec, cluster_num=200).named_parameters())
    std = {n: float(p.numpy().std()) for n, p in cluster.items()}
    assert std["attention.0.scores.weight"] == pytest.approx(np.sqrt(2 / 300), rel=0.1)  # MSRA normal
    # MSRA uniform on a bias: U(+-sqrt(6 / length)), std sqrt(2 / length)
    assert std["attention.0.scores.bias"] == pytest.approx(np.sqrt(2 / 200), rel=0.2)
    assert std["mlp.layers.0.bias"] == pytest.approx(np.sqrt(2 / 1024), rel=0.1)
    assert std["head.fc.weight"] == pytest.approx(np.sqrt(2 / 4096), rel=0.1)
    assert std["head.fc.bias"] == pytest.approx(np.sqrt(2 / 400), rel=0.2)  # MSRA normal, fan = classes
    lstm = build_model("attention-lstm", spec=spec, embedding_size=64, lstm_size=32, hidden_sizes=[128, 64])
    params = dict(lstm.named_parameters())
    limit = np.sqrt(6 / (64 + 4 * 32))  # the gate fc [E, 4H], Xavier uniform
    assert np.abs(params["branches.0.lstm.weight_ih_l0"].numpy()).max() == pytest.approx(limit, rel=0.05)
    no_decay = sorted(n for n, p in params.items() if p.regularizer is not None)
    assert all(params[n].regularizer._coeff == 0.0 for n in no_decay)  # L2Decay(0.0)
    assert all(not params[n].numpy().any() for n in no_decay)  # zero biases
    assert (
        not params["branches.0.lstm.bias_hh_l0"].numpy().any()
        and "branches.0.lstm.bias_hh_l0" not in no_decay
    )
    assert no_decay == sorted(n for n in params if n.endswith("bias") or "bias_ih" in n)


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
    from zoo.engine.train.optimizer import build_optimizer

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
    from zoo.engine.train.optimizer import build_optimizer
    from zoo.errors import ConfigError

    cfg = dataclasses.replace(TrainConfig(), l2_scope="classifier")
    with pytest.raises(ConfigError, match="l2_scope"):
        build_optimizer(paddle.nn.Linear(2, 2), cfg)
