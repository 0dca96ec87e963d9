"""Pooling baselines: a masked mean, max or both over frames, then a logistic (or MoE) classifier.

``mean-pool`` is the starter code's FrameLevelLogisticModel: the average of the concatenated frame features
(rgb and audio side by side) fed to one linear layer. The others swap the reduction. They are the floor every
learned aggregation must beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import paddle
from paddle import nn

from zoo.config import DatasetSpec
from zoo.nn import build_head, check_frame_options, masked_max, masked_mean
from zoo_baselines.common import (
    StarterRecipeOptions,
    check_positive,
    concat_features,
    frame_mask,
    init_classifier_prior,
)


@dataclass
class PoolingConfig(StarterRecipeOptions):
    """Options of the pooling baselines (input normalisation as the starter's train.py; they have no BatchNorm)."""

    classifier: Literal["logistic", "moe"] = "logistic"
    """Classifier on the pooled vector: "logistic" (the starter's FrameLevelLogistic) or "moe"."""
    moe_mixtures: int = 2
    """Experts per class when classifier is "moe" (the starter's moe_num_mixtures)."""
    classifier_prior: float = 0.0
    """Initial probability of every class, set through the classifier's biases (0: the reference's zero biases).
    About 3 / num_classes (YouTube-8M videos have ~3 labels) spares deep heads a long plateau spent learning
    the class priors; the sample sections use it."""


class _PoolingModel(nn.Layer):
    Config = PoolingConfig
    pools: tuple[str, ...] = ()

    def __init__(self, config: PoolingConfig, spec: DatasetSpec) -> None:
        super().__init__()
        check_positive(config, ["moe_mixtures"], self.name)
        check_frame_options(config, self.name)
        self.config = config
        self.features = dict(spec.features)
        dim = sum(self.features.values()) * len(self.pools)
        self.head = build_head(config.classifier, dim, spec.num_classes, config.moe_mixtures)
        init_classifier_prior(self.head, config.classifier_prior, self.name)

    def forward(self, batch: dict) -> paddle.Tensor:
        x = concat_features(batch, self.features, self.config.input_norm)
        mask = frame_mask(batch)
        pooled = [masked_mean(x, mask) if p == "mean" else masked_max(x, mask) for p in self.pools]
        return self.head(pooled[0] if len(pooled) == 1 else paddle.concat(pooled, axis=-1))


class MeanPool(_PoolingModel):
    """Mean of the frame features over real frames + logistic classifier (starter FrameLevelLogisticModel)."""

    name = "mean-pool"
    pools = ("mean",)


class MaxPool(_PoolingModel):
    """Element-wise max of the frame features over real frames + logistic classifier."""

    name = "max-pool"
    pools = ("max",)


class MeanMaxPool(_PoolingModel):
    """Mean and max over real frames, concatenated (2 x 1152 dims for YouTube-8M) + logistic classifier."""

    name = "mean-max-pool"
    pools = ("mean", "max")
