"""NeXtVLAD's two formulations (model.formulation) compute the same function with different FLOPs.

The factored form never expands the frames; these tests hold it to the expanded (PaddleVideo-order) form at
the reference branch sizes (rgb 1024, audio 128, K=128, G=8, expansion 2, 300 frames) with a small head and
batch: outputs, gradients and BatchNorm statistics in train and eval mode, with padding holding garbage.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import require_kernel

from zoo import DatasetSpec, build_model
from zoo.errors import ConfigError
from zoo.testing import move_batchnorm_statistics

REFERENCE = DatasetSpec(num_classes=20, features={"rgb": 1024, "audio": 128}, max_frames=300)
HEAD = {"hidden_size": 64, "gating_reduction": 4, "dropout": 0.0}  # the branches are at reference size
LENGTHS = [300, 137, 1, 260]


def reference_batch(paddle, lengths: list[int], seed: int = 0) -> dict:
    """Frames in the dequantized range; padded frames hold large values (they must not matter)."""
    rng = np.random.default_rng(seed)
    t = REFERENCE.max_frames
    mask = (np.arange(t)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    batch = {}
    for name, dim in REFERENCE.features.items():
        x = rng.uniform(-2, 2, (len(lengths), t, dim))
        x = np.where(mask[..., None] > 0, x, 50.0 * rng.normal(size=x.shape))
        batch[name] = paddle.to_tensor(x.astype(np.float32))
    batch["mask"] = paddle.to_tensor(mask)
    batch["num_frames"] = paddle.to_tensor(np.array(lengths, np.int64))
    return batch


def twin_models(paddle, seed: int = 0, **options):
    """The same weights in both formulations; BatchNorm statistics and biases moved off their defaults."""
    paddle.seed(seed)
    expanded = build_model("nextvlad", spec=REFERENCE, formulation="expanded", **{**HEAD, **options})
    rng = np.random.default_rng(seed)
    move_batchnorm_statistics(expanded, rng)
    for name, tensor in expanded.state_dict().items():
        if name.endswith("bias") or name.endswith("input_scale"):
            tensor.set_value((rng.uniform(0.5, 1.5, tensor.shape) * np.sign(rng.normal())).astype(np.float32))
    factored = build_model("nextvlad", spec=REFERENCE, formulation="factored", **{**HEAD, **options})
    factored.set_state_dict(expanded.state_dict())
    return expanded, factored


def test_factored_is_the_default_and_names_stay(paddle):
    paddle.seed(0)
    small = DatasetSpec(num_classes=5, features={"rgb": 16, "audio": 8}, max_frames=10)
    default = build_model("nextvlad", spec=small, cluster_size=4, groups=2, hidden_size=8, gating_reduction=2)
    expanded = build_model(
        "nextvlad",
        spec=small,
        cluster_size=4,
        groups=2,
        hidden_size=8,
        gating_reduction=2,
        formulation="expanded",
    )
    assert default.config.formulation == "factored"
    assert all(branch.formulation == "factored" for branch in default.branches.values())
    own, theirs = default.state_dict(), expanded.state_dict()
    assert list(own) == list(theirs)
    assert all(own[key].shape == theirs[key].shape for key in own)
    with pytest.raises(ConfigError, match="formulation"):
        build_model("nextvlad", spec=small, formulation="fast")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_same_outputs_statistics_and_gradients(paddle, mode):
    expanded, factored = twin_models(paddle)
    batch = reference_batch(paddle, LENGTHS)
    weights = paddle.to_tensor(np.random.default_rng(1).normal(size=(len(LENGTHS), 20)).astype(np.float32))
    outputs, grads = {}, {}
    for name, model in (("expanded", expanded), ("factored", factored)):
        getattr(model, mode)()
        out = model(batch)
        (out * weights).sum().backward()
        outputs[name] = out.numpy()
        grads[name] = {key: p.grad.numpy() for key, p in model.named_parameters() if p.grad is not None}
    np.testing.assert_allclose(outputs["factored"], outputs["expanded"], rtol=1e-4, atol=1e-4)
    assert (
        set(grads["factored"])
        == set(grads["expanded"])
        == {key for key, p in expanded.named_parameters() if not p.stop_gradient}
    )
    largest = max(np.abs(g).max() for g in grads["expanded"].values())
    for key, reference in grads["expanded"].items():
        # float32 rounding relative to the tensor's gradient scale; some gradients are zero up to rounding
        # (in train mode the hidden BatchNorm cancels the VLAD BatchNorm's shift): those against the largest
        scale = max(np.abs(reference).max(), 1e-4 * largest)
        np.testing.assert_allclose(grads["factored"][key], reference, rtol=0, atol=2e-3 * scale, err_msg=key)
    stats = {
        key: (value.numpy(), factored.state_dict()[key].numpy())
        for key, value in expanded.state_dict().items()
        if key.endswith(("_mean", "_variance"))
    }
    for key, (theirs, ours) in stats.items():  # train mode updated them from the same valid frames
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4, err_msg=key)


def test_padding_is_excluded_exactly(paddle):
    """A video's factored eval output is the same alone (no padding) and in a padded batch."""
    _, factored = twin_models(paddle, seed=2)
    factored.eval()
    batch = reference_batch(paddle, [120, 300], seed=3)
    alone = {name: batch[name][:1, :120] for name in REFERENCE.features}
    alone.update(mask=batch["mask"][:1, :120], num_frames=batch["num_frames"][:1])
    np.testing.assert_allclose(factored(batch).numpy()[0], factored(alone).numpy()[0], rtol=1e-5, atol=1e-5)


def test_flops_match_a_hand_count(paddle):
    """Per video at the reference sizes, rgb branch: 2.68 GFLOP expanded, 1.80 factored (forward)."""
    _, factored = twin_models(paddle)
    rgb = factored.branches["rgb"]
    t, d, e, g, k, f = 300, 1024, 2048, 8, 128, 256
    expand_fc, attention, assignment, vlad = 2 * t * d * e, 2 * t * e * g, 2 * t * e * g * k, 2 * t * e * k
    sums, vlad_bias = 2 * t * g * k, 2 * g * k * f
    old = rgb.flops(t, "expanded")
    assert old["forward"] == expand_fc + attention + assignment + vlad + sums == 2_684_313_600
    assert old["backward"] == expand_fc + 2 * (attention + assignment + vlad) + sums
    assert old["step_forward"] == old["step_backward"] == 0
    logits = 2 * t * d * (g * k + g)  # x @ [W_e W_c | W_e W_a]
    pooling = 2 * t * (k * g) * d  # [K*G, T] @ [T, D]
    expand_once = 2 * k * (g * d) * f  # [K, G*D] @ [G*D, F]
    new = rgb.flops(t)
    assert new["forward"] == logits + pooling + expand_once + sums + vlad_bias == 1_801_216_000
    assert new["backward"] == logits + pooling + sums + 2 * (expand_once + vlad_bias)
    assert new["step_forward"] == 2 * d * e * (g * k + g) + 2 * e * (g * k + g)  # the product matrices
    assert new["step_backward"] == 2 * new["step_forward"]
    # the model: branches + head, the per-step products shared by the batch
    head = (
        2 * (rgb.output_size + factored.branches["audio"].output_size) * 64 + 2 * (64 * 16 * 2) + 2 * 64 * 20
    )
    audio = factored.branches["audio"].flops(t)
    total = factored.flops(t, batch_size=32)
    step = new["step_forward"] + audio["step_forward"]
    assert total["forward"] == pytest.approx(new["forward"] + audio["forward"] + head + step / 32, rel=1e-12)
    assert total["train"] == pytest.approx(total["forward"] + total["backward"], rel=1e-12)
    assert factored.flops(t, formulation="expanded")["step_forward"] == 0


SMALL = DatasetSpec(num_classes=6, features={"rgb": 32, "audio": 16}, max_frames=12)
SMALL_OPTIONS = {"cluster_size": 8, "groups": 4, "hidden_size": 16, "gating_reduction": 4, "dropout": 0.0}


def small_batch(paddle, lengths: list[int], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    t = max(lengths)
    mask = (np.arange(t)[None, :] < np.array(lengths)[:, None]).astype(np.float32)
    batch = {
        name: paddle.to_tensor(
            (rng.uniform(-2, 2, (len(lengths), t, d)) * mask[..., None]).astype(np.float32)
        )
        for name, d in SMALL.features.items()
    }
    batch["mask"] = paddle.to_tensor(mask)
    batch["num_frames"] = paddle.to_tensor(np.array(lengths, np.int64))
    return batch


def fresh_eval(paddle, model, batch) -> np.ndarray:
    """The eval output of a new model (expanded form, nothing cached) holding ``model``'s current weights."""
    twin = build_model("nextvlad", spec=SMALL, formulation="expanded", **SMALL_OPTIONS)
    twin.set_state_dict(model.state_dict())
    twin.eval()
    with paddle.no_grad():
        return twin(batch).numpy()


def test_eval_products_are_cached_and_follow_the_weights(paddle, monkeypatch):
    """The eval-mode product matrices are computed once, and again whenever any weight they use changes."""
    from zoo_nextvlad.model import NeXtVLADLayer

    calls = []
    original = NeXtVLADLayer._products
    monkeypatch.setattr(NeXtVLADLayer, "_products", lambda self: calls.append(1) or original(self))
    paddle.seed(3)
    model = build_model("nextvlad", spec=SMALL, **SMALL_OPTIONS)
    batch = small_batch(paddle, [12, 5, 1], seed=4)

    def evaluate() -> np.ndarray:
        model.eval()
        with paddle.no_grad():
            return model(batch).numpy()

    first = evaluate()
    assert len(calls) == 2  # one per branch
    np.testing.assert_array_equal(evaluate(), first)
    assert len(calls) == 2  # unchanged weights: reused
    np.testing.assert_allclose(first, fresh_eval(paddle, model, batch), rtol=1e-5, atol=1e-6)

    # further training (Adam steps write the parameters in place) -> eval uses the new weights
    optimizer = paddle.optimizer.Adam(learning_rate=0.05, parameters=model.parameters())
    for _ in range(2):
        model.train()
        model(batch).sum().backward()
        optimizer.step()
        optimizer.clear_grad()
    trained = evaluate()
    assert np.abs(trained - first).max() > 1e-3
    np.testing.assert_allclose(trained, fresh_eval(paddle, model, batch), rtol=1e-5, atol=1e-6)

    # weights changed without a training forward: set_value on one BatchNorm statistic, then set_state_dict
    rgb = model.branches["rgb"]
    rgb.cluster_bn._mean.set_value(rgb.cluster_bn._mean.numpy() + 0.5)
    np.testing.assert_allclose(evaluate(), fresh_eval(paddle, model, batch), rtol=1e-5, atol=1e-6)
    state = {key: value.numpy() * 1.1 for key, value in model.state_dict().items()}
    model.set_state_dict(state)
    np.testing.assert_allclose(evaluate(), fresh_eval(paddle, model, batch), rtol=1e-5, atol=1e-6)


def test_export_holds_the_products_as_constants(paddle, tmp_path):
    """The exported program reads the product matrices; it does not recompute them on every call."""
    import json

    from zoo.engine.export.onnx import _operator_name, _ops
    from zoo.engine.export.tracing import _input_specs, _probability_layer, _trace

    paddle.seed(5)
    model = build_model("nextvlad", spec=SMALL, **SMALL_OPTIONS)
    model.eval()
    keys = list(model.state_dict())
    _trace(model, dict(SMALL.features), None, tmp_path / "frozen" / "inference")
    assert list(model.state_dict()) == keys  # the constants exist only while exporting
    plain = paddle.jit.to_static(
        _probability_layer(model, list(SMALL.features)),
        input_spec=_input_specs(SMALL.features, None),
        full_graph=True,
    )
    paddle.jit.save(plain, str(tmp_path / "plain" / "inference"))

    def matmuls(directory) -> int:
        program = json.loads((tmp_path / directory / "inference.json").read_text())
        return sum(_operator_name(op) == "matmul" for op in _ops(program))

    # per branch: W_e W_c, b_e W_c, W_e W_a, b_e W_a are no longer in the program
    assert matmuls("frozen") == matmuls("plain") - 4 * len(SMALL.features)
    loaded = paddle.jit.load(str(tmp_path / "frozen" / "inference"))
    batch = small_batch(paddle, [12, 7, 1], seed=6)
    got = loaded(batch["rgb"], batch["audio"], batch["mask"], batch["num_frames"]).numpy()
    with paddle.no_grad():
        expected = paddle.nn.functional.sigmoid(model(batch)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def _kernel():
    from zoo_nextvlad import ops

    require_kernel(
        ops.FUSED_ASSIGN,
        "zoo_nextvlad._assign was not built (no C compiler at install); the paddle ops are used",
    )
    return ops


def test_inference_kernel_matches_the_ops(paddle, monkeypatch):
    """Eval without gradients runs the C kernel (zoo_nextvlad/_assign.c); it gives what the ops give, and what
    the expanded form gives, at the reference sizes with garbage in the padding."""
    ops = _kernel()
    expanded, factored = twin_models(paddle, seed=4)
    expanded.eval(), factored.eval()
    batch = reference_batch(paddle, LENGTHS, seed=5)
    calls = []
    kernel = ops.FUSED_ASSIGN

    class Counting:
        weight, weight_grad = staticmethod(kernel.weight), staticmethod(kernel.weight_grad)

        @staticmethod
        def assign(*args):
            calls.append(args[4:6])
            return kernel.assign(*args)

    monkeypatch.setattr(ops, "FUSED_ASSIGN", Counting)
    with paddle.no_grad():
        fused = factored(batch).numpy()
        assert calls == [(8, 128), (8, 128)]  # both branches (rgb, audio) went through the kernel
        monkeypatch.setattr(ops, "FUSED_ASSIGN", None)
        plain = factored(batch).numpy()
        reference = expanded(batch).numpy()
    assert len(calls) == 2
    np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused, reference, rtol=1e-4, atol=1e-4)
    # with gradients wanted the kernel is not used (autograd cannot see through it)
    monkeypatch.setattr(ops, "FUSED_ASSIGN", Counting)
    factored(batch)
    assert len(calls) == 2


@pytest.mark.parametrize("g, k", [(4, 16), (8, 128), (3, 37)])
def test_inference_kernel_against_float64(paddle, g, k):
    """The kernel's vector lanes (16 clusters) and their remainder (37 = 2 * 16 + 5), at NeXtVLAD's size too."""
    ops = _kernel()
    rng = np.random.default_rng(6)
    b, t = 3, 7
    logits = rng.normal(0, 4, (b, t, g * k + g)).astype(np.float32)
    bias = rng.normal(0, 1, g * k + g).astype(np.float32)
    mask = (np.arange(t)[None] < np.array([7, 3, 1])[:, None]).astype(np.float32)
    for threads in (1, 2, 5):
        out = np.full((b, t, k * g), np.nan, np.float32)
        ops.FUSED_ASSIGN.assign(out, logits, mask, bias, g, k, threads)
        z = logits.astype(np.float64) + bias
        soft = np.exp(z[..., : g * k].reshape(b, t, g, k))
        soft /= soft.sum(-1, keepdims=True)
        weight = mask[..., None] / (1 + np.exp(-z[..., g * k :]))
        expected = (soft * weight[..., None]).transpose(0, 1, 3, 2).reshape(b, t, k * g)
        np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-9)
        assert not out[1, 3:].any() and not out[2, 1:].any()  # padded frames: zeros, whatever the logits
    with pytest.raises(ValueError, match="logits must be"):
        ops.FUSED_ASSIGN.assign(out, logits[..., :-1].copy(), mask, bias, g, k, 1)
    with pytest.raises(ValueError, match="out must be"):
        ops.FUSED_ASSIGN.assign(out.astype(np.float64), logits, mask, bias, g, k, 1)


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_training_kernels_give_the_ops_gradients(paddle, monkeypatch, chunk):
    """The factored training op (zoo_nextvlad.ops.pool_expand) with its C kernels (weighting and layout in
    forward, the weighting's and the sums' backward in one pass) gives the outputs and gradients of paddle's
    ops, over chunks that do and do not divide the batch."""
    ops = _kernel()
    rng = np.random.default_rng(7)
    b, t, g, k, d, f = 5, 6, 4, 8, 12, 6
    values = {
        "soft": rng.dirichlet(np.ones(k), (b, t, g)).astype(np.float32),
        "frame_weight": rng.uniform(0, 1, (b, t, g, 1)).astype(np.float32),
        "w": rng.normal(size=(g * d, f)).astype(np.float32),
    }
    x = paddle.to_tensor(rng.normal(size=(b, t, d)).astype(np.float32))
    grad_vlad = paddle.to_tensor(rng.normal(size=(b, k, f)).astype(np.float32))
    grad_sums = paddle.to_tensor(rng.normal(size=(b, 1, k * g)).astype(np.float32))
    results = {}
    for name, kernel in (("kernel", ops.FUSED_ASSIGN), ("ops", None)):
        monkeypatch.setattr(ops, "FUSED_ASSIGN", kernel)
        inputs = {key: paddle.to_tensor(v, stop_gradient=False) for key, v in values.items()}
        vlad, sums = ops.pool_expand(inputs["soft"], inputs["frame_weight"], x, inputs["w"], chunk=chunk)
        ((vlad * grad_vlad).sum() + (sums * grad_sums).sum()).backward()
        results[name] = [vlad.numpy(), sums.numpy()] + [inputs[key].grad.numpy() for key in values]
    for ours, theirs in zip(results["kernel"], results["ops"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_training_kernels_refuse_wrong_sizes(paddle):
    ops = _kernel()
    soft = np.zeros((2, 3, 4 * 5), np.float32)
    weight = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="out must be"):
        ops.FUSED_ASSIGN.weight(np.zeros((2, 3, 19), np.float32), soft, weight, 4, 5, 1)
    grads = [
        np.zeros((2, 3, 20), np.float32),
        np.zeros((2, 3, 4), np.float32),
        soft,
        np.zeros((2, 20), np.float32),
    ]
    with pytest.raises(ValueError, match="whole number of videos"):
        ops.FUSED_ASSIGN.weight_grad(*grads, soft, weight, 4, 4, 5, 1)
    with pytest.raises(ValueError, match="grad_sums must be"):
        ops.FUSED_ASSIGN.weight_grad(*grads[:3], np.zeros((3, 20), np.float32), soft, weight, 3, 4, 5, 1)


@pytest.mark.parametrize("padded", [False, True])
def test_batchnorm_offset_is_the_batchnorm_of_the_shifted_input(paddle, padded):
    """zoo.nn.MaskedBatchNorm(x, mask, offset) equals MaskedBatchNorm(x + offset, mask) in training (outputs,
    running statistics, gradients) and in eval, without the pass that adds the offset (the factored NeXtVLAD
    hands its assignment bias over this way)."""
    from zoo.nn import MaskedBatchNorm

    rng = np.random.default_rng(8)
    x = rng.normal(2, 3, (3, 5, 6)).astype(np.float32)
    offset = rng.normal(0, 4, 6).astype(np.float32)
    mask = np.ones((3, 5), np.float32)
    if padded:
        mask[1, 3:] = mask[2, 1:] = 0
    results = []
    for shifted in (True, False):
        paddle.seed(0)
        bn = MaskedBatchNorm(6)
        xs = paddle.to_tensor(x + offset if shifted else x, stop_gradient=False)
        off = paddle.to_tensor(offset)
        out = bn(xs, paddle.to_tensor(mask)) if shifted else bn(xs, paddle.to_tensor(mask), offset=off)
        (out * paddle.to_tensor(x)).sum().backward()
        bn.eval()
        held = bn(paddle.to_tensor(x + offset)) if shifted else bn(paddle.to_tensor(x), offset=off)
        results.append([out.numpy(), xs.grad.numpy(), bn._mean.numpy(), bn._variance.numpy(), held.numpy()])
    for ours, theirs in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
