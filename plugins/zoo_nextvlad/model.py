"""NeXtVLAD for frame-level YouTube-8M features, faithful to PaddleVideo 1.x ``models/nextvlad``.

One NeXtVLAD branch per frame feature (rgb, audio, ... in ``spec.features`` order), concatenated, then
dropout -> FC -> BatchNorm -> SE context gating -> classifier (logistic or MoE). PaddleVideo fed
variable-length LoD sequences; here batches are zero-padded and every reduction over frames (the cluster
assignments, the VLAD sums and the frame-level BatchNorm statistics) uses the frame mask, so a video's
output does not depend on the padding its batch needed.

The VLAD aggregation is two large matmuls per branch and batch (frames x features into clusters) instead of
per-frame or per-group loops: this is what keeps a CPU training step near the matmul peak. By default
(``formulation: factored``) the expansion FC is never applied to the frames: every map between the input
and the softmax/sigmoid is linear, so its product with the expansion weight is formed once per step, and
the VLAD sums are aggregated from the raw frames and expanded once per video (see :class:`NeXtVLADLayer`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from zoo.config import DatasetSpec
from zoo.contracts import Int8Policy
from zoo.errors import ConfigError, DataError
from zoo.nn import MaskedBatchNorm, SEGating, build_head, feature_tensors
from zoo_nextvlad.ops import (
    FUSED_MAX_CLUSTERS,
    fused_assign_applies,
    fused_assignments,
    linear,
    pool_assigned,
    pool_expand,
)

_L2_EPSILON = 1e-12  # PaddleVideo's l2_normalize: x / sqrt(sum(x^2) + 1e-12)
_EIGEN_EPSILON = 1e-4  # PaddleVideo: scale = sqrt(eigenvalue) + 1e-4
FORMULATIONS = ("factored", "expanded")


@dataclass
class NeXtVLADConfig:
    """NeXtVLAD options; the defaults are PaddleVideo's configs/nextvlad.yaml (the paper's 89M model)."""

    cluster_size: int = 128
    """Clusters K per NeXtVLAD branch."""
    groups: int = 8
    """Groups G: each expanded frame is split into G vectors of expansion*D/G dims, each softly assigned."""
    expansion: int = 2
    """Expansion factor of the first FC (D -> expansion*D); expansion*D must be divisible by groups."""
    hidden_size: int = 2048
    """Width of the FC after the concatenated VLADs (and of the SE gating)."""
    dropout: float = 0.5
    """Dropout rate on the concatenated VLAD descriptors (0 disables)."""
    gating_reduction: int = 8
    """SE context gating bottleneck: hidden_size -> hidden_size / gating_reduction -> hidden_size."""
    classifier: Literal["logistic", "moe"] = "logistic"
    """Classifier head: "logistic" (PaddleVideo) or "moe" (mixture of logistic experts, starter code)."""
    moe_mixtures: int = 2
    """Experts per class of the MoE head (unused by the logistic head)."""
    eigenvalues: str | None = None
    """Path to the YouTube-8M PCA eigenvals.npy (in yt8m_pca.tgz) for reverse whitening; null: none."""
    eigenvalues_feature: str = "rgb"
    """The feature that reverse whitening applies to (first D eigenvalues scale its D dims)."""
    formulation: Literal["factored", "expanded"] = "factored"
    """How a branch computes the same function: "factored" (fewer FLOPs, no expanded frames in memory) or
    "expanded" (PaddleVideo's order: every frame through the expansion FC; kept for comparison)."""


class NeXtVLADLayer(nn.Layer):
    """One NeXtVLAD aggregation: frames ``[B, T, D]`` + mask ``[B, T]`` -> ``[B, K * expansion*D/G]``.

    Layer by layer (PaddleVideo 1.x names in brackets, see :mod:`zoo_nextvlad.paddlevideo`):

    0. ``x * input_scale`` (reverse whitening; all ones unless eigenvalues are configured) [eigen_param]
    1. expansion FC D -> E = expansion*D, no activation [*_fc_expansion_w/_b]
    2. group attention: FC E -> G, sigmoid [*_fc_group_attention_w/_b]
    3. assignment: E -> G*K matmul, no bias [*_cluster_weights], BatchNorm over valid frames, softmax over K,
       times the group attention and the frame mask
    4. VLAD [F, K] (F = E/G): sum over frames and groups of feature x assignment, minus
       (assignment sum [K]) x cluster_weights2 [K, F] [*_cluster_weights2]
    5. L2 over F for each cluster, flatten feature-major (index f*K + k, as PaddleVideo), BatchNorm.

    ``formulation="expanded"`` computes it in that order. ``"factored"`` (the default) computes the same
    function with the same parameters in fewer FLOPs, because steps 1-3 are linear up to the
    softmax/sigmoid (W_e, b_e: expansion; W_c: cluster_weights; W_a, b_a: group_attention):

    * assignment and attention logits are ``x @ (W_e W_c) + b_e W_c`` and ``x @ (W_e W_a) + (b_e W_a + b_a)``,
      the product matrices formed once per forward from the parameters (gradients reach W_e, W_c, W_a); in
      eval mode the frame BatchNorm, affine per channel, is folded into them too;
    * the VLAD sum over frames of ``a[t,g,k] * (x_t W_e + b_e)[group g]`` is
      ``W_e[:, group g]^T (sum_t a[t,g,k] x_t) + b_e[group g] * sum_t a[t,g,k]``: the frames are aggregated
      in the input space (D wide) and expanded once per video, so ``[B, T, expansion*D]`` never exists.

    At D=1024, K=128, G=8, expansion 2 and 300 frames that is 1.8 instead of 2.7 GFLOP per video forward
    (:meth:`flops`). Padded frames have assignment 0, so they are excluded exactly as before.
    """

    def __init__(
        self,
        feature_size: int,
        cluster_size: int,
        groups: int,
        expansion: int,
        formulation: str = "factored",
    ) -> None:
        super().__init__()
        if formulation not in FORMULATIONS:
            raise ConfigError(
                f"model.formulation: {formulation!r} is not one of {', '.join(map(repr, FORMULATIONS))}"
            )
        self.formulation = formulation
        self.feature_size = feature_size
        self.cluster_size = cluster_size
        self.groups = groups
        self.expanded_size = expansion * feature_size
        self.group_feature_size = self.expanded_size // groups
        self.output_size = cluster_size * self.group_feature_size
        msra = paddle.ParamAttr(initializer=nn.initializer.KaimingNormal())
        zero = paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))
        self.register_buffer("input_scale", paddle.ones([feature_size]))
        self.expansion = nn.Linear(feature_size, self.expanded_size, weight_attr=msra, bias_attr=zero)
        self.group_attention = nn.Linear(self.expanded_size, groups, weight_attr=msra, bias_attr=zero)
        self.cluster_weights = self.create_parameter(
            [self.expanded_size, groups * cluster_size], attr=nn.initializer.KaimingNormal()
        )
        self.cluster_bn = MaskedBatchNorm(groups * cluster_size)
        self.cluster_weights2 = self.create_parameter(
            [cluster_size, self.group_feature_size], attr=nn.initializer.KaimingNormal()
        )
        self.vlad_bn = nn.BatchNorm1D(self.output_size)
        self._eval_cache: tuple[list[paddle.Tensor], tuple[paddle.Tensor, ...]] | None = None
        self._export_products: tuple[paddle.Tensor, ...] | None = None
        self._joint_cache: tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor] | None = None
        self._assign_op: Callable[..., paddle.Tensor] | None = None  # set while tracing with custom ops

    def forward(self, x: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        if self.formulation == "factored":
            return self._forward_factored(x, mask)
        return self._forward_expanded(x, mask)

    def _products(self) -> tuple[paddle.Tensor, ...]:
        """What the factored form derives from the parameters alone (once per forward, not per frame).

        ``(assign_weight [D, G*K], assign_bias [G*K], attention_weight [D, G], attention_bias [G],
        w_groups [G*D, F], bias_groups [G, F])``. In eval mode the frame BatchNorm is folded into the
        assignment product. Differentiable: in training the gradients reach the parameters through these.
        """
        g, f = self.groups, self.group_feature_size
        weight = self.expansion.weight * self.input_scale.unsqueeze(1)  # [D, E], reverse whitening folded
        bias = self.expansion.bias
        assign_weight = paddle.matmul(weight, self.cluster_weights)  # [D, G*K]
        assign_bias = paddle.matmul(bias.unsqueeze(0), self.cluster_weights).squeeze(0)  # [G*K]
        attention_weight = paddle.matmul(weight, self.group_attention.weight)  # [D, G]
        attention_bias = (
            paddle.matmul(bias.unsqueeze(0), self.group_attention.weight).squeeze(0)
            + self.group_attention.bias
        )
        if not self.training:  # eval BatchNorm is affine per channel: fold it into the product matrix
            bn = self.cluster_bn
            scale = bn.weight * paddle.rsqrt(bn._variance + bn.epsilon)
            assign_bias = (assign_bias - bn._mean) * scale + bn.bias
            assign_weight = assign_weight * scale
        # expansion weight, group-major rows: w_groups[g*D + i, j] = weight[i, g*F + j]. In a traced program
        # slices, not reshape -> transpose -> reshape, which oneDNN's bf16 predictor fuses into a wrong matmul;
        # in dygraph the transpose, whose gradient is one pass where each slice's is a zero-filled full copy
        if paddle.in_dynamic_mode():
            w_groups = weight.reshape([0, g, f]).transpose([1, 0, 2]).reshape([-1, f])
        else:
            w_groups = paddle.concat([weight[:, i * f : (i + 1) * f] for i in range(g)], axis=0)
        return assign_weight, assign_bias, attention_weight, attention_bias, w_groups, bias.reshape([g, f])

    def _product_sources(self) -> list[paddle.Tensor]:
        bn = self.cluster_bn
        return [
            self.input_scale,
            self.expansion.weight,
            self.expansion.bias,
            self.cluster_weights,
            self.group_attention.weight,
            self.group_attention.bias,
            bn.weight,
            bn.bias,
            bn._mean,
            bn._variance,
        ]

    def _eval_products(self) -> tuple[paddle.Tensor, ...]:
        """The eval-mode products: cached in dygraph, constants of an export, else computed in the graph.

        The dygraph cache is reused only while every tensor it was computed from is unchanged, compared by
        value (optimizer steps, ``set_value`` and ``set_state_dict`` write in place without a version bump
        paddle would expose): a few MB read per forward instead of 4.4 GFLOP of products at the reference
        sizes. When a gradient is needed (eval mode under autograd) they are recomputed, differentiably.
        """
        if not paddle.in_dynamic_mode():
            frozen = self._export_products
            return frozen if frozen is not None else self._products()
        sources = self._product_sources()
        if paddle.is_grad_enabled() and not all(t.stop_gradient for t in sources):
            return self._products()
        cached = self._eval_cache
        if cached is not None and all(
            old.shape == new.shape and old.dtype == new.dtype and bool(paddle.equal_all(old, new))
            for old, new in zip(cached[0], sources)
        ):
            return cached[1]
        with paddle.no_grad():
            products = tuple(t.detach() for t in self._products())
            self._eval_cache = ([t.detach().clone() for t in sources], products)
        return products

    def _joint_products(self, products: tuple[paddle.Tensor, ...]) -> tuple[paddle.Tensor, paddle.Tensor]:
        """The assignment and attention products side by side (``[D, G*K + G]``, ``[G*K + G]``) for the fused
        inference kernel; kept while the eval products they come from are the same tensors (in dygraph)."""
        if not paddle.in_dynamic_mode():  # traced: two concats of the program's constants
            return paddle.concat([products[0], products[2]], axis=1), paddle.concat(
                [products[1], products[3]]
            )
        cached = self._joint_cache
        if cached is None or cached[0] is not products[0]:
            weight = paddle.concat([products[0], products[2]], axis=1)
            cached = self._joint_cache = (products[0], weight, paddle.concat([products[1], products[3]]))
        return cached[1], cached[2]

    def export_constants(self) -> contextlib.AbstractContextManager[None]:
        """Context in which a traced (``paddle.jit.to_static``) eval forward reads the product matrices as
        constants of the program (persistable buffers, saved with the parameters) instead of computing them
        on every call. :func:`zoo.engine.export.tracing` enters it around tracing and saving."""
        return _export_constants(self)

    def _forward_factored(self, x: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        k, g = self.cluster_size, self.groups
        if self.training:
            self._eval_cache = self._joint_cache = None  # the parameters are about to change: no stale copies
            assign_weight, assign_bias, attention_weight, attention_bias, w_groups, bias = self._products()
            # batch statistics of the logits themselves (exact, only the matmul order differs); the constant
            # assignment bias goes to the BatchNorm as its offset, which training-mode normalisation cancels
            logits = self.cluster_bn(paddle.matmul(x, assign_weight), mask, offset=assign_bias)  # [B, T, G*K]
        else:
            products = self._eval_products()
            assign_weight, assign_bias, attention_weight, attention_bias, w_groups, bias = products
            custom = self._assign_op is not None and not paddle.in_dynamic_mode()
            if custom or fused_assign_applies(x, k):  # softmax, attention and mask in one pass
                joint_weight, joint_bias = self._joint_products(products)
                if custom:  # traced for an export with custom operators: the kernel as a paddle operator
                    logits = paddle.matmul(x, joint_weight)
                    a = self._assign_op(logits, mask, joint_bias, g, k)
                else:  # dygraph inference: the kernel through the C extension
                    a = fused_assignments(x, mask, joint_weight, joint_bias, g)  # [B, T, K*G] cluster-major
                vlad, a_groups = pool_assigned(a, x, w_groups, k)
                return self._finish_factored(vlad, a_groups, bias)
            logits = linear(x, assign_weight, assign_bias)  # the BatchNorm is folded in
        attention = F.sigmoid(linear(x, attention_weight, attention_bias))  # [B, T, G]
        assign = F.softmax(logits.reshape([0, 0, g, k]), axis=-1)
        frame_weight = (attention * mask.unsqueeze(-1)).unsqueeze(-1)  # padded frames get weight 0
        # sum_t a[t,g,k] x_t per (cluster, group), expanded once per video: [B, K, F]; assignment sums
        # [B, 1, K*G] (a = assign * frame_weight, cluster-major)
        vlad, a_groups = pool_expand(assign, frame_weight, x, w_groups)
        return self._finish_factored(vlad, a_groups, bias)

    def _finish_factored(
        self, vlad: paddle.Tensor, a_groups: paddle.Tensor, bias: paddle.Tensor
    ) -> paddle.Tensor:
        """The expansion bias and the cluster centres once per video, L2 per cluster, BatchNorm."""
        k, g = self.cluster_size, self.groups
        a_groups = a_groups.reshape([-1, k, g])
        vlad = vlad + paddle.matmul(a_groups, bias)  # the expansion bias, once per video
        vlad = vlad - a_groups.sum(axis=-1, keepdim=True) * self.cluster_weights2  # [B, K, F]
        vlad = vlad * paddle.rsqrt((vlad * vlad).sum(axis=-1, keepdim=True) + _L2_EPSILON)
        return self.vlad_bn(vlad.transpose([0, 2, 1]).reshape([0, self.output_size]))

    def _forward_expanded(self, x: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        k, g, f = self.cluster_size, self.groups, self.group_feature_size
        # reverse whitening folded into the expansion weight: (x * s) @ W == x @ (s[:, None] * W)
        weight = self.expansion.weight * self.input_scale.unsqueeze(1)
        h = linear(x, weight, self.expansion.bias)  # [B, T, E]
        # BatchNorm statistics over the valid frames only (PaddleVideo: over the LoD sequence's frames)
        logits = self.cluster_bn(paddle.matmul(h, self.cluster_weights), mask)  # [B, T, G*K]
        attention = F.sigmoid(linear(h, self.group_attention.weight, self.group_attention.bias))  # [B, T, G]
        assign = F.softmax(logits.reshape([0, 0, g, k]), axis=-1)
        frame_weight = (attention * mask.unsqueeze(-1)).unsqueeze(-1)  # padded frames get weight 0
        assign = (assign * frame_weight).reshape([0, -1, k])  # [B, T*G, K]
        # sum over frames and groups of assign^T x features, computed as one batched matmul -> [B, F, K]
        vlad = paddle.matmul(h.reshape([0, -1, f]), assign, transpose_x=True)
        a_sum = paddle.matmul(paddle.ones([1, assign.shape[1]], assign.dtype), assign)  # [B, 1, K]
        vlad = vlad - a_sum * self.cluster_weights2.t()  # [B, F, K]
        vlad = vlad * paddle.rsqrt((vlad * vlad).sum(axis=1, keepdim=True) + _L2_EPSILON)
        return self.vlad_bn(vlad.reshape([0, self.output_size]))

    def flops(self, frames: int, formulation: str | None = None) -> dict[str, float]:
        """Matmul FLOPs (2 per multiply-add) of this branch for ``formulation`` (default: the layer's own).

        ``forward`` / ``backward``: per video of ``frames`` frames (padded frames count: they are computed);
        ``step_forward`` / ``step_backward``: once per forward whatever the batch (the factored form's product
        matrices; 0 for the expanded form). Elementwise work (softmax, BatchNorm, L2, masks) is not counted.
        The input needs no gradient, so no backward product with respect to the frames is counted.
        """
        d, e, g, k, f = (
            self.feature_size,
            self.expanded_size,
            self.groups,
            self.cluster_size,
            self.group_feature_size,
        )
        t = float(frames)
        vlad_bias = 2.0 * g * k * f  # [K, G] @ [G, F]
        sums = 2.0 * t * g * k  # ones[1, T] @ assignments[T, G*K]
        if (formulation or self.formulation) == "expanded":
            expansion = 2.0 * t * d * e
            attention = 2.0 * t * e * g
            assignment = 2.0 * t * e * g * k
            vlad = 2.0 * t * e * k  # (T*G) x F x K
            return {
                "forward": expansion + attention + assignment + vlad + sums,
                # the expansion FC's backward is its weight gradient only; the ones-vector sums need the
                # gradient of the assignments only
                "backward": expansion + 2.0 * (attention + assignment + vlad) + sums,
                "step_forward": 0.0,
                "step_backward": 0.0,
            }
        attention = 2.0 * t * d * g
        assignment = 2.0 * t * d * g * k
        pooling = 2.0 * t * d * g * k  # [K*G, T] @ [T, D]
        expand = 2.0 * k * g * d * f  # [K, G*D] @ [G*D, F], once per video
        products = 2.0 * d * e * (g * k + g)  # W_e @ W_c and W_e @ W_a
        products_bias = 2.0 * e * (g * k + g)
        return {
            "forward": attention + assignment + pooling + expand + sums + vlad_bias,
            # the logits' matmuls: the product matrices' gradients only; pooling and sums: the assignments'
            # gradient only (not the frames')
            "backward": attention + assignment + pooling + sums + 2.0 * (expand + vlad_bias),
            "step_forward": products + products_bias,
            "step_backward": 2.0 * (products + products_bias),
        }


_INT8_LAYERS = ("hidden", "gating", "head")


def int8_products(model: nn.Layer) -> Int8Policy:
    """The int8 policy of NeXtVLAD models: every product with a constant matrix becomes int8. The products
    after the pooling (the hidden layer, the SE gating and the classifier: 83 of the reference's 89M
    parameters, named here) and the frame-level assignment, attention and expansion products, whose matrices
    the export derives from the parameters with the BatchNorm folded in (``derived``): at batch 32 those
    frame-level products are most of the FLOPs, so int8 only pays there with them (the products after the
    pooling alone are 8%). The pooling of the frames by their assignments, a product of two activations,
    stays fp32 (``activations`` off): in int8 (static) it was the fastest at batch 32 but cost GAP 0.0022 on a
    trained reference-size NeXtVLAD, beyond the 0.002 goal (the other products: 0.0013; docs/export.md).
    Every BatchNorm, softmax and elementwise operation stays fp32."""
    names = tuple(
        name
        for name, _ in model.named_parameters()
        if name.endswith(".weight") and any(part in _INT8_LAYERS for part in name.split(".")[:-1])
    )
    return Int8Policy(quantize=names, derived=True)


class NeXtVLAD(nn.Layer):
    """NeXtVLAD video classifier (PaddleVideo 1.x ``NEXTVLAD``): ``forward(batch)`` -> logits ``[B, C]``."""

    name = "nextvlad"
    Config = NeXtVLADConfig

    def __init__(self, config: NeXtVLADConfig, spec: DatasetSpec) -> None:
        super().__init__()
        _check_config(config, spec)
        self.config = config
        self.features = dict(spec.features)
        self.branches = nn.LayerDict(
            {
                feature: NeXtVLADLayer(
                    size, config.cluster_size, config.groups, config.expansion, config.formulation
                )
                for feature, size in self.features.items()
            }
        )
        vlad_size = sum(branch.output_size for branch in self.branches.values())
        msra = paddle.ParamAttr(initializer=nn.initializer.KaimingNormal())
        self.dropout = nn.Dropout(config.dropout)
        self.hidden = nn.Linear(vlad_size, config.hidden_size, weight_attr=msra, bias_attr=False)
        self.hidden_bn = nn.BatchNorm1D(config.hidden_size)
        self.gating = SEGating(config.hidden_size, config.gating_reduction)
        self.head = build_head(config.classifier, config.hidden_size, spec.num_classes, config.moe_mixtures)
        # PaddleVideo initialises every FC with MSRA (He) normal weights and zero biases.
        init = nn.initializer.KaimingNormal()
        init(self.gating.squeeze.weight)
        init(self.gating.excite.weight)
        if config.classifier == "logistic":
            init(self.head.fc.weight)
            nn.initializer.Constant(0.0)(self.head.fc.bias)
        if config.eigenvalues is not None:
            branch = self.branches[config.eigenvalues_feature]
            scale = np.sqrt(load_eigenvalues(config.eigenvalues, branch.feature_size)) + _EIGEN_EPSILON
            paddle.assign(paddle.to_tensor(scale.astype(np.float32)), branch.input_scale)

    def forward(self, batch: dict[str, Any]) -> paddle.Tensor:
        mask = batch["mask"]
        vlads = [
            branch(x, mask)
            for branch, x in zip(self.branches.values(), feature_tensors(batch, self.features))
        ]
        x = paddle.concat(vlads, axis=1) if len(vlads) > 1 else vlads[0]
        x = self.hidden_bn(self.hidden(self.dropout(x)))
        return self.head(self.gating(x))

    def int8_policy(self) -> Int8Policy:
        """``zoo export --precision int8``: see :func:`int8_products`."""
        return int8_products(self)

    def custom_ops(self) -> contextlib.AbstractContextManager[None]:
        """Context in which a traced eval forward calls NeXtVLAD's custom operator (the one-pass assignment
        kernel, :mod:`zoo_nextvlad.custom_op`, built on first use) instead of paddle's softmax, sigmoid,
        multiply and transpose: ``zoo export --custom-ops``. Factored branches of at most 1024 clusters only."""
        return custom_assign_ops(self)

    @staticmethod
    def load_custom_ops() -> None:
        """Register the custom operator in this process (before loading an export that calls it)."""
        from zoo_nextvlad.custom_op import load

        load()

    def flops(self, frames: int, batch_size: int = 1, formulation: str | None = None) -> dict[str, float]:
        """Matmul FLOPs per video of ``frames`` frames in a batch of ``batch_size``: forward, backward, train.

        ``formulation`` defaults to the model's own. The factored form's product matrices (formed once per
        forward) are shared by the batch: their FLOPs are divided by ``batch_size``, and also reported per
        step (``step_forward``, ``step_backward``). Counts are linear in ``frames``.
        """
        forward = backward = step_forward = step_backward = 0.0
        for branch in self.branches.values():
            counts = branch.flops(frames, formulation)
            forward += counts["forward"]
            backward += counts["backward"]
            step_forward += counts["step_forward"]
            step_backward += counts["step_backward"]
        layers = [self.hidden, *self.gating.sublayers(), *self.head.sublayers()]
        head = sum(2.0 * math.prod(layer.weight.shape) for layer in layers if isinstance(layer, nn.Linear))
        forward += head + step_forward / batch_size
        backward += 2.0 * head + step_backward / batch_size
        return {
            "forward": forward,
            "backward": backward,
            "train": forward + backward,
            "step_forward": step_forward,
            "step_backward": step_backward,
        }

    @classmethod
    def convert_paddlevideo(
        cls,
        state: dict[str, np.ndarray],
        *,
        dropout: float = 0.5,
        features: tuple[str, str] = ("rgb", "audio"),
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """PaddleVideo 1.x ``NEXTVLAD`` parameters -> (this model's state dict, 1.x keys that were not used).

        ``dropout`` is the rate the weights were trained with (PaddleVideo's drop_rate, 0.5), not ours;
        ``features`` names our features that PaddleVideo called ``video`` and ``audio``. Layouts and the
        two folded values are described in :mod:`zoo_nextvlad.paddlevideo`.
        """
        from zoo_nextvlad.paddlevideo import convert_state

        return convert_state(state, dropout=dropout, rgb=features[0], audio=features[1])

    def to_paddlevideo(self, *, dropout: float = 0.5) -> dict[str, np.ndarray]:
        """This model's weights under PaddleVideo 1.x names (the inverse of :meth:`convert_paddlevideo`)."""
        from zoo_nextvlad.paddlevideo import to_paddlevideo_state

        rgb, audio = self._paddlevideo_features()
        return to_paddlevideo_state(self.state_dict(), dropout=dropout, rgb=rgb, audio=audio)

    def load_paddlevideo(
        self, state: dict[str, np.ndarray], source: str = "PaddleVideo weights"
    ) -> list[str]:
        """Load PaddleVideo 1.x weights into this model; returns the 1.x keys it did not use.

        The model's two features (in ``spec.features`` order) take PaddleVideo's ``video`` and ``audio``
        branches. Every parameter and BatchNorm statistic must be provided with the right shape, else a
        :class:`DataError` names the key (and ``source``) and says which config would fit.
        """
        mapped, unused = type(self).convert_paddlevideo(state, features=self._paddlevideo_features(source))
        own = self.state_dict()
        missing = [key for key in own if key not in mapped]
        if missing:
            raise DataError(
                f"{source}: no value for {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''} "
                f"({len(missing)} of {len(own)} tensors); PaddleVideo 1.x NeXtVLAD has rgb ('video_*') and "
                f"audio branches and a logistic head: use features {{rgb: 1024, audio: 128}} and "
                f"classifier: logistic"
            )
        for key, value in own.items():
            if tuple(mapped[key].shape) != tuple(value.shape):
                raise DataError(
                    f"{source}: {key} has shape {list(mapped[key].shape)}, this model needs "
                    f"{list(value.shape)}; "
                    f"set the model options (cluster_size, groups, expansion, hidden_size, num_classes) to "
                    f"those the weights were trained with"
                )
        self.set_state_dict({key: mapped[key] for key in own})
        return unused

    def _paddlevideo_features(self, source: str = "PaddleVideo 1.x") -> tuple[str, str]:
        if len(self.features) != 2:
            raise DataError(
                f"{source}: PaddleVideo 1.x NeXtVLAD has two branches (video, audio); this model has "
                f"{len(self.features)} features ({', '.join(self.features)})"
            )
        rgb, audio = self.features
        return rgb, audio


_EXPORT_NAMES = (
    "_export_assign_weight",
    "_export_assign_bias",
    "_export_attention_weight",
    "_export_attention_bias",
    "_export_w_groups",
    "_export_bias_groups",
)


@contextlib.contextmanager
def _export_constants(layer: NeXtVLADLayer):
    if layer.training or layer.formulation != "factored":
        yield
        return
    with paddle.no_grad():
        products = [t.detach().clone() for t in layer._products()]
    for name, value in zip(_EXPORT_NAMES, products):
        layer.register_buffer(name, value, persistable=True)  # saved by jit.save, read as a constant
    layer._export_products = tuple(getattr(layer, name) for name in _EXPORT_NAMES)
    try:
        yield
    finally:
        layer._export_products = None
        for name in _EXPORT_NAMES:
            layer._buffers.pop(name, None)


@contextlib.contextmanager
def custom_assign_ops(model: nn.Layer):
    """While tracing ``model`` (NeXtVLAD, MixNeXtVLAD), its NeXtVLAD layers call the custom operator."""
    branches = [layer for layer in model.sublayers() if isinstance(layer, NeXtVLADLayer)]
    if any(b.formulation != "factored" for b in branches):
        raise ConfigError(
            "custom operators: NeXtVLAD's run in the factored formulation only (model.formulation)"
        )
    if any(b.cluster_size > FUSED_MAX_CLUSTERS for b in branches):
        raise ConfigError(
            f"custom operators: NeXtVLAD's take at most {FUSED_MAX_CLUSTERS} clusters (model.cluster_size)"
        )
    from zoo_nextvlad.custom_op import OP_NAME, load

    op = getattr(load(), OP_NAME)
    for branch in branches:
        branch._assign_op = op
    try:
        yield
    finally:
        for branch in branches:
            branch._assign_op = None


def _check_config(config: NeXtVLADConfig, spec: DatasetSpec) -> None:
    for field in ("cluster_size", "groups", "expansion", "hidden_size", "gating_reduction", "moe_mixtures"):
        if getattr(config, field) < 1:
            raise ConfigError(f"model.{field}: must be at least 1, got {getattr(config, field)}")
    check_branches(config, spec, "NeXtVLAD", lambda i: (config.groups, "groups"))


def check_branches(
    config: Any, spec: DatasetSpec, model: str, groups_of: Callable[[int], tuple[int, str]]
) -> None:
    """What NeXtVLAD and MixNeXtVLAD check alike: dropout, gating, the features and their groups, the
    eigenvalues' feature. ``groups_of(i)`` is the groups of the i-th feature's branch and how to name them."""
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {config.dropout}")
    if config.hidden_size % config.gating_reduction:
        raise ConfigError(
            f"model.gating_reduction: {config.gating_reduction} does not divide "
            f"hidden_size {config.hidden_size}"
        )
    if not spec.features:
        raise ConfigError(f"dataset.features: {model} needs at least one frame feature")
    for i, (feature, size) in enumerate(spec.features.items()):
        if "." in feature:
            raise ConfigError(f"dataset.features: feature name {feature!r} must not contain '.'")
        groups, which = groups_of(i)
        if (config.expansion * size) % groups:
            raise ConfigError(
                f"model.groups: {which} = {groups} does not divide expansion*size = {config.expansion}*{size} "
                f"of feature {feature!r}; pick groups that divide {config.expansion * size}"
            )
    if config.eigenvalues is not None and config.eigenvalues_feature not in spec.features:
        raise ConfigError(
            f"model.eigenvalues_feature: {config.eigenvalues_feature!r} is not one of the dataset features "
            f"({', '.join(spec.features)})"
        )


EIGENVALUES_URL = (
    "https://raw.githubusercontent.com/linrongc/youtube-8m/4810b4e7763c9aa2430ee0cc45b86ad72faecc7b/"
    "yt8m_pca/eigenvals.npy#sha256=ad0d08dd2cb7981cbb0b9e532b0297fb6c720c233ba2e6b4420b56228eab4100"
)
"""The YouTube-8M PCA eigenvalues as the NeXtVLAD author's repository publishes them (the ``eigenvals.npy``
of Google's ``yt8m_pca.tgz``, 8,272 bytes), pinned to a commit and a SHA-256."""


def fetch_pinned(url: str) -> str:
    """The local copy of ``url`` (``https://...#sha256=HEX``): downloaded once into the cache, bounded and
    verified; a URL without its SHA-256 is refused (a config must say which bytes it means)."""
    import hashlib
    import urllib.parse

    from zoo.atomic import atomic_path
    from zoo.fetch import Limits, PermanentError, retrying, sha256_file, transfer
    from zoo.paths import cache_dir

    base, _, fragment = url.partition("#")
    expected = fragment[len("sha256=") :].lower() if fragment.startswith("sha256=") else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ConfigError(
            f"model.eigenvalues: {url}: a URL must end in #sha256=<64 hex digits> (the file's SHA-256), "
            f"for example {EIGENVALUES_URL}"
        )
    name = os.path.basename(urllib.parse.urlsplit(base).path) or "download"
    target = cache_dir("eigenvalues", hashlib.sha256(base.encode()).hexdigest()[:16]) / name
    if target.is_file() and sha256_file(target) == expected:
        return str(target)

    def attempt() -> None:
        with atomic_path(target) as tmp:
            transfer(base, tmp, limits=Limits(max_bytes=64 << 20), label=f"downloading {name}", quiet=True)
            actual = sha256_file(tmp)
            if actual != expected:
                raise DataError(f"{base}: SHA-256 {actual} does not match the pinned {expected}; not kept")

    try:
        retrying(attempt, retries=2, backoff=1.0)
    except (PermanentError, OSError, ValueError) as exc:
        raise DataError(
            f"model.eigenvalues: could not download {base} ({exc}); download it where you can and give its "
            f"path (-o model.eigenvalues=/path/to/eigenvals.npy), or -o model.eigenvalues=null to skip "
            f"reverse whitening"
        ) from None
    return str(target)


def load_eigenvalues(path: str | os.PathLike, size: int) -> np.ndarray:
    """The first ``size`` PCA eigenvalues from ``path`` (an ``.npy`` of shape [n] or [n, 1], n >= size), or
    from an ``https://...#sha256=HEX`` URL (fetched once, verified; see :func:`fetch_pinned`)."""
    where = os.fspath(path)
    if where.startswith(("https://", "http://")):
        where = fetch_pinned(where)
    hint = "use eigenvals.npy from the YouTube-8M PCA archive yt8m_pca.tgz (float32, shape [2048, 1])"
    if not os.path.isfile(where):
        raise ConfigError(
            f"model.eigenvalues: {where} does not exist; {hint}, or set model.eigenvalues: null to skip "
            f"reverse whitening"
        )
    try:
        values = np.load(where, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: not a numpy .npy array ({exc}); {hint}") from None
    shape = tuple(values.shape)
    if values.ndim == 2 and shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or values.shape[0] < size or not np.issubdtype(values.dtype, np.number):
        raise DataError(
            f"{where}: eigenvalues have shape {list(shape)} and dtype {values.dtype}; reverse whitening of a "
            f"{size}-dim feature needs a numeric array of shape [n] or [n, 1] with n >= {size}; {hint}"
        )
    values = values[:size].astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise DataError(
            f"{where}: eigenvalue {bad[0]} is {values[bad[0]]} (eigenvalues must be finite and >= 0); {hint}"
        )
    return values
