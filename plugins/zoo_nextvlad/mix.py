"""MixNeXtVLAD (Lin et al. 2018, the author's best single model): NeXtVLAD branches mixed by a gate and trained
with online (collaborative) distillation, after ``MixNeXtVladModel`` of linrongc/youtube-8m ``nextvlad.py``.

``mix_number`` full NeXtVLAD models see the same frames. A gate turns the mean frame into softmax weights over
the branches, and the mixture's logits are the weighted sum of the branch logits (the author mixes logits, not
probabilities; the prediction is the sigmoid of the mixture). Training makes every branch fit the labels and
follow the mixture: the loss is the cross-entropy of the mixture and of each branch plus ``cl_lambda`` times
the KL divergence from the mixture's softened class distribution to each branch's. The branches share no
weights, so the model costs about ``mix_number`` NeXtVLADs; docs/mix_nextvlad.md lists where it departs from
the author's TensorFlow code and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from zoo.config import DatasetSpec, bounded
from zoo.errors import ConfigError
from zoo.nn import LogisticHead, SEGating, feature_tensors
from zoo_nextvlad.model import (
    NeXtVLAD,
    NeXtVLADLayer,
    check_branches,
    custom_assign_ops,
    int8_products,
    load_eigenvalues,
)

_EIGEN_EPSILON = 1e-4  # the author's train.py: scale = sqrt(eigenvalue) + 1e-4


@dataclass
class MixNeXtVLADConfig:
    """MixNeXtVLAD options; the defaults are the author's final script (train_mix_nextvlad_final_submission)."""

    mix_number: int = bounded(3, ge=1)
    """Number of NeXtVLAD branches mixed by the gate."""
    cluster_size: int = bounded(112, ge=2)
    """Clusters K of the first feature's NeXtVLAD (rgb); every other feature (audio) gets K // 2."""
    groups: int = bounded(8, ge=2)
    """Groups G of the first feature's NeXtVLAD; every other feature gets G // 2."""
    expansion: int = bounded(2, ge=1)
    """Expansion factor of each NeXtVLAD's first FC (D -> expansion*D)."""
    hidden_size: int = bounded(2048, ge=1)
    """Width of each branch's FC after its concatenated VLADs (and of its SE gating)."""
    dropout: float = bounded(0.5, ge=0.0)
    """Dropout rate on each branch's concatenated VLAD descriptors (0 disables)."""
    gating_reduction: int = bounded(16, ge=1)
    """SE context gating bottleneck of each branch: hidden_size -> hidden_size / gating_reduction."""
    cl_temperature: float = bounded(3.0, gt=0.0)
    """Temperature T of the softmax over classes in the distillation term."""
    cl_lambda: float = bounded(9.0, ge=0.0)
    """Weight of the distillation term (0 trains the branches on the labels only)."""
    gate_mean: Literal["valid", "padded"] = "valid"
    """The gate's mean frame: "valid" averages the real frames only; "padded" divides their sum by
    max_frames, as the author's code does (padding counted as zero frames, so short videos get a smaller
    mean)."""
    eigenvalues: str | None = None
    """Path to the YouTube-8M PCA eigenvals.npy (in yt8m_pca.tgz) for reverse whitening; null: none."""
    eigenvalues_feature: str = "rgb"
    """The feature that reverse whitening applies to (first D eigenvalues scale its D dims)."""


class NeXtVLADBranch(nn.Layer):
    """One full NeXtVLAD model of the mixture: features + mask -> class logits ``[B, C]``.

    A NeXtVLAD aggregation per feature (the first with K clusters and G groups, the others with K/2 and G/2
    as the author's audio branch), then dropout -> FC (no bias) -> BatchNorm -> SE gating -> logistic FC.
    """

    def __init__(self, config: MixNeXtVLADConfig, spec: DatasetSpec) -> None:
        super().__init__()
        sizes = list(spec.features.items())
        self.vlads = nn.LayerDict(
            {
                feature: NeXtVLADLayer(size, *_clusters_groups(config, i), config.expansion)
                for i, (feature, size) in enumerate(sizes)
            }
        )
        vlad_size = sum(layer.output_size for layer in self.vlads.values())
        msra = paddle.ParamAttr(initializer=nn.initializer.KaimingNormal())
        self.dropout = nn.Dropout(config.dropout)
        self.hidden = nn.Linear(vlad_size, config.hidden_size, weight_attr=msra, bias_attr=False)
        self.hidden_bn = nn.BatchNorm1D(config.hidden_size)
        self.gating = SEGating(config.hidden_size, config.gating_reduction)
        self.head = LogisticHead(config.hidden_size, spec.num_classes)
        self.head.penalize_bias = True  # the author's LogisticModel regularises its weights and biases
        init = nn.initializer.KaimingNormal()  # the author: variance scaling (He) for every weight
        init(self.gating.squeeze.weight)
        init(self.gating.excite.weight)
        init(self.head.fc.weight)
        nn.initializer.Constant(0.0)(self.head.fc.bias)

    def forward(self, features: list[paddle.Tensor], mask: paddle.Tensor) -> paddle.Tensor:
        vlads = [layer(x, mask) for layer, x in zip(self.vlads.values(), features)]
        x = paddle.concat(vlads, axis=1) if len(vlads) > 1 else vlads[0]
        x = self.hidden_bn(self.hidden(self.dropout(x)))
        return self.head(self.gating(x))


class MixNeXtVLAD(nn.Layer):
    """MixNeXtVLAD: ``forward(batch)`` -> ``{"logits", "branch_logits", "mix_weights"}``; ``loss(outputs, batch)``.

    ``logits`` ``[B, C]`` is the mixture (evaluation, prediction and export use it alone), ``branch_logits``
    the ``mix_number`` branches' ``[B, C]`` logits and ``mix_weights`` the gate's ``[B, mix_number]``.
    """

    name = "mix-nextvlad"
    Config = MixNeXtVLADConfig

    def __init__(self, config: MixNeXtVLADConfig, spec: DatasetSpec) -> None:
        super().__init__()
        _check_config(config, spec)
        self.config = config
        self.features = dict(spec.features)
        self.max_frames = spec.max_frames
        self.branches = nn.LayerList([NeXtVLADBranch(config, spec) for _ in range(config.mix_number)])
        frame_size = sum(self.features.values())
        self.gate_bn = nn.BatchNorm1D(frame_size)
        self.gate = nn.Linear(
            frame_size,
            config.mix_number,
            weight_attr=paddle.ParamAttr(initializer=nn.initializer.KaimingNormal()),
            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
        )
        if config.eigenvalues is not None:
            size = self.features[config.eigenvalues_feature]
            scale = np.sqrt(load_eigenvalues(config.eigenvalues, size)) + _EIGEN_EPSILON
            scale_tensor = paddle.to_tensor(scale.astype(np.float32))
            for branch in self.branches:
                paddle.assign(scale_tensor, branch.vlads[config.eigenvalues_feature].input_scale)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        mask = batch["mask"]
        features = feature_tensors(batch, self.features)
        branch_logits = [branch(features, mask) for branch in self.branches]
        weights = F.softmax(self.gate(self.gate_bn(self._mean_frame(features, mask))), axis=-1)  # [B, M]
        stacked = paddle.stack(branch_logits, axis=1)  # [B, M, C]
        logits = (stacked * weights.unsqueeze(-1)).sum(axis=1)
        return {"logits": logits, "branch_logits": branch_logits, "mix_weights": weights}

    def int8_policy(self) -> Any:
        """``zoo export --precision int8``: every branch's products with constant matrices become int8, as
        NeXtVLAD's (:func:`zoo_nextvlad.model.int8_products`); the mixture's gate stays fp32."""
        return int8_products(self)

    def custom_ops(self) -> Any:
        """``zoo export --custom-ops``: every branch's NeXtVLAD layers call the assignment operator."""
        return custom_assign_ops(self)

    load_custom_ops = staticmethod(NeXtVLAD.load_custom_ops)

    def _mean_frame(self, features: list[paddle.Tensor], mask: paddle.Tensor) -> paddle.Tensor:
        """The gate's input ``[B, sum D]``: mean over frames of the concatenated features.

        Reverse whitening is left out on purpose: it scales each dimension, and the BatchNorm that follows
        undoes any per-dimension scale (the author's gate sees whitened frames; the result is the same).
        """
        x = paddle.concat(features, axis=-1) if len(features) > 1 else features[0]
        total = (x * mask.unsqueeze(-1)).sum(axis=1)
        if self.config.gate_mean == "padded":
            return total / float(self.max_frames)
        return total / mask.sum(axis=1, keepdim=True).clip(min=1.0)

    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> paddle.Tensor:
        """CE(mixture) + sum of CE(branch) + cl_lambda * mean over videos of sum over branches of
        KL(softmax(mixture / T) || softmax(branch / T)).

        CE is the sigmoid cross-entropy summed over classes and averaged over videos. As in the author's
        code, the mixture in the KL term is not detached: the term pulls the branches towards the mixture and
        the mixture (through the gate and every branch) towards the branches.
        """
        labels = batch["labels"]
        logits = outputs["logits"]
        branches = outputs["branch_logits"]
        total = _cross_entropy(logits, labels)
        for branch in branches:
            total = total + _cross_entropy(branch, labels)
        if self.config.cl_lambda == 0:
            return total
        t = self.config.cl_temperature
        log_target = F.log_softmax(logits / t, axis=-1)
        target = paddle.exp(log_target)
        kl = paddle.add_n(
            [(target * (log_target - F.log_softmax(branch / t, axis=-1))).sum(axis=-1) for branch in branches]
        )  # [B]: summed over branches
        return total + self.config.cl_lambda * kl.mean()


def _cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(axis=1).mean()


def _clusters_groups(config: MixNeXtVLADConfig, index: int) -> tuple[int, int]:
    """(K, G) of the ``index``-th feature's NeXtVLAD: the first feature's are the config's, the others half."""
    if index == 0:
        return config.cluster_size, config.groups
    return config.cluster_size // 2, config.groups // 2


def _check_config(config: MixNeXtVLADConfig, spec: DatasetSpec) -> None:
    if config.gate_mean not in ("valid", "padded"):
        raise ConfigError(f"model.gate_mean: must be 'valid' or 'padded', got {config.gate_mean!r}")

    def groups_of(i: int) -> tuple[int, str]:
        which = "groups" if i == 0 else "groups // 2 (the groups of every feature after the first)"
        return _clusters_groups(config, i)[1], which

    check_branches(config, spec, "MixNeXtVLAD", groups_of)
