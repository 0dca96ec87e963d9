"""Gradient clipping and the L2 term in place: paddle's arithmetic without a second copy of the gradients.

Paddle's dygraph optimizer returns new gradient tensors from ``grad_clip`` (``ClipGradByNorm`` runs the
out-of-place ``clip_by_norm`` kernel per tensor) and from its L2 regularization (``coeff * w`` and then
``grad + term``, both new tensors), and keeps the whole list alive until the update: at the reference NeXtVLAD
size that is a second copy of all 356 MB of gradients on top of the model's. :class:`InPlaceClipDecay` is handed
to the optimizer as its ``grad_clip`` (so ``optimizer.step()`` and AMP's ``GradScaler.step`` call it after
unscaling, where paddle clips) with the optimizer's ``weight_decay`` left None, and it does the same operations
in paddle's order, clip first, then L2, writing into each gradient:

- ``global``: paddle's squared norms, sum and factor ``max / max(norm, max)``, then ``g *= factor`` in place;
- ``per_tensor``: paddle's ``clip_by_norm`` kernel computes its own norm in a way Python cannot repeat bit for
  bit, so a tensor whose norm is clearly below the limit (by a margin 10^4 times the observed error of both
  norms) is left as the kernel would leave it (times exactly 1); otherwise the kernel runs and its result is
  copied back, one tensor-sized temporary at a time;
- L2: ``g += scale(w, coeff)`` row block by row block (at most ``CHUNK_ELEMENTS`` at a time), the same two
  elementwise operations paddle runs, so the sums are bitwise the same.

:class:`FusedAdam` (the trainer's default, ``train.fused_update``) goes one step further: its
``InPlaceClipDecay`` only computes the clip factors, and the Adam update applies factor and L2 term itself,
one pass per parameter in the C kernel ``_adam.c``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import paddle
from paddle import _C_ops
from paddle.nn.clip import ClipGradBase, _squared_l2_norm

from zoo.nn import cpu_array, cpu_threads

# The fused update (zoo/engine/train/_adam.c); None where it was not built (the extension is optional), and then
# FusedAdam runs paddle's clip, L2 term and adam kernel.
try:
    from zoo.engine.train import _adam as FUSED_ADAM
except ImportError:  # pragma: no cover - depends on the install
    FUSED_ADAM = None

CHUNK_ELEMENTS = 1 << 20  # elements of the L2 term computed at once (4 MB in fp32)
NORM_MARGIN = 1e-3  # relative: both norms agree to ~1e-7 in practice (tree sums), so this leaves no doubt


class InPlaceClipDecay(ClipGradBase):
    """A ``grad_clip`` for paddle optimizers that clips (``mode`` global or per_tensor; ``clip_norm`` 0: no
    clipping) and then adds ``coeff * w`` for the parameters in ``decay`` ({id(param): coeff}), in place."""

    def __init__(
        self, clip_norm: float, mode: str, decay: dict[int, float] | None = None, defer: bool = False
    ) -> None:
        super().__init__()
        if mode not in ("global", "per_tensor"):
            raise ValueError(f"InPlaceClipDecay: mode must be 'global' or 'per_tensor', got {mode!r}")
        self.clip_norm = float(clip_norm)
        self.mode = mode
        self.decay = dict(decay or {})
        # defer (FusedAdam's clip): when every gradient suits the fused kernel, leave the gradients as they
        # are and hand FusedAdam each parameter's (factor, L2 coefficient) in `pending` instead
        self.defer = defer
        self.pending: dict[int, tuple[float, float]] = {}

    def __str__(self) -> str:
        return f"InPlaceClipDecay(clip_norm={self.clip_norm}, mode={self.mode}, decayed={len(self.decay)})"

    @paddle.no_grad()
    def _dygraph_clip(self, params_grads):
        pairs = [(p, g) for p, g in params_grads if g is not None]
        clipped = [(p, g) for p, g in pairs if getattr(p, "need_clip", True) is not False]
        self.pending = {}
        if self.defer and pairs and all(fusable(p, g) for p, g in pairs):
            factors = {id(p): factor for p, factor in self._factors(clipped)}
            self.pending = {id(p): (factors.get(id(p), 1.0), self.decay.get(id(p), 0.0)) for p, _ in pairs}
            return params_grads
        if self.clip_norm > 0 and clipped:
            if self.mode == "global":
                self._clip_global(clipped)
            else:
                for _, g in clipped:
                    self._clip_tensor(g)
        for p, g in pairs:
            coeff = self.decay.get(id(p))
            if coeff is not None:
                add_decay(p, g, coeff)
        return params_grads

    def _clip_global(self, pairs: list) -> None:
        """paddle's ClipGradByGlobalNorm (auto_skip_clip False): its sums in its order, the factor applied in
        place (exactly 1 when the norm is below the limit, as in paddle)."""
        factor = self._global_factor(pairs)
        for _, g in pairs:
            f = factor.astype(g.dtype) if factor.dtype != g.dtype else factor
            if len(g.shape) == 0:  # paddle multiplies 0-D tensors out of place; same value
                paddle.assign(paddle.multiply(g, f).reshape(g.shape), output=g)
            else:
                g.multiply_(f)

    def _factors(self, pairs: list) -> list[tuple[object, float]]:
        """(parameter, factor) for the clipped ``pairs``, the gradients untouched: the global factor as
        :meth:`_clip_global` applies it; per tensor ``clip_norm / norm`` above the limit (paddle's
        ``clip_by_norm``, its norm summed in another order: the same within float32 rounding), else 1."""
        if self.clip_norm <= 0 or not pairs:
            return []
        if self.mode == "global":
            factor = float(self._global_factor(pairs).astype(paddle.float32).numpy().reshape(-1)[0])
            return [(p, factor) for p, _ in pairs]
        out = []
        limit = np.float32(self.clip_norm)
        for p, g in pairs:
            norm = np.sqrt(np.float32(_squared_l2_norm(g).numpy().reshape(-1)[0]))
            out.append((p, float(limit / norm) if norm > limit else 1.0))
        return out

    def _global_factor(self, pairs: list) -> paddle.Tensor:
        """ClipGradByGlobalNorm's factor ``max / max(norm, max)`` of the gradients in ``pairs``."""
        by_dtype: dict[str, list] = {"low": [], "float32": [], "float64": []}
        for _, g in pairs:
            s = _squared_l2_norm(g)
            if s.dtype in (paddle.float16, paddle.bfloat16):
                by_dtype["low"].append(s)
            elif s.dtype == paddle.float32:
                by_dtype["float32"].append(s)
            else:
                by_dtype["float64"].append(s)
        sum_dtype = "float64" if by_dtype["float64"] else "float32"
        parts = []
        for key in ("low", "float32", "float64"):
            if by_dtype[key]:
                part = paddle.stack(by_dtype[key]).sum()
                parts.append(part if part.dtype == _dtype(sum_dtype) else part.astype(sum_dtype))
        norm = paddle.sqrt(paddle.stack(parts).sum())
        limit = paddle.full(shape=[1], dtype=sum_dtype, fill_value=self.clip_norm)
        return paddle.divide(x=limit, y=paddle.maximum(x=norm, y=limit))

    def _clip_tensor(self, g) -> None:
        """paddle's ClipGradByNorm on one gradient, written back into it."""
        squared = float(_squared_l2_norm(g).astype("float64").numpy().reshape(-1)[0])
        if math.isfinite(squared) and math.sqrt(squared) <= self.clip_norm * (1 - NORM_MARGIN):
            return  # the kernel's factor is exactly 1
        out = _C_ops.clip_by_norm(g, self.clip_norm)
        paddle.assign(out, output=g)
        del out


def fusable(param, grad) -> bool:
    """Whether the fused kernel (``_adam.c``) can update ``param`` from ``grad``: it is built, both are
    dense float32 tensors on the CPU, the parameter is contiguous (it is written where it is; a strided
    gradient is read from a contiguous copy), and it has no regularizer of its own (paddle adds that term
    after the clip, to the clipped gradient, where the kernel's factor would scale it too)."""
    return (
        FUSED_ADAM is not None
        and getattr(param, "regularizer", None) is None
        and param.is_contiguous()
        and param.dtype == paddle.float32
        and grad.dtype == paddle.float32
        and param.place.is_cpu_place()
        and grad.place.is_cpu_place()
        and not (hasattr(grad, "is_selected_rows") and grad.is_selected_rows())
    )


class FusedAdam(paddle.optimizer.Adam):
    """paddle's Adam whose update applies its ``InPlaceClipDecay``'s clip factor and L2 term on the way, one
    pass over each parameter, its gradient, and the two moments (``zoo/engine/train/_adam.c``, threaded), where
    paddle's path makes four: the clip's multiply, the L2 term's scale and sum, and the adam kernel.

    The arithmetic is paddle's in paddle's order (the same bits as paddle's AVX-512 adam kernel; the
    global clip factor is paddle's), the state is paddle's own (its moment and beta-power accumulators,
    so ``state_dict``, checkpoints and resuming are unchanged), and a step with anything the kernel cannot
    take (see :func:`fusable`: no kernel built, a float16/bfloat16 or GPU parameter, a sparse gradient, a
    parameter's own regularizer) goes through paddle's clip, L2 term and adam kernel. The gradients are left
    unclipped.
    """

    def __init__(self, learning_rate, parameters, grad_clip: InPlaceClipDecay) -> None:
        grad_clip.defer = True
        super().__init__(learning_rate=learning_rate, parameters=parameters, grad_clip=grad_clip)

    def _append_optimize_op(self, block, param_and_grad):
        entry = None
        pending = getattr(self._grad_clip, "pending", None)  # None: the clip was replaced
        if pending and isinstance(param_and_grad, (tuple, list)):
            entry = pending.pop(id(param_and_grad[0]), None)
        if entry is None:
            return super()._append_optimize_op(block, param_and_grad)
        param, grad = param_and_grad
        factor, coeff = entry
        acc = self._get_accumulator_master
        FUSED_ADAM.adam(
            cpu_array(param),
            cpu_array(grad),
            cpu_array(acc(self._moment1_acc_str, param)),
            cpu_array(acc(self._moment2_acc_str, param)),
            cpu_array(acc(self._beta1_pow_acc_str, param)),
            cpu_array(acc(self._beta2_pow_acc_str, param)),
            float(self._create_param_lr(param_and_grad)),
            _scalar(self._beta1),
            _scalar(self._beta2),
            _scalar(self._epsilon),
            factor,
            coeff,
            cpu_threads(),
        )
        return None


def _scalar(value) -> float:
    return float(value.item(0)) if isinstance(value, paddle.Tensor) else float(value)


def add_decay(param, grad, coeff: float) -> None:
    """grad += coeff * param, as paddle's L2Decay + add_n compute it, a block of rows at a time."""
    target = param if param.dtype == grad.dtype else param.astype(grad.dtype)
    for start, stop in _row_blocks(list(grad.shape)):
        if start is None:
            grad.add_(_C_ops.scale(target, coeff, 0.0, True))
        else:
            grad._slice(start, stop).add_(_C_ops.scale(target._slice(start, stop), coeff, 0.0, True))


def _row_blocks(shape: list[int]) -> Iterable[tuple[int | None, int | None]]:
    """Ranges of the first dimension covering at most CHUNK_ELEMENTS each; (None, None): the whole tensor."""
    if len(shape) < 2 or math.prod(shape) <= CHUNK_ELEMENTS:
        yield None, None
        return
    rows = max(1, CHUNK_ELEMENTS // math.prod(shape[1:]))
    for start in range(0, shape[0], rows):
        yield start, min(shape[0], start + rows)


def _dtype(name: str):
    return paddle.float64 if name == "float64" else paddle.float32
