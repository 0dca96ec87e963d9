"""Small autograd ops that make frame-level layers fast on CPU.

Paddle's CPU backward of a broadcast ``x + bias`` reduces the gradient over all leading axes with a slow
strided reduction (about 0.2 s for a [32, 300, 2048] tensor, as long as the matmul before it); a matrix-vector
product does the same reduction at matmul speed.
"""

from __future__ import annotations

import paddle
from paddle.autograd import PyLayer


class _AddBias(PyLayer):
    @staticmethod
    def forward(ctx, x: paddle.Tensor, bias: paddle.Tensor) -> paddle.Tensor:  # type: ignore[override]
        ctx.rows = int(x.numel()) // int(bias.shape[0])
        return x + bias

    @staticmethod
    def backward(ctx, grad: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:  # type: ignore[override]
        ones = paddle.ones([1, ctx.rows], dtype=grad.dtype)
        grad_bias = paddle.matmul(ones, grad.reshape([ctx.rows, -1])).reshape([-1])
        return grad, grad_bias


def add_bias(x: paddle.Tensor, bias: paddle.Tensor) -> paddle.Tensor:
    """``x [..., F] + bias [F]`` whose bias gradient is a matrix-vector product (same values, faster)."""
    if bias.stop_gradient:
        return x + bias
    return _AddBias.apply(x, bias)


def linear(x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor | None) -> paddle.Tensor:
    """``x @ weight + bias`` for frame tensors ``[B, T, D]`` (see :func:`add_bias`)."""
    out = paddle.matmul(x, weight)
    return out if bias is None else add_bias(out, bias)


class _PoolExpand(PyLayer):
    """VLAD sums of the factored NeXtVLAD: pool frames per (cluster, group), expand once per video.

    ``assign [B, T, K*G]`` (cluster-major), ``x [B, T, D]`` (no gradient), ``w [G*D, F]`` ->
    ``vlad [B, K, F]`` and the assignment sums ``[B, 1, K*G]``. Autograd of the same ops would keep the
    assignments (for the sums) and materialize the pooled frames' gradient ``[B, K*G, D]`` at once; here the
    backward keeps only the pooled frames (for the weight gradient, freed right after it) and computes the
    assignments' gradient a few videos at a time, so the step's peak memory stays below the expanded form's.
    """

    @staticmethod
    def forward(ctx, assign, x, w, chunk):  # type: ignore[override]
        b, _, kg = assign.shape
        gd, f = w.shape
        pooled = paddle.matmul(assign, x, transpose_x=True)  # [B, K*G, D]
        vlad = paddle.matmul(pooled.reshape([-1, gd]), w).reshape([b, -1, f])  # [B, K, F]
        sums = paddle.matmul(paddle.ones([1, assign.shape[1]], assign.dtype), assign)  # [B, 1, K*G]
        ctx.pooled, ctx.x, ctx.w, ctx.chunk = pooled, x, w, max(1, int(chunk))
        return vlad, sums

    @staticmethod
    def backward(ctx, grad_vlad, grad_sums):  # type: ignore[override]
        pooled, x, w = ctx.pooled, ctx.x, ctx.w
        b, kg, d = pooled.shape
        gd, f = w.shape
        grad_w = paddle.matmul(pooled.reshape([-1, gd]), grad_vlad.reshape([-1, f]), transpose_x=True)
        ctx.pooled = pooled = None  # the largest saved tensor: free it before the chunks below
        parts = []
        for start in range(0, b, ctx.chunk):
            stop = min(b, start + ctx.chunk)
            grad_pooled = paddle.matmul(grad_vlad[start:stop].reshape([-1, f]), w, transpose_y=True)
            part = paddle.matmul(x[start:stop], grad_pooled.reshape([stop - start, kg, d]), transpose_y=True)
            parts.append(part + grad_sums[start:stop])  # [c, T, K*G]; the sums' gradient broadcasts over T
        grad_assign = parts[0] if len(parts) == 1 else paddle.concat(parts, axis=0)
        return grad_assign, None, grad_w


def pool_expand(
    assign: paddle.Tensor, x: paddle.Tensor, w: paddle.Tensor, chunk: int = 8
) -> tuple[paddle.Tensor, paddle.Tensor]:
    """``(assign^T x)`` reshaped to ``[B*K, G*D]`` times ``w``, and ``ones @ assign`` (see :class:`_PoolExpand`).

    Plain ops when no gradient is needed (eval, export): the PyLayer does not trace.
    """
    if not paddle.in_dynamic_mode() or (assign.stop_gradient and w.stop_gradient):
        b = assign.shape[0]
        pooled = paddle.matmul(assign, x, transpose_x=True)
        vlad = paddle.matmul(pooled.reshape([-1, w.shape[0]]), w).reshape([b, -1, w.shape[1]])
        return vlad, paddle.matmul(paddle.ones([1, assign.shape[1]], assign.dtype), assign)
    return _PoolExpand.apply(assign, x, w, chunk)
