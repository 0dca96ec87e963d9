"""PaddleVideo's attention models for YouTube-8M: AttentionCluster and AttentionLSTM.

Both pool each modality with attention over frames, concatenate the modalities and classify them with a
small fully connected stack and a logistic layer. The attention softmaxes run over real frames only.
Initialisers, dropout scaling and which biases escape weight decay follow PaddleVideo 1.x (PaddlePaddle/models
``PaddleCV/video/models/attention_{cluster,lstm}``); docs/baselines.md lists each choice and the departures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import paddle
from paddle import nn

from zoo.config import DatasetSpec
from zoo.nn import FrameModelOptions, LogisticHead, build_head, check_frame_options
from zoo_baselines.common import (
    MLP,
    check_fraction,
    check_hidden,
    check_positive,
    frame_counts,
    frame_mask,
    init_classifier_prior,
    input_features,
    l2_normalize,
    masked_softmax,
    normal_init,
)

Activation = Literal["relu", "relu6", "tanh", "sigmoid"]
DropoutMode = Literal["downscale_in_infer", "upscale_in_train"]


def msra_normal() -> paddle.ParamAttr:
    """fluid's MSRA(uniform=False): N(0, sqrt(2 / fan_in)); for a bias vector fan_in is its length."""
    return paddle.ParamAttr(initializer=nn.initializer.KaimingNormal())


def msra_uniform() -> paddle.ParamAttr:
    """fluid's MSRA() (uniform by default): U(+-sqrt(6 / fan_in)); for a bias vector fan_in is its length."""
    return paddle.ParamAttr(initializer=nn.initializer.KaimingUniform())


def xavier_uniform() -> paddle.ParamAttr:
    """fluid's default weight initialiser (Xavier, uniform): U(+-sqrt(6 / (fan_in + fan_out)))."""
    return paddle.ParamAttr(initializer=nn.initializer.XavierUniform())


def zero_bias_no_decay() -> paddle.ParamAttr:
    """AttentionLSTM's biases: ParamAttr(regularizer=L2Decay(0.0), initializer=Normal(scale=0.0))."""
    return paddle.ParamAttr(
        initializer=nn.initializer.Constant(0.0), regularizer=paddle.regularizer.L2Decay(0.0)
    )


class ShiftingAttention(nn.Layer):
    """``clusters`` independent attention poolings of one modality, each shifted and L2-normalised.

    Each attention unit weighs the frames with its own softmax (over real frames), scales and shifts the
    weighted sum by two learned scalars and L2-normalises it; the units are concatenated and divided by
    sqrt(clusters), so the output ``[B, clusters * D]`` has unit norm.
    """

    def __init__(self, dim: int, clusters: int) -> None:
        super().__init__()
        self.dim = dim
        self.clusters = clusters
        # PaddleVideo: a 1x1 conv, weight MSRA normal, bias MSRA uniform (fan = clusters)
        self.scores = nn.Linear(dim, clusters, weight_attr=msra_normal(), bias_attr=msra_uniform())
        std = math.sqrt(1.0 / math.sqrt(clusters))  # PaddleVideo's "glorot" for the shift scalars
        self.shift_w = self.create_parameter([clusters, 1], attr=normal_init(std))
        self.shift_b = self.create_parameter([clusters, 1], attr=normal_init(std))

    @property
    def out_dim(self) -> int:
        return self.clusters * self.dim

    def forward(self, x: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        weights = masked_softmax(self.scores(x), mask)  # [B, T, C]
        pooled = paddle.matmul(weights, x, transpose_x=True)  # [B, C, D]
        shifted = l2_normalize(pooled * self.shift_w + self.shift_b, axis=-1)
        return shifted.reshape([-1, self.out_dim]) / math.sqrt(self.clusters)


@dataclass
class AttentionClusterConfig(FrameModelOptions):
    """Options of AttentionCluster; defaults are PaddleVideo's configs/attention_cluster.yaml."""

    cluster_num: int = 32
    """Attention units per modality (PaddleVideo: cluster_nums [32, 32])."""
    dropout: float = 0.5
    """Dropout on the concatenated attention outputs (PaddleVideo: drop_rate)."""
    dropout_mode: DropoutMode = "upscale_in_train"
    """Where dropout rescales: "downscale_in_infer" (fluid's default, PaddleVideo 1.x; what
    configs/attention-cluster.yaml sets) keeps the surviving values as they are while training and multiplies
    by (1 - dropout) in evaluation; "upscale_in_train" (paddle 2's default) divides by (1 - dropout) while
    training. Weights trained with one mode need it; the default is the mode of runs whose config.json
    predates this option."""
    hidden_sizes: list[int] = field(default_factory=lambda: [1024, 4096])
    """Fully connected layers between the attention outputs and the classifier (PaddleVideo: fc1, fc2)."""
    hidden_activations: list[Activation] = field(default_factory=lambda: ["tanh", "tanh"])
    """Activation of each hidden layer (PaddleVideo: tanh, tanh)."""
    classifier: Literal["logistic", "moe"] = "logistic"
    """Classifier on the last hidden layer (PaddleVideo: logistic)."""
    moe_mixtures: int = 2
    """Experts per class when classifier is "moe"."""
    classifier_prior: float = 0.0
    """Initial probability of every class, set through the classifier's biases (0: the reference's MSRA-normal
    biases, std sqrt(2 / num_classes), p ~ 0.5).
    About 3 / num_classes (YouTube-8M videos have ~3 labels) spares deep heads a long plateau spent learning
    the class priors; the sample sections use it."""


class AttentionCluster(nn.Layer):
    """Shifting attention clusters per modality -> dropout -> FC tanh stack -> logistic."""

    name = "attention-cluster"
    Config = AttentionClusterConfig

    def __init__(self, config: AttentionClusterConfig, spec: DatasetSpec) -> None:
        super().__init__()
        check_positive(config, ["cluster_num", "hidden_sizes", "moe_mixtures"], self.name)
        check_fraction(config.dropout, "dropout", self.name)
        check_hidden(config.hidden_sizes, config.hidden_activations, self.name)
        check_frame_options(config, self.name)
        self.config = config
        self.features = dict(spec.features)
        self.attention = nn.LayerList(
            [ShiftingAttention(d, config.cluster_num) for d in self.features.values()]
        )
        self.dropout = nn.Dropout(config.dropout, mode=config.dropout_mode)
        self.mlp = MLP(
            sum(a.out_dim for a in self.attention),
            config.hidden_sizes,
            config.hidden_activations,
            weight_attr=msra_normal,
            bias_attr=msra_uniform,
        )
        self.head = build_head(config.classifier, self.mlp.out_dim, spec.num_classes, config.moe_mixtures)
        if isinstance(self.head, LogisticHead):  # PaddleVideo's LogisticModel: MSRA-normal weights and biases
            for p in (self.head.fc.weight, self.head.fc.bias):
                nn.initializer.KaimingNormal()(p)
        init_classifier_prior(self.head, config.classifier_prior, self.name)

    def forward(self, batch: dict) -> paddle.Tensor:
        mask = frame_mask(batch)
        xs = input_features(batch, self.features, self.config.input_norm)
        outs = [att(x, mask) for x, att in zip(xs, self.attention)]
        h = self.dropout(paddle.concat(outs, axis=-1) if len(outs) > 1 else outs[0])
        return self.head(self.mlp(h))


class LSTMAttention(nn.Layer):
    """One modality: FC tanh embedding -> bidirectional LSTM -> dropout -> attention-weighted sum over frames."""

    def __init__(
        self, dim: int, embedding_size: int, lstm_size: int, dropout: float, dropout_mode: str
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(
            dim, embedding_size, weight_attr=xavier_uniform(), bias_attr=zero_bias_no_decay()
        )
        # PaddleVideo: per direction an fc to 4H gate inputs (Xavier, zero bias without decay) and dynamic_lstm's
        # hidden weights (Xavier) and bias (zero, decayed): paddle's weight_ih/bias_ih and weight_hh/bias_hh
        self.lstm = nn.LSTM(
            embedding_size,
            lstm_size,
            direction="bidirect",
            weight_ih_attr=xavier_uniform(),
            weight_hh_attr=xavier_uniform(),
            bias_ih_attr=zero_bias_no_decay(),
            bias_hh_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)),
        )
        self.dropout = nn.Dropout(dropout, mode=dropout_mode)
        self.score = nn.Linear(2 * lstm_size, 1, weight_attr=xavier_uniform(), bias_attr=zero_bias_no_decay())
        self.out_dim = 2 * lstm_size

    def forward(self, x: paddle.Tensor, mask: paddle.Tensor, lengths: paddle.Tensor) -> paddle.Tensor:
        # sequence_length makes the backward direction start at each video's last real frame
        h, _ = self.lstm(paddle.tanh(self.embed(x)), sequence_length=lengths)  # [B, T, 2H]
        h = self.dropout(h)
        weights = masked_softmax(self.score(h), mask)  # [B, T, 1]
        return (h * weights).sum(axis=1)


@dataclass
class AttentionLSTMConfig(FrameModelOptions):
    """Options of AttentionLSTM; defaults are PaddleVideo's configs/attention_lstm.yaml and model code."""

    embedding_size: int = 512
    """Size of the per-frame tanh embedding that feeds the LSTM (PaddleVideo: embedding_size)."""
    lstm_size: int = 1024
    """Hidden units of each LSTM direction (PaddleVideo: lstm_size)."""
    dropout: float = 0.5
    """Dropout on the LSTM outputs before the attention (PaddleVideo: drop_rate)."""
    dropout_mode: DropoutMode = "upscale_in_train"
    """Where dropout rescales (see AttentionClusterConfig.dropout_mode); configs/attention-lstm.yaml sets
    fluid's "downscale_in_infer" (PaddleVideo 1.x)."""
    hidden_sizes: list[int] = field(default_factory=lambda: [8192, 4096])
    """Fully connected layers between the pooled modalities and the classifier (PaddleVideo: 8192, 4096)."""
    hidden_activations: list[Activation] = field(default_factory=lambda: ["relu", "tanh"])
    """Activation of each hidden layer (PaddleVideo: relu, tanh)."""
    classifier: Literal["logistic", "moe"] = "logistic"
    """Classifier on the last hidden layer (PaddleVideo: logistic)."""
    moe_mixtures: int = 2
    """Experts per class when classifier is "moe"."""
    classifier_prior: float = 0.0
    """Initial probability of every class, set through the classifier's biases (0: the reference's zero biases).
    About 3 / num_classes (YouTube-8M videos have ~3 labels) spares deep heads a long plateau spent learning
    the class priors; the sample sections use it."""


class AttentionLSTM(nn.Layer):
    """Bidirectional LSTM + attention pooling per modality -> FC stack -> logistic."""

    name = "attention-lstm"
    Config = AttentionLSTMConfig

    def __init__(self, config: AttentionLSTMConfig, spec: DatasetSpec) -> None:
        super().__init__()
        check_positive(config, ["embedding_size", "lstm_size", "hidden_sizes", "moe_mixtures"], self.name)
        check_fraction(config.dropout, "dropout", self.name)
        check_hidden(config.hidden_sizes, config.hidden_activations, self.name)
        check_frame_options(config, self.name)
        self.config = config
        self.features = dict(spec.features)
        self.branches = nn.LayerList(
            [
                LSTMAttention(d, config.embedding_size, config.lstm_size, config.dropout, config.dropout_mode)
                for d in self.features.values()
            ]
        )
        self.mlp = MLP(
            sum(b.out_dim for b in self.branches),
            config.hidden_sizes,
            config.hidden_activations,
            weight_attr=xavier_uniform,
            bias_attr=zero_bias_no_decay,
        )
        self.head = build_head(config.classifier, self.mlp.out_dim, spec.num_classes, config.moe_mixtures)
        if isinstance(self.head, LogisticHead):  # PaddleVideo's logit fc: Xavier weights, zero bias, no decay
            nn.initializer.XavierUniform()(self.head.fc.weight)
            self.head.fc.bias.regularizer = paddle.regularizer.L2Decay(0.0)
        init_classifier_prior(self.head, config.classifier_prior, self.name)

    def forward(self, batch: dict) -> paddle.Tensor:
        mask = frame_mask(batch)
        lengths = frame_counts(mask)
        xs = input_features(batch, self.features, self.config.input_norm)
        outs = [branch(x, mask, lengths) for x, branch in zip(xs, self.branches)]
        return self.head(self.mlp(paddle.concat(outs, axis=-1) if len(outs) > 1 else outs[0]))
