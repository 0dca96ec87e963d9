"""Small autograd ops that make frame-level layers fast on CPU.

Paddle's CPU backward of a broadcast ``x + bias`` reduces the gradient over all leading axes with a slow
strided reduction (about 0.2 s for a [32, 300, 2048] tensor, as long as the matmul before it); a matrix-vector
product does the same reduction at matmul speed.
"""

from __future__ import annotations

import paddle
from paddle.autograd import PyLayer

from zoo.nn import cpu_array, cpu_threads

# NeXtVLAD's C kernels (zoo_nextvlad/_assign.c): the weighted assignments at inference and the weighting around
# the training pooling op, one pass each; None where they were not built (no C compiler at install: the
# extension is optional), and then the paddle ops below are used.
try:
    from zoo_nextvlad import _assign as FUSED_ASSIGN
except ImportError:  # pragma: no cover - depends on the install
    FUSED_ASSIGN = None


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
    """VLAD sums of the factored NeXtVLAD: weight the assignments, pool frames per (cluster, group), expand.

    ``softmax [B, T, G, K]`` (the assignments), ``frame_weight [B, T, G, 1]`` (attention x mask),
    ``x [B, T, D]`` (no gradient), ``w [G*D, F]`` -> ``vlad [B, K, F]`` and the assignment sums
    ``[B, 1, K*G]`` (cluster-major). The same ops through autograd would hold the weighted cluster-major
    assignments ``[B, T, K*G]`` next to the pooled frames ``[B, K*G, D]`` (and keep them for the sums'
    backward), and materialize the pooled frames' gradient at once. Here the weighted assignments exist a few
    videos at a time (forward and backward), the backward keeps only the pooled frames (for the weight
    gradient, freed right after it) and the softmax output, which the softmax keeps anyway. With the C kernels
    (``_assign.c``) the weighting and cluster-major layout are one pass in forward, and the weighting's and the
    sums' gradient one pass in backward, written into the whole gradients without a concat.
    """

    @staticmethod
    def forward(ctx, soft, frame_weight, x, w, chunk):  # type: ignore[override]
        b, _, g, k = soft.shape
        gd, f = w.shape
        pooled, vlad, sums = [], [], []
        for start in range(0, b, chunk):
            stop = min(b, start + chunk)
            assign = _weighted_cluster_major(soft[start:stop], frame_weight[start:stop])  # [c, T, K*G]
            part = paddle.matmul(assign, x[start:stop], transpose_x=True).reshape([-1, gd])  # [c*K, G*D]
            pooled.append(part)  # kept in chunks: joining them would copy the largest tensor
            vlad.append(paddle.matmul(part, w).reshape([stop - start, k, f]))
            # [c, 1, K*G]; a product with ones (threaded) rather than paddle's single-threaded reduction
            sums.append(paddle.matmul(paddle.ones([1, assign.shape[1]], assign.dtype), assign))
        ctx.pooled, ctx.chunk = pooled, chunk
        ctx.save_for_backward(soft, frame_weight, x, w)
        if len(vlad) == 1:
            return vlad[0], sums[0]
        return paddle.concat(vlad, axis=0), paddle.concat(sums, axis=0)

    @staticmethod
    def backward(ctx, grad_vlad, grad_sums):  # type: ignore[override]
        soft, frame_weight, x, w = ctx.saved_tensor()
        b, t, g, k = soft.shape
        f = w.shape[1]
        grad_w = None
        for i, start in enumerate(range(0, b, ctx.chunk)):
            part = paddle.matmul(
                ctx.pooled[i], grad_vlad[start : start + ctx.chunk].reshape([-1, f]), transpose_x=True
            )
            grad_w = part if grad_w is None else grad_w + part
            ctx.pooled[i] = None  # the largest saved tensors: free each once used
        kernel = _kernel_for(soft)
        if kernel is not None:  # one pass per chunk, written into the whole gradients (no concat)
            grad_soft_all = paddle.empty(soft.shape, dtype=soft.dtype)
            grad_weight_all = paddle.empty(frame_weight.shape, dtype=soft.dtype)
            views = [cpu_array(v) for v in (grad_soft_all, grad_weight_all, grad_sums, soft, frame_weight)]
        grad_soft, grad_weight = [], []
        for start in range(0, b, ctx.chunk):
            stop = min(b, start + ctx.chunk)
            grad_pooled = paddle.matmul(grad_vlad[start:stop].reshape([-1, f]), w, transpose_y=True)
            grad_assign = paddle.matmul(
                x[start:stop], grad_pooled.reshape([stop - start, k * g, -1]), transpose_y=True
            )
            if kernel is not None:
                out_soft, out_weight, sums, soft_np, weight_np = (v[start:stop] for v in views)
                grad_np = cpu_array(grad_assign)
                kernel.weight_grad(
                    out_soft, out_weight, grad_np, sums, soft_np, weight_np, t, g, k, cpu_threads()
                )
                continue
            grad_assign = grad_assign + grad_sums[start:stop]  # the sums' gradient broadcasts over T
            # back to group-major [c, T, G, K]
            grad_assign = grad_assign.reshape([0, 0, k, g]).transpose([0, 1, 3, 2])
            grad_soft.append(grad_assign * frame_weight[start:stop])
            grad_weight.append((grad_assign * soft[start:stop]).sum(axis=-1, keepdim=True))
        if kernel is not None:
            return grad_soft_all, grad_weight_all, None, grad_w
        if len(grad_soft) == 1:
            return grad_soft[0], grad_weight[0], None, grad_w
        return paddle.concat(grad_soft, axis=0), paddle.concat(grad_weight, axis=0), None, grad_w


def _kernel_for(t: paddle.Tensor):
    """The C kernels (``_assign.c``) for float32 CPU tensors in dygraph, else None (paddle's ops)."""
    if (
        FUSED_ASSIGN is None
        or not paddle.in_dynamic_mode()
        or t.dtype != paddle.float32
        or not t.place.is_cpu_place()
    ):
        return None
    return FUSED_ASSIGN


def _weighted_cluster_major(soft: paddle.Tensor, frame_weight: paddle.Tensor) -> paddle.Tensor:
    """``soft [c, T, G, K] * frame_weight [c, T, G, 1]`` laid out cluster-major ``[c, T, K*G]`` (no gradient):
    one pass of the C kernel, or paddle's multiply and transpose."""
    kernel = _kernel_for(soft)
    if kernel is None:
        return _cluster_major(soft * frame_weight)
    c, t, g, k = soft.shape
    out = paddle.empty([c, t, k * g], dtype=soft.dtype)
    kernel.weight(cpu_array(out), cpu_array(soft), cpu_array(frame_weight), g, k, cpu_threads())
    return out


def _cluster_major(weighted: paddle.Tensor) -> paddle.Tensor:
    """``[B, T, G, K]`` -> ``[B, T, K*G]``: the pooled frames then reshape to ``[B*K, G*D]`` without a copy."""
    return weighted.transpose([0, 1, 3, 2]).reshape([0, 0, weighted.shape[2] * weighted.shape[3]])


def pool_expand(
    soft: paddle.Tensor, frame_weight: paddle.Tensor, x: paddle.Tensor, w: paddle.Tensor, chunk: int = 8
) -> tuple[paddle.Tensor, paddle.Tensor]:
    """VLAD sums ``[B, K, F]`` and assignment sums ``[B, 1, K*G]`` (see :class:`_PoolExpand`).

    Plain ops when no gradient is needed (eval, export): the PyLayer does not trace.
    """
    if not paddle.in_dynamic_mode() or (
        soft.stop_gradient and frame_weight.stop_gradient and w.stop_gradient
    ):
        return pool_assigned(_cluster_major(soft * frame_weight), x, w, soft.shape[3])
    return _PoolExpand.apply(soft, frame_weight, x, w, max(1, int(chunk)))


def pool_assigned(
    assign: paddle.Tensor, x: paddle.Tensor, w: paddle.Tensor, clusters: int
) -> tuple[paddle.Tensor, paddle.Tensor]:
    """:func:`pool_expand` from the weighted cluster-major assignments ``[B, T, K*G]`` (no gradient)."""
    pooled = paddle.matmul(assign, x, transpose_x=True)  # [B, K*G, D]
    vlad = paddle.matmul(pooled.reshape([-1, w.shape[0]]), w).reshape([-1, clusters, w.shape[1]])
    return vlad, paddle.matmul(paddle.ones([1, assign.shape[1]], assign.dtype), assign)


FUSED_MAX_CLUSTERS = 1024  # the kernel's per-group buffer (ZOO_ASSIGN_MAX_CLUSTERS, assign_kernel.h)


def fused_assign_applies(x: paddle.Tensor, clusters: int) -> bool:
    """Whether :func:`fused_assignments` can run: the kernel is built, dygraph, float32 frames on the CPU,
    at most 1024 clusters, and no gradient wanted (an inference kernel: autograd cannot see through it)."""
    return (
        FUSED_ASSIGN is not None
        and clusters <= FUSED_MAX_CLUSTERS
        and paddle.in_dynamic_mode()
        and not paddle.is_grad_enabled()
        and x.dtype == paddle.float32
        and x.place.is_cpu_place()
    )


def fused_assignments(
    x: paddle.Tensor, mask: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor, groups: int
) -> paddle.Tensor:
    """Weighted cluster-major assignments ``[B, T, K*G]`` of frames ``x [B, T, D]`` in one pass.

    ``weight [D, G*K + G]`` and ``bias [G*K + G]`` are the assignment and attention products side by side:
    one matmul gives every logit, then the C kernel applies the softmax over clusters, the group attention's
    sigmoid and the mask and writes the product cluster-major, where the paddle ops make four passes (see
    ``_assign.c``). The same values up to float32 rounding (tested against the ops).
    """
    b, t = x.shape[0], x.shape[1]
    clusters = (weight.shape[1] - groups) // groups
    logits = paddle.matmul(x, weight)  # [B, T, G*K + G]
    out = paddle.empty([b, t, clusters * groups], dtype=paddle.float32)
    FUSED_ASSIGN.assign(
        cpu_array(out),
        cpu_array(logits),
        cpu_array(mask.astype(paddle.float32)),
        cpu_array(bias),
        groups,
        clusters,
        cpu_threads(),
    )
    return out
