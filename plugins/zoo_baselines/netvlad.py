"""NetVLAD and NetRVLAD ("lightVLAD") with context gating: the WILLOW team's 2017 winning models.

Per modality: input BN -> soft assignment of each frame to K clusters (FC without bias, BN, softmax) ->
VLAD (sum over frames of assignment x (frame - cluster centre)), intra-normalised per cluster and then
L2-normalised as a whole. NetRVLAD drops the centres (a sum of assigned frames, no residual). The modality
descriptors are concatenated -> hidden FC -> context gating -> MoE -> gating of the class probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import paddle
import paddle.nn.functional as F
from paddle import nn

from zoo.config import DatasetSpec
from zoo.nn import ContextGating, MaskedBatchNorm, build_head, check_frame_options
from zoo_baselines.common import (
    ProbabilityGating,
    StarterRecipeOptions,
    check_positive,
    frame_mask,
    init_classifier_prior,
    input_features,
    l2_normalize,
    normal_init,
    per_feature,
    sample_frames,
)


@dataclass
class NetVLADConfig(StarterRecipeOptions):
    """Options of the NetVLAD / NetRVLAD models; defaults are WILLOW's "Gated NetVLAD (256 clusters)" recipe
    (WILLOW's train.py normalises the input and uses slim's BatchNorm, as the starter code does)."""

    cluster_sizes: dict[str, int] = field(default_factory=lambda: {"rgb": 256, "audio": 128})
    """Clusters per feature (WILLOW: netvlad_cluster_size for rgb, half of it for audio)."""
    hidden_size: int = 1024
    """Units of the hidden layer on the concatenated descriptors (WILLOW: netvlad_hidden_size)."""
    hidden_relu: bool = False
    """True: hidden FC without bias, BatchNorm, ReLU6; False: FC with bias only (WILLOW recipe: netvlad_relu=False)."""
    gating: bool = True
    """Context gating after the hidden layer: x * sigmoid(BN(W x)) (WILLOW: gating)."""
    probability_gating: bool = True
    """Gate the class probabilities by sigmoid(BN(p W)), W [classes, classes] (WILLOW: moe_prob_gating)."""
    sample_frames: int = 0
    """While training, draw this many real frames per video at random (WILLOW: iterations=300); 0 uses every
    frame. Evaluation and prediction always use every frame."""
    classifier: Literal["logistic", "moe"] = "moe"
    """Classifier on the gated hidden layer (WILLOW: video_level_classifier_model=MoeModel)."""
    moe_mixtures: int = 2
    """Experts per class for the MoE classifier (WILLOW: moe_num_mixtures)."""
    classifier_prior: float = 0.0
    """Initial probability of every class, set through the classifier's biases (0: the reference's zero biases).
    About 3 / num_classes (YouTube-8M videos have ~3 labels) spares deep heads a long plateau spent learning
    the class priors; the sample sections use it."""


class VLADPooling(nn.Layer):
    """Soft-assignment VLAD over the real frames of one modality: ``[B, T, D]`` -> ``[B, K * D]``.

    Padded frames get assignment 0 (the softmax over clusters is multiplied by the mask) and are left out of
    the assignment BatchNorm statistics, so they add nothing to the sums.
    """

    def __init__(
        self, dim: int, clusters: int, residual: bool = True, momentum: float = 0.9, epsilon: float = 1e-5
    ) -> None:
        super().__init__()
        self.dim = dim
        self.clusters = clusters
        std = 1 / math.sqrt(dim)  # WILLOW's initialisation of both weight sets
        self.assign = nn.Linear(dim, clusters, weight_attr=normal_init(std), bias_attr=False)
        self.assign_bn = MaskedBatchNorm(clusters, momentum, epsilon)
        self.centers = self.create_parameter([clusters, dim], attr=normal_init(std)) if residual else None

    @property
    def out_dim(self) -> int:
        return self.clusters * self.dim

    def forward(self, x: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        a = F.softmax(self.assign_bn(self.assign(x), mask), axis=-1) * mask.unsqueeze(-1)  # [B, T, K]
        vlad = paddle.matmul(a, x, transpose_x=True)  # [B, K, D]
        if self.centers is not None:
            vlad = vlad - a.sum(axis=1).unsqueeze(-1) * self.centers
        vlad = l2_normalize(vlad, axis=-1)  # intra-normalisation
        return l2_normalize(vlad.reshape([-1, self.out_dim]), axis=-1)


class NetVLAD(nn.Layer):
    """WILLOW gated NetVLAD: VLAD per modality, hidden FC, context gating, MoE, probability gating."""

    name = "netvlad"
    Config = NetVLADConfig
    residual = True

    def __init__(self, config: NetVLADConfig, spec: DatasetSpec) -> None:
        super().__init__()
        check_positive(config, ["cluster_sizes", "hidden_size", "moe_mixtures"], self.name)
        check_positive(config, ["sample_frames"], self.name, minimum=0)
        check_frame_options(config, self.name)
        self.config = config
        self.features = dict(spec.features)
        clusters = per_feature(config.cluster_sizes, self.features, "cluster_sizes", self.name)
        bn = (config.bn_momentum, config.bn_epsilon)
        self.input_bn = nn.LayerList([MaskedBatchNorm(d, *bn) for d in self.features.values()])
        self.vlad = nn.LayerList(
            [VLADPooling(d, clusters[f], self.residual, *bn) for f, d in self.features.items()]
        )
        vlad_dim = sum(v.out_dim for v in self.vlad)
        relu = config.hidden_relu
        # WILLOW initialises the hidden weights with N(0, 1/sqrt(clusters)) (of the rgb cluster count)
        self.hidden = nn.Linear(
            vlad_dim,
            config.hidden_size,
            weight_attr=normal_init(1 / math.sqrt(next(iter(clusters.values())))),
            bias_attr=False if relu else normal_init(0.01),
        )
        self.hidden_bn = nn.BatchNorm1D(config.hidden_size, *bn) if relu else None
        self.gate = ContextGating(config.hidden_size, *bn) if config.gating else None
        self.head = build_head(config.classifier, config.hidden_size, spec.num_classes, config.moe_mixtures)
        self.output_gate = ProbabilityGating(spec.num_classes, *bn) if config.probability_gating else None
        # the output gates start near 0.5 on average, so the head starts at twice the wanted probability
        prior = config.classifier_prior * (2.0 if self.output_gate is not None else 1.0)
        init_classifier_prior(self.head, min(prior, 0.5), self.name, option=config.classifier_prior)

    def forward(self, batch: dict) -> paddle.Tensor:
        xs = input_features(batch, self.features, self.config.input_norm)
        mask = frame_mask(batch)
        if self.training and self.config.sample_frames > 0:
            xs, mask = sample_frames(xs, mask, self.config.sample_frames)
        descriptors = [vlad(bn(x, mask), mask) for x, bn, vlad in zip(xs, self.input_bn, self.vlad)]
        h = self.hidden(paddle.concat(descriptors, axis=-1) if len(descriptors) > 1 else descriptors[0])
        if self.hidden_bn is not None:
            h = F.relu6(self.hidden_bn(h))
        if self.gate is not None:
            h = self.gate(h)
        logits = self.head(h)
        return self.output_gate(logits) if self.output_gate is not None else logits


class NetRVLAD(NetVLAD):
    """WILLOW gated NetRVLAD ("lightVLAD"): NetVLAD without cluster centres (no residuals), fewer parameters."""

    name = "netrvlad"
    residual = False
