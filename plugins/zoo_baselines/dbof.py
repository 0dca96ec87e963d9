"""Deep Bag of Frames (the starter code's DbofModel).

Each frame (rgb and audio concatenated) is projected into a wide "cluster" space, the projections are pooled
over frames, and a hidden layer plus a mixture-of-experts head classify the pooled vector:
input BN -> FC (no bias) -> BN -> act -> max/avg over frames -> FC (no bias) -> BN -> act -> MoE, with act the
starter's ``--dbof_activation`` (sigmoid since August 2019, ReLU6 before).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import paddle
import paddle.nn.functional as F
from paddle import nn

from zoo.config import DatasetSpec
from zoo.nn import MaskedBatchNorm, build_head, check_frame_options, masked_max, masked_mean
from zoo_baselines.common import (
    StarterRecipeOptions,
    check_positive,
    concat_features,
    frame_mask,
    init_classifier_prior,
    normal_init,
    sample_frames,
)


@dataclass
class DBoFConfig(StarterRecipeOptions):
    """Options of the DBoF model; defaults are the starter code's flags and its train.py / slim settings."""

    cluster_size: int = 8192
    """Units of the per-frame cluster layer (starter: dbof_cluster_size)."""
    hidden_size: int = 1024
    """Units of the hidden layer after pooling (starter: dbof_hidden_size)."""
    pooling: Literal["max", "average"] = "max"
    """How cluster activations are pooled over real frames (starter: dbof_pooling_method)."""
    batch_norm: bool = True
    """BatchNorm on the input, cluster and hidden layers; False uses biases instead (starter: dbof_add_batch_norm)."""
    sample_frames: int = 30
    """While training, draw this many real frames per video at random, with replacement (the starter's
    ``--iterations 30`` with ``--sample_random_frames``); 0 uses every frame. Evaluation and prediction always
    use every real frame (the starter samples there too, which makes its predictions random)."""
    activation: Literal["sigmoid", "relu6"] = "sigmoid"
    """Non-linearity after the cluster and hidden layers (starter: dbof_activation; sigmoid is its default
    since August 2019, relu6 the earlier starter's)."""
    classifier: Literal["logistic", "moe"] = "moe"
    """Classifier on the hidden layer (starter: video_level_classifier_model, MoeModel by default)."""
    moe_mixtures: int = 2
    """Experts per class for the MoE classifier (starter: moe_num_mixtures)."""
    classifier_prior: float = 0.0
    """Initial probability of every class, set through the classifier's biases (0: the reference's zero biases).
    About 3 / num_classes (YouTube-8M videos have ~3 labels) spares deep heads a long plateau spent learning
    the class priors; the sample sections use it."""


class DBoF(nn.Layer):
    """Deep Bag of Frames: per-frame cluster projection, max pooling over real frames, hidden layer, MoE."""

    name = "dbof"
    Config = DBoFConfig

    def __init__(self, config: DBoFConfig, spec: DatasetSpec) -> None:
        super().__init__()
        check_positive(config, ["cluster_size", "hidden_size", "moe_mixtures"], self.name)
        check_positive(config, ["sample_frames"], self.name, minimum=0)
        check_frame_options(config, self.name)
        self.config = config
        self.features = dict(spec.features)
        dim = sum(self.features.values())
        bn = config.batch_norm
        bn_args = {"momentum": config.bn_momentum, "epsilon": config.bn_epsilon}
        self.input_bn = MaskedBatchNorm(dim, **bn_args) if bn else None
        # the starter's initialisation: N(0, 1/sqrt(fan_in)); biases only where there is no BatchNorm
        self.cluster = nn.Linear(
            dim,
            config.cluster_size,
            weight_attr=normal_init(1 / math.sqrt(dim)),
            bias_attr=False if bn else normal_init(1 / math.sqrt(dim)),
        )
        self.cluster_bn = MaskedBatchNorm(config.cluster_size, **bn_args) if bn else None
        self.hidden = nn.Linear(
            config.cluster_size,
            config.hidden_size,
            weight_attr=normal_init(1 / math.sqrt(config.cluster_size)),
            bias_attr=False if bn else normal_init(0.01),
        )
        self.hidden_bn = nn.BatchNorm1D(config.hidden_size, **bn_args) if bn else None
        self.head = build_head(config.classifier, config.hidden_size, spec.num_classes, config.moe_mixtures)
        init_classifier_prior(self.head, config.classifier_prior, self.name)

    def forward(self, batch: dict) -> paddle.Tensor:
        x = concat_features(batch, self.features, self.config.input_norm)
        mask = frame_mask(batch)
        if self.training and self.config.sample_frames > 0:
            (x,), mask = sample_frames([x], mask, self.config.sample_frames)
        if self.input_bn is not None:
            x = self.input_bn(x, mask)
        h = self.cluster(x)
        if self.cluster_bn is not None:
            h = self.cluster_bn(h, mask)
        act = F.sigmoid if self.config.activation == "sigmoid" else F.relu6
        h = act(h)
        h = masked_max(h, mask) if self.config.pooling == "max" else masked_mean(h, mask)
        h = self.hidden(h)
        if self.hidden_bn is not None:
            h = self.hidden_bn(h)
        return self.head(act(h))
