"""The in-place clip and L2 term (zoo.engine.train.update): bitwise paddle's update, without a copy of the gradients."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import paddle
import pytest
from kernel_helpers import REQUIRE, kernel_missing, require_kernel
from test_engine import tiny_config, weights_of

from zoo.engine.settings import TrainConfig
from zoo.engine.train import update as gradclip
from zoo.engine.train.optimizer import build_optimizer
from zoo.nn import LogisticHead


class Net(paddle.nn.Layer):
    """A body, a classifier head, a frozen parameter and a layer the loss never reaches (no gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = paddle.nn.Linear(6, 40)
        self.head = LogisticHead(40, 5)
        self.frozen = paddle.nn.Linear(6, 40)
        self.frozen.weight.stop_gradient = True
        self.frozen.bias.stop_gradient = True
        self.unused = paddle.nn.Linear(3, 3)

    def forward(self, x):
        return self.head(paddle.tanh(self.body(x) + 0.1 * self.frozen(x)))


KINDS = ("paddle", "in_place", "fused")  # paddle's grad_clip and weight_decay; InPlaceClipDecay; FusedAdam


def optimizer(model, cfg: TrainConfig, kind: str):
    return build_optimizer(
        model, dataclasses.replace(cfg, fused_update=kind == "fused"), in_place=kind != "paddle"
    )


def train(kind: str, mode: str, scope: str, clip: float, l2: float, steps: int = 4):
    """Parameters and Adam state after ``steps`` steps on losses of very different sizes per step."""
    paddle.seed(0)
    model = Net()
    cfg = dataclasses.replace(
        TrainConfig(),
        learning_rate=0.05,
        gradient_clip_norm=clip,
        gradient_clip_mode=mode,
        l2_penalty=l2,
        l2_scope=scope,
    )
    opt = optimizer(model, cfg, kind)
    rng = np.random.default_rng(5)
    for step in range(steps):
        x = paddle.to_tensor(rng.normal(size=(7, 6)).astype("float32"))
        target = paddle.to_tensor(rng.normal(size=(7, 5)).astype("float32"))
        scale = (0.01, 30.0, 1.0, 300.0)[step % 4]
        loss = (scale * (model(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
    params = {n: p.numpy().copy() for n, p in model.named_parameters()}
    saved = opt.state_dict()
    state = {  # Adam's moments and powers by structured parameter name (paddle's own names are global counters)
        (n, key[len(p.name) :]): value.numpy().copy()
        for n, p in model.named_parameters()
        for key, value in saved.items()
        if key.startswith(p.name + "_") and hasattr(value, "numpy")
    }
    return params, state


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)  # compares -0.0 and NaN payloads too


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


# paddle's CPU adam kernel is its AVX-512 code where the CPU has AVX-512 (the fused multiply-adds FusedAdam
# repeats), elsewhere its portable C++ (whose roundings the compiler of paddle's build decides)
PADDLE_ADAM_IS_AVX512 = "avx512f" in _cpu_flags()


def assert_same_update(
    got: np.ndarray, want: np.ndarray, kind: str, name: str, atol: float | None = None
) -> None:
    """``got`` (an update of ``kind``) is paddle's update ``want``: bit for bit, except for the fused kernel
    against paddle's portable adam kernel (no AVX-512), where each multiply-add may round once more.

    That tolerance is absolute (:data:`PORTABLE_ATOL`): a moment or parameter near zero is the difference of
    larger terms, so one extra rounding of a term is large next to the element itself (seen on an AMD EPYC
    without AVX-512: 2.8e-7 off at 5.8e-4, 6.4e-7 the largest in these tests), while a step of these runs
    moves a parameter by about the learning rate (0.05 here, 0.003 in the trainer's run): a wrong update
    (no clipping, no L2 term) is thousands of times the tolerance (``test_the_settings_change_the_update``).
    ``atol`` replaces it for whole training runs, where a rounding changes the next steps' gradients."""
    if kind != "fused" or PADDLE_ADAM_IS_AVX512:
        np.testing.assert_array_equal(bits(got), bits(want), err_msg=name)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol or PORTABLE_ATOL, err_msg=name)


PORTABLE_ATOL = 2e-6
RUN_ATOL = 1e-4
"""A thirtieth of one step at the trainer run's learning rate (0.003); seen: 2.0e-5 (AMD EPYC, per-tensor clipping)."""


NO_KERNEL = "the fused update kernel (zoo/engine/train/_adam.c) was not built in this install"


def count_kernel_calls(monkeypatch) -> list:
    """The fused kernel's calls from now on (one per parameter and step), recorded as they run."""
    calls: list = []
    kernel = gradclip.FUSED_ADAM
    if kernel is not None:
        monkeypatch.setattr(
            gradclip, "FUSED_ADAM", SimpleNamespace(adam=lambda *a: (calls.append(a), kernel.adam(*a)))
        )
    return calls


@pytest.mark.parametrize("kind", ["in_place", "fused"])
@pytest.mark.parametrize("mode", ["global", "per_tensor"])
@pytest.mark.parametrize("scope", ["all", "classifier"])
@pytest.mark.parametrize("clip", [0.0, 1e-3, 0.5, 1e6])  # none, always active, mixed, never active
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_the_update_is_paddles(monkeypatch, kind, mode, scope, clip, l2):
    if kind == "fused":
        require_kernel(gradclip.FUSED_ADAM, NO_KERNEL)
    monkeypatch.setattr(gradclip, "CHUNK_ELEMENTS", 50)  # the L2 term in blocks of one row of 40
    want_params, want_state = train("paddle", mode, scope, clip, l2)
    calls = count_kernel_calls(monkeypatch)
    got_params, got_state = train(kind, mode, scope, clip, l2)
    assert len(calls) == (4 * 4 if kind == "fused" else 0)  # 4 steps of the 4 parameters with a gradient
    assert want_params.keys() == got_params.keys() and want_state.keys() == got_state.keys()
    for name in want_params:
        assert_same_update(got_params[name], want_params[name], kind, name)
    for name in want_state:
        assert_same_update(got_state[name], want_state[name], kind, str(name))
    start, _ = train("paddle", mode, scope, clip, l2, steps=0)
    for name in ("frozen.weight", "unused.weight"):  # no gradient: untouched, L2 or not
        np.testing.assert_array_equal(got_params[name], start[name])


def test_the_settings_change_the_update():
    """The comparison above can fail: clipping and the L2 term each change the parameters."""
    base, _ = train("fused", "global", "all", 0.0, 0.0)
    for args in (("global", "all", 1e-3, 0.0), ("per_tensor", "all", 0.5, 0.0), ("global", "all", 0.0, 0.05)):
        other, _ = train("fused", *args)
        assert not np.array_equal(other["body.weight"], base["body.weight"]), args
    a, _ = train("fused", "global", "all", 0.0, 0.05, steps=1)
    c, _ = train("fused", "global", "classifier", 0.0, 0.05, steps=1)
    assert not np.array_equal(a["body.weight"], c["body.weight"])
    np.testing.assert_array_equal(
        a["head.fc.weight"], c["head.fc.weight"]
    )  # penalised in both scopes; the same after one step


def test_per_tensor_clip_near_the_limit_uses_paddles_kernel(monkeypatch):
    """A norm within the margin of the limit takes paddle's kernel, and the result is its result."""
    g = paddle.to_tensor(np.random.default_rng(0).normal(size=(300, 7)).astype("float32"))
    norm = float(np.linalg.norm(g.numpy().astype(np.float64)))
    for limit in (norm, norm * (1 + 1e-7), norm * (1 - 1e-7), norm / 2, norm * 2):
        want = paddle._C_ops.clip_by_norm(g, limit).numpy()
        got = g.clone()
        gradclip.InPlaceClipDecay(limit, "per_tensor")._clip_tensor(got)
        np.testing.assert_array_equal(bits(got.numpy()), bits(want))


@pytest.mark.parametrize("mode", ["global", "per_tensor"])
def test_the_step_holds_no_second_copy_of_the_gradients(mode):
    """Clipping (active) and the L2 term over 4M gradient values: the step's own allocator peak stays far
    below their 16 MB (paddle's own clip and L2 term hold a copy of every gradient)."""
    stat = paddle.base.core
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Linear(1000, 2000), paddle.nn.Linear(2000, 1000))
    cfg = dataclasses.replace(
        TrainConfig(), gradient_clip_norm=1e-4, gradient_clip_mode=mode, l2_penalty=1e-3
    )
    peaks = {}
    for kind in KINDS:
        opt = optimizer(model, cfg, kind)
        for _ in range(2):  # the second step: Adam's moments exist already
            model(paddle.ones([4, 1000])).sum().backward()
            stat.host_memory_stat_reset_peak_value("Allocated", 0)
            before = stat.host_memory_stat_current_value("Allocated", 0)
            opt.step()
            peaks[kind] = (stat.host_memory_stat_peak_value("Allocated", 0) - before) / 2**20
            opt.clear_grad()
    assert peaks["paddle"] > 14  # the measurement sees paddle's copy
    # the L2 term one block (4 MB) at a time; per_tensor with clipping active: paddle's kernel result, one
    # tensor (8 MB) at a time
    chunk = gradclip.CHUNK_ELEMENTS * 4 / 2**20
    assert peaks["in_place"] < (8.0 if mode == "per_tensor" else chunk) + 0.5
    if gradclip.FUSED_ADAM is not None:
        assert peaks["fused"] < 0.5  # the gradients are read where they are: nothing is allocated


class TwoBranches(paddle.nn.Layer):
    """Branch ``a`` or ``b`` per step: each parameter misses its gradient in every other step."""

    def __init__(self) -> None:
        super().__init__()
        self.a = paddle.nn.Linear(4, 3)
        self.b = paddle.nn.Linear(4, 3)

    def forward(self, x, step):
        return (self.a if step % 2 else self.b)(x) if step < 5 else self.a(x) + self.b(x)


def branch_steps(free: bool, fill: bool):
    """Parameters after 7 steps; gradients zeroed by paddle (free False) or freed (filled in if ``fill``)."""
    from zoo.engine.train.trainer import Trainer

    paddle.seed(0)
    model = TwoBranches()
    cfg = dataclasses.replace(TrainConfig(), learning_rate=0.05, gradient_clip_norm=0.5, l2_penalty=0.05)
    opt = build_optimizer(model, cfg)
    stub = SimpleNamespace(model=model, _had_gradient=set())
    rng = np.random.default_rng(1)
    for step in range(7):
        (model(paddle.to_tensor(rng.normal(size=(5, 4)).astype("float32")), step) ** 2).mean().backward()
        if fill:
            Trainer._zero_unreached_gradients(stub)
        opt.step()
        opt.clear_grad(set_to_zero=not free)
    return {n: p.numpy().copy() for n, p in model.named_parameters()}


def test_freed_gradients_give_the_update_of_zeroed_ones():
    """The trainer frees gradients between steps (no zeroed tensor for backward to add into) and gives a
    zero gradient to parameters that had one before, as paddle's zeroed gradients did."""
    want = branch_steps(free=False, fill=False)
    got = branch_steps(free=True, fill=True)
    for name in want:
        np.testing.assert_array_equal(bits(got[name]), bits(want[name]), err_msg=name)
    skipped = branch_steps(free=True, fill=False)  # without the zero gradients the update differs
    assert any(not np.array_equal(skipped[n], want[n]) for n in want)


@pytest.mark.integration
@pytest.mark.parametrize(
    "mode, fused", [("global", False), ("per_tensor", False), ("global", True), ("per_tensor", True)]
)
def test_the_trainer_trains_bitwise_as_with_paddles_clip_l2_and_zeroed_gradients(
    tiny_data,
    tmp_path,
    monkeypatch,
    mode,
    fused,
):
    """A whole run (NeXtVLAD, 16 steps, clipping active, L2 on every parameter) against the engine before:
    paddle's grad_clip and weight_decay and gradients zeroed between steps; the default (public paddle API)
    and the opt-in fused update."""
    from zoo.engine.train import trainer as trainer_module
    from zoo.engine.train.trainer import Trainer

    extra = (f"train.gradient_clip_mode={mode}", "train.gradient_clip_norm=0.05", "train.l2_penalty=0.01")
    extra += (f"train.fused_update={str(fused).lower()}",)
    Trainer(tiny_config(tiny_data, tmp_path / "new", *extra), progress=False).fit()

    def old_optimizer(model, train_cfg, log=print):
        opt = build_optimizer(model, train_cfg, in_place=False)
        zeroing = opt.clear_grad
        opt.clear_grad = lambda set_to_zero=True: zeroing(set_to_zero=True)
        return opt

    monkeypatch.setattr(trainer_module, "build_optimizer", old_optimizer)
    monkeypatch.setattr(Trainer, "_zero_unreached_gradients", lambda self: None)
    Trainer(tiny_config(tiny_data, tmp_path / "old", *extra), progress=False).fit()
    new, old = weights_of(tmp_path / "new"), weights_of(tmp_path / "old")
    assert new.keys() == old.keys()
    kind = "paddle" if not fused else "fused" if gradclip.FUSED_ADAM is not None else "in_place"
    for name in new:  # without AVX-512: 16 steps of a whole model carry the roundings into the gradients
        assert_same_update(new[name], old[name], kind, name, atol=RUN_ATOL)


def test_the_fused_update_steps_with_paddles_kernels_where_its_own_cannot(monkeypatch):
    """No kernel built, or a parameter with a regularizer of its own (paddle adds its term to the clipped
    gradient): FusedAdam clips, adds the L2 term and steps through paddle, bit for bit."""
    want, _ = train("paddle", "global", "all", 0.5, 0.05)
    with monkeypatch.context() as patch:
        patch.setattr(gradclip, "FUSED_ADAM", None)
        got, _ = train("fused", "global", "all", 0.5, 0.05)
    for name in want:
        np.testing.assert_array_equal(bits(got[name]), bits(want[name]), err_msg=name)

    own = paddle.regularizer.L2Decay(0.3)
    monkeypatch.setattr(Net, "__init__", _with_own_regularizer(Net.__init__, own))
    want, _ = train("paddle", "global", "all", 1e-3, 0.05)
    calls = count_kernel_calls(monkeypatch)
    got, _ = train("fused", "global", "all", 1e-3, 0.05)
    assert calls == []
    for name in want:
        np.testing.assert_array_equal(bits(got[name]), bits(want[name]), err_msg=name)


def _with_own_regularizer(init, regularizer):
    def patched(self) -> None:
        init(self)
        self.body.weight.regularizer = regularizer

    return patched


def test_the_fused_update_continues_paddles_state_and_threads_change_nothing(monkeypatch):
    """The fused kernel keeps Adam's state in paddle's own accumulators (moments, beta powers: what
    ``state_dict`` and checkpoints hold): steps alternating between it and paddle's kernels on one optimizer
    give paddle's update; a tensor split over threads gets the values of one thread."""
    require_kernel(gradclip.FUSED_ADAM, NO_KERNEL)
    cfg = dataclasses.replace(TrainConfig(), learning_rate=0.01, gradient_clip_norm=0.5, l2_penalty=0.01)
    rng = np.random.default_rng(3)
    batches = [paddle.to_tensor(rng.normal(size=(6, 300)).astype("float32")) for _ in range(4)]

    def run(kind, fused_steps, threads):
        monkeypatch.setattr(gradclip, "cpu_threads", lambda: threads)
        paddle.seed(0)
        model = paddle.nn.Linear(300, 700)  # 210,000 weights: split over threads (65,536 at least per thread)
        opt = optimizer(model, cfg, kind)
        for step, x in enumerate(batches):
            if kind == "fused":
                opt._grad_clip.defer = step in fused_steps  # not deferred: paddle's clip, L2 term and adam
            (model(x) ** 2).mean().backward()
            opt.step()
            opt.clear_grad()
        return model.weight.numpy().copy(), model.bias.numpy().copy()

    want = run("paddle", (), 1)
    for fused_steps, threads in (((1, 2), 1), ((0, 3), 1), ((0, 1, 2, 3), 3)):
        for got, expected in zip(run("fused", fused_steps, threads), want):
            assert_same_update(got, expected, "fused", f"fused at steps {fused_steps}, {threads} threads")
    np.testing.assert_array_equal(run("fused", (0, 1, 2, 3), 3)[0], run("fused", (0, 1, 2, 3), 1)[0])


def test_the_fused_kernel_checks_its_buffers():
    require_kernel(gradclip.FUSED_ADAM, NO_KERNEL)
    ok = np.zeros(10, np.float32)
    one = np.ones(1, np.float32)
    args = (0.1, 0.9, 0.999, 1e-8, 1.0, 0.0, 1)
    with pytest.raises(ValueError, match="moment2 must be 10 float32"):
        gradclip.FUSED_ADAM.adam(ok, ok.copy(), ok.copy(), np.zeros(9, np.float32), one, one.copy(), *args)
    with pytest.raises(ValueError, match="grad must be 10 float32"):
        gradclip.FUSED_ADAM.adam(ok, np.zeros(10), ok.copy(), ok.copy(), one, one.copy(), *args)
    with pytest.raises(ValueError, match="beta1_pow must be 1 float32"):
        gradclip.FUSED_ADAM.adam(ok, ok.copy(), ok.copy(), ok.copy(), ok.copy(), one, *args)
    with pytest.raises(ValueError, match="param must be float32 values"):
        gradclip.FUSED_ADAM.adam(np.zeros(10), ok, ok.copy(), ok.copy(), one, one.copy(), *args)
    with pytest.raises(BufferError):  # the parameter is written: a read-only buffer is refused
        gradclip.FUSED_ADAM.adam(b"\0" * 40, ok, ok.copy(), ok.copy(), one, one.copy(), *args)


def test_the_default_optimizer_uses_paddles_public_api_and_the_fused_one_checks_the_version(monkeypatch):
    """``train.fused_update`` is opt-in; it runs only on the paddle versions it was tested with, elsewhere
    the public path runs after a one-line notice."""
    from zoo.engine.train import optimizer as optim

    cfg = dataclasses.replace(TrainConfig(), gradient_clip_norm=0.5, l2_penalty=0.01)
    logs: list[str] = []
    default = build_optimizer(Net(), cfg, log=logs.append)
    assert (
        type(default) is paddle.optimizer.Adam and type(default._grad_clip) is paddle.nn.ClipGradByGlobalNorm
    )
    assert logs == []
    fused = dataclasses.replace(cfg, fused_update=True)
    monkeypatch.setattr(paddle, "__version__", "3.3.1")
    assert isinstance(build_optimizer(Net(), fused, log=logs.append), gradclip.FusedAdam) and logs == []
    for version in ("3.4.0", "2.6.2", "0.0.0", "develop"):
        monkeypatch.setattr(paddle, "__version__", version)
        opt = build_optimizer(Net(), fused, log=logs.append)
        assert type(opt) is paddle.optimizer.Adam
        (notice,) = logs
        assert f"paddle {version} is installed" in notice and "public optimizer path" in notice
        assert "\n" not in notice
        logs.clear()
    assert optim.paddle_version("3.3.1") == (3, 3) and optim.paddle_version("0.0.0") is None


def test_require_kernels_turns_a_missing_kernels_skip_into_a_failure(monkeypatch):
    """Without ZOO_REQUIRE_KERNELS a kernel that is not built skips its tests; with it (CI) they fail; CI sets
    it."""
    monkeypatch.delenv(REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="not built"):
        kernel_missing("the kernel is not built")
    monkeypatch.setenv(REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match=f"not built; {REQUIRE}=1 requires every C kernel"):
        require_kernel(None, "the kernel is not built")
    assert require_kernel(gradclip, "present") is gradclip
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert f"export {REQUIRE}=1" in ci
