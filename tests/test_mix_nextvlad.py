"""The mix-nextvlad plugin (plugins/zoo_nextvlad/mix.py): shapes, padding, the distillation loss, gradients,
parameter count, the bundled recipe and the export of the mixture's probabilities.

The loss is checked against a numpy re-implementation of the author's formula on fixed logits; the export
runs in a fresh interpreter (paddle can segfault tracing late in a long pytest run).
"""

from __future__ import annotations

import os
import subprocess
import sys

import nextvlad_helpers
import numpy as np
import pytest
from nextvlad_helpers import SMALL, SPEC, make_batch

import zoo
from zoo import DatasetSpec, build_model
from zoo.config import bundled_config, load_config
from zoo.contracts import ModelWithLoss
from zoo.errors import ConfigError

YT8M_FEATURES = {"rgb": 1024, "audio": 128}


def small_model(paddle, seed: int = 0, **options):
    return nextvlad_helpers.small_model(paddle, "mix-nextvlad", seed, **options)


def labels(paddle, b: int, seed: int = 0):
    return paddle.to_tensor(
        (np.random.default_rng(seed).random((b, SPEC.num_classes)) < 0.3).astype("float32")
    )


def warm_up(paddle, model) -> None:
    """Move the BatchNorm running statistics away from their initial 0 / 1."""
    model.train()
    with paddle.no_grad():
        for seed in range(3):
            model(make_batch(paddle, [9, 5, 12], seed=seed))


def test_outputs_have_the_documented_shapes_in_both_modes(paddle):
    model = small_model(paddle, mix_number=4)
    assert isinstance(model, ModelWithLoss)
    batch = make_batch(paddle, [7, 2, 4])
    for mode in ("train", "eval"):
        getattr(model, mode)()
        out = model(batch)
        assert list(out["logits"].shape) == [3, SPEC.num_classes]
        assert len(out["branch_logits"]) == 4
        assert all(list(b.shape) == [3, SPEC.num_classes] for b in out["branch_logits"])
        weights = out["mix_weights"].numpy()
        assert weights.shape == (3, 4) and np.allclose(weights.sum(axis=1), 1.0, atol=1e-6)
        assert np.isfinite(out["logits"].numpy()).all()


def test_mixture_is_the_gate_weighted_sum_of_branch_logits(paddle):
    """The author mixes logits (then a sigmoid), not probabilities."""
    model = small_model(paddle)
    warm_up(paddle, model)
    model.eval()
    out = model(make_batch(paddle, [7, 3]))
    branches = np.stack([b.numpy() for b in out["branch_logits"]], axis=1)
    expected = (out["mix_weights"].numpy()[:, :, None] * branches).sum(axis=1)
    np.testing.assert_allclose(out["logits"].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_audio_branch_has_half_the_clusters_and_groups(paddle):
    model = small_model(paddle, cluster_size=8, groups=4)
    for branch in model.branches:
        rgb, audio = branch.vlads["rgb"], branch.vlads["audio"]
        assert (rgb.cluster_size, rgb.groups) == (8, 4)
        assert (audio.cluster_size, audio.groups) == (4, 2)


@pytest.mark.parametrize("gate_mean", ["valid", "padded"])
def test_eval_output_of_a_video_does_not_depend_on_its_padding(paddle, gate_mean):
    model = small_model(paddle, gate_mean=gate_mean)
    warm_up(paddle, model)
    model.eval()
    alone = model(make_batch(paddle, [6], garbage=False))
    padded = model(make_batch(paddle, [6, 11, 2], pad_to=17))
    for key in ("logits", "mix_weights"):
        np.testing.assert_allclose(padded[key].numpy()[:1], alone[key].numpy(), rtol=1e-4, atol=1e-5)


def test_gate_mean_valid_averages_real_frames_padded_divides_by_max_frames(paddle):
    batch = make_batch(paddle, [5, 2], pad_to=8)
    frames = np.concatenate([batch["rgb"].numpy(), batch["audio"].numpy()], axis=-1)
    valid_sum = (frames * batch["mask"].numpy()[..., None]).sum(axis=1)
    features = [batch["rgb"], batch["audio"]]
    valid = small_model(paddle)._mean_frame(features, batch["mask"]).numpy()
    padded = small_model(paddle, gate_mean="padded")._mean_frame(features, batch["mask"]).numpy()
    np.testing.assert_allclose(valid, valid_sum / np.array([[5.0], [2.0]]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(padded, valid_sum / SPEC.max_frames, rtol=1e-5, atol=1e-6)


def numpy_loss(logits, branches, y, temperature, weight, epsilon=0.0):
    """The author's loss in numpy: CE(mixture) + sum CE(branch) + lambda * mean_b sum_m KL(mix_T || branch_T).

    ``epsilon`` > 0 is the author's literal form (probabilities with 1e-8 inside every log).
    """

    def sigmoid_ce(z):
        if epsilon:
            p = 1 / (1 + np.exp(-z))
            ce = -(y * np.log(p + epsilon) + (1 - y) * np.log(1 - p + epsilon))
        else:
            ce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        return ce.sum(axis=1).mean()

    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    p = softmax(logits / temperature)
    kl = sum(
        (p * (np.log(p + epsilon) - np.log(softmax(b / temperature) + epsilon))).sum(axis=-1)
        for b in branches
    )
    return sigmoid_ce(logits) + sum(sigmoid_ce(b) for b in branches) + weight * kl.mean()


@pytest.mark.parametrize(("temperature", "weight"), [(3.0, 9.0), (1.0, 0.5), (2.0, 0.0)])
def test_loss_is_the_authors_formula(paddle, temperature, weight):
    model = small_model(paddle, cl_temperature=temperature, cl_lambda=weight)
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, (5, SPEC.num_classes)).astype(np.float32)
    branches = [rng.normal(0, 3, (5, SPEC.num_classes)).astype(np.float32) for _ in range(3)]
    y = (rng.random((5, SPEC.num_classes)) < 0.3).astype(np.float32)
    outputs = {"logits": paddle.to_tensor(logits), "branch_logits": [paddle.to_tensor(b) for b in branches]}
    got = float(model.loss(outputs, {"labels": paddle.to_tensor(y)}))
    expected = numpy_loss(
        logits.astype(np.float64), [b.astype(np.float64) for b in branches], y, temperature, weight
    )
    assert got == pytest.approx(expected, rel=1e-5)
    # the author's epsilon-in-the-logs form differs only where a probability is below ~1e-8
    literal = numpy_loss(
        logits.astype(np.float64), [b.astype(np.float64) for b in branches], y, temperature, weight, 1e-8
    )
    assert got == pytest.approx(literal, rel=1e-4)
    if weight:  # the distillation term is there: the same logits with a smaller lambda give a smaller loss
        smaller = numpy_loss(
            logits.astype(np.float64), [b.astype(np.float64) for b in branches], y, temperature, 0
        )
        assert expected > smaller


def test_distillation_term_is_zero_when_branches_agree(paddle):
    model = small_model(paddle)
    z = np.random.default_rng(1).normal(0, 2, (4, SPEC.num_classes)).astype(np.float32)
    y = paddle.to_tensor(np.zeros_like(z))
    same = {"logits": paddle.to_tensor(z), "branch_logits": [paddle.to_tensor(z) for _ in range(3)]}
    no_kl = build_model("mix-nextvlad", spec=SPEC, **SMALL, cl_lambda=0.0)
    assert float(model.loss(same, {"labels": y})) == pytest.approx(
        float(no_kl.loss(same, {"labels": y})), rel=1e-6
    )


def test_mixture_is_not_detached_in_the_distillation_term(paddle):
    """As in the author's code, the KL term also moves the mixture (the gradient reaches its logits)."""
    model = small_model(paddle)
    z = np.random.default_rng(2).normal(0, 2, (3, SPEC.num_classes)).astype(np.float32)
    mix = paddle.to_tensor(z, stop_gradient=False)
    branches = [
        paddle.to_tensor(z + 1.0 * (i + 1) * np.eye(SPEC.num_classes)[:3].astype(np.float32))
        for i in range(3)
    ]
    labels_off = build_model("mix-nextvlad", spec=SPEC, **SMALL, cl_lambda=0.0)
    y = paddle.to_tensor(np.zeros_like(z))
    model.loss({"logits": mix, "branch_logits": branches}, {"labels": y}).backward()
    with_kl = mix.grad.numpy().copy()
    mix.clear_gradient()
    labels_off.loss({"logits": mix, "branch_logits": branches}, {"labels": y}).backward()
    assert np.abs(with_kl - mix.grad.numpy()).max() > 1e-3


def test_gradient_reaches_every_branch_and_the_gate(paddle):
    model = small_model(paddle, mix_number=3)
    model.train()
    batch = make_batch(paddle, [7, 3, 5])
    loss = model.loss(model(batch), {**batch, "labels": labels(paddle, 3)})
    loss.backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if not p.stop_gradient and (p.grad is None or not np.abs(p.grad.numpy()).sum() > 0)
    ]
    assert not missing, missing
    assert {n.split(".")[1] for n, _ in model.named_parameters() if n.startswith("branches.")} == {
        "0",
        "1",
        "2",
    }


def nextvlad_params(d: int, k: int, g: int, expansion: int) -> tuple[int, int]:
    """(trainable parameters, output size) of one NeXtVLAD aggregation."""
    e, f = expansion * d, expansion * d // g
    params = (d * e + e) + (e * g + g) + e * g * k + 2 * g * k + k * f + 2 * k * f
    return params, k * f


def mix_params(
    spec: DatasetSpec, mix: int, k: int, g: int, expansion: int, hidden: int, reduction: int
) -> int:
    """MixNeXtVLAD's trainable parameters by hand: branches (VLADs, hidden FC + BN, SE gating, logistic FC)
    plus the gate (BatchNorm and FC over the concatenated frame)."""
    vlad_params = vlad_size = 0
    for i, d in enumerate(spec.features.values()):
        p, out = nextvlad_params(d, k if i == 0 else k // 2, g if i == 0 else g // 2, expansion)
        vlad_params += p
        vlad_size += out
    r = hidden // reduction
    branch = vlad_params + vlad_size * hidden + 2 * hidden + (hidden * r + 2 * r + r * hidden)
    branch += hidden * spec.num_classes + spec.num_classes
    frame = sum(spec.features.values())
    return mix * branch + 2 * frame + frame * mix + mix


def test_parameter_count_follows_the_formula(paddle):
    from zoo.engine.build import count_parameters

    for options in (SMALL, {**SMALL, "mix_number": 2, "cluster_size": 10, "groups": 2, "expansion": 1}):
        model = small_model(paddle, **options)
        expected = mix_params(
            SPEC,
            model.config.mix_number,
            options["cluster_size"],
            options["groups"],
            options["expansion"],
            options["hidden_size"],
            options["gating_reduction"],
        )
        assert count_parameters(model) == expected
    # the author's final model (3 branches, K=112, G=8, hidden 2048, gating 16) on YouTube-8M: by the formula
    yt8m = DatasetSpec(num_classes=3862, features={"rgb": 1024, "audio": 128})
    assert mix_params(yt8m, 3, 112, 8, 2, 2048, 16) == 235_935_273  # built once: the same count


def test_bad_options_are_config_errors(paddle):
    with pytest.raises(ConfigError, match="gate_mean"):
        build_model("mix-nextvlad", spec=SPEC, **SMALL, gate_mean="all")
    with pytest.raises(ConfigError, match="mix_number"):
        build_model("mix-nextvlad", spec=SPEC, **SMALL, mix_number=0)
    with pytest.raises(ConfigError, match="cl_temperature"):
        load_config(None, ["model.cl_temperature=0"], model="mix-nextvlad")
    # 5 audio dims x expansion 1 are not divisible by groups // 2 = 2 (rgb's 16 are by groups = 4)
    odd_audio = DatasetSpec(num_classes=9, features={"rgb": 16, "audio": 5})
    with pytest.raises(ConfigError, match="groups // 2"):
        build_model("mix-nextvlad", spec=odd_audio, **{**SMALL, "groups": 4, "expansion": 1})


def test_bundled_config_is_the_authors_recipe_with_a_sample_scale(paddle):
    from zoo_nextvlad.model import EIGENVALUES_URL

    from zoo.engine.build import count_parameters

    config = load_config(bundled_config("mix-nextvlad"))
    defaults = zoo.plugin_class("model", "mix-nextvlad").Config()
    for key, value in config.model.items():
        if key != "eigenvalues":
            assert getattr(defaults, key) == value, key
    assert config.model["eigenvalues"] == EIGENVALUES_URL  # the author's reverse whitening, pinned
    t = config.train
    assert (t.batch_size, t.num_gpus, t.learning_rate, t.epoch) == (160, 2, 2e-4, 15)
    assert (t.lr_boundary_examples, t.learning_rate_decay, t.l2_penalty) == (2_500_000, 0.8, 1e-5)
    # his train.py: each gradient tensor clipped to norm 1; L2 only on the branches' logistic layers
    assert (t.gradient_clip_norm, t.gradient_clip_mode, t.l2_scope) == (1.0, "per_tensor", "classifier")
    assert (config.model["cl_temperature"], config.model["cl_lambda"], config.model["mix_number"]) == (
        3,
        9,
        3,
    )
    sample = config.with_overrides({"dataset": {"num_classes": 200}, **config.sample}, "sample")
    assert sample.model["eigenvalues"] is None  # synthetic sample data: nothing to reverse-whiten
    model = build_model(
        "mix-nextvlad",
        spec=DatasetSpec(200, {"rgb": 1024, "audio": 128}),
        **sample.model,
    )
    assert count_parameters(model) < 10_000_000
    model.eval()
    rng = np.random.default_rng(0)
    mask = np.ones((2, 10), np.float32)
    mask[1, 4:] = 0
    out = model(
        {
            "rgb": paddle.to_tensor(rng.uniform(-2, 2, (2, 10, 1024)).astype(np.float32)),
            "audio": paddle.to_tensor(rng.uniform(-2, 2, (2, 10, 128)).astype(np.float32)),
            "mask": paddle.to_tensor(mask),
            "num_frames": paddle.to_tensor(np.array([10, 4], np.int64)),
        }
    )
    assert list(out["logits"].shape) == [2, 200] and np.isfinite(out["logits"].numpy()).all()


@pytest.mark.timeout(1200)
@pytest.mark.integration
def test_export_in_a_fresh_process():
    """Runs the export test below in its own interpreter (as `zoo export` runs)."""
    test = f"{__file__}::test_export_returns_the_mixtures_probabilities_only"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "ZOO_TEST_INNER": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


@pytest.mark.integration
@pytest.mark.skipif("ZOO_TEST_INNER" not in os.environ, reason="run by test_export_in_a_fresh_process")
def test_export_returns_the_mixtures_probabilities_only(paddle, tmp_path):
    from zoo.engine.build import build_model as build_from_config
    from zoo.engine.export.predictor import load_exported
    from zoo.engine.export.tracing import export_model
    from zoo.engine.runs.checkpoint import save_weights

    raw = {
        "dataset": {
            "preset": "yt8m",
            "num_classes": SPEC.num_classes,
            "features": SPEC.features,
            "max_frames": 12,
        },
        "model": {"name": "mix-nextvlad", **SMALL},
    }
    cfg = load_config(raw=raw, source="test")
    paddle.seed(0)
    model = build_from_config(cfg)
    warm_up(paddle, model)
    save_weights(tmp_path / "model.safetensors", model)
    exported = load_exported(export_model(cfg, str(tmp_path / "model.safetensors"), tmp_path / "export"))
    mask = np.zeros((3, 9), np.float32)
    for i, n in enumerate([9, 4, 1]):
        mask[i, :n] = 1
    rng = np.random.default_rng(5)
    batch = {
        k: rng.uniform(-2, 2, (3, 9, d)).astype(np.float32) * mask[..., None]
        for k, d in SPEC.features.items()
    }
    batch.update(mask=mask, num_frames=np.array([9, 4, 1], np.int64))
    got = exported.predict(batch)
    model.eval()
    with paddle.no_grad():
        logits = model({k: paddle.to_tensor(v) for k, v in batch.items()})["logits"].numpy()
    assert got.shape == (3, SPEC.num_classes)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits)), atol=1e-5)


def test_l2_covers_each_branchs_logistic_weights_and_biases_only(paddle):
    """The author's slim regularizers sit on each branch's LogisticModel (weights and biases): with
    ``train.l2_scope: classifier`` exactly those parameters are penalised."""
    from zoo.engine.settings import TrainConfig
    from zoo.engine.train.optimizer import build_optimizer
    from zoo.nn import classifier_weights

    model = nextvlad_helpers.small_model(paddle, "mix-nextvlad", mix_number=2)
    penalised = {id(p) for p in classifier_weights(model)}
    expected = {id(p) for branch in model.branches for p in branch.head.parameters()}
    assert penalised == expected and len(expected) == 4  # 2 branches x (weight, bias)
    train = TrainConfig(l2_scope="classifier", gradient_clip_mode="per_tensor", fused_update=False)
    build_optimizer(model, train)  # the default, public path: a regularizer on exactly those parameters
    assert {id(p) for p in model.parameters() if p.regularizer is not None} == expected
    optimizer = build_optimizer(model, train, in_place=True)  # the opt-in path: the L2 term in the clip
    assert set(optimizer._grad_clip.decay) == expected


def test_pinned_eigenvalues_are_fetched_once_and_checked(paddle, shared_dir, tmp_path, monkeypatch):
    """``model.eigenvalues`` as an https URL with its SHA-256: downloaded once (a real HTTP server here), the
    same scale as the local file; a wrong hash keeps nothing; a URL without a hash is refused."""
    import functools
    import hashlib
    import http.server
    import shutil
    import threading

    from zoo_nextvlad.model import EIGENVALUES_URL, fetch_pinned, load_eigenvalues

    from zoo.errors import DataError

    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    source = shared_dir / "data" / "yt8m_pca_eigenvals.npy"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert EIGENVALUES_URL.endswith(f"#sha256={digest}")  # the pin is the real file's hash
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(source, www / "eigenvals.npy")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/eigenvals.npy"
        got = load_eigenvalues(f"{url}#sha256={digest}", 1024)
        np.testing.assert_array_equal(got, load_eigenvalues(source, 1024))
        (www / "eigenvals.npy").unlink()  # cached: no second download
        np.testing.assert_array_equal(load_eigenvalues(f"{url}#sha256={digest}", 1024), got)
        shutil.copy(source, www / "other.npy")
        other = url.replace("eigenvals.npy", "other.npy")
        with pytest.raises(DataError, match="does not match the pinned"):
            fetch_pinned(f"{other}#sha256={'0' * 64}")
        assert not list((tmp_path / "cache").rglob("other.npy*"))
        with pytest.raises(ConfigError, match="#sha256="):
            load_eigenvalues(other, 1024)
    finally:
        httpd.shutdown()
        httpd.server_close()
