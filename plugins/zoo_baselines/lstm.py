"""Stacked LSTM over the frames (the starter code's LstmModel).

The concatenated frame features run through a stack of LSTMs; the top layer's hidden state after the last
real frame of each video is classified by a mixture of experts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import paddle
from paddle import nn

from zoo.config import DatasetSpec
from zoo.nn import build_head, check_frame_options
from zoo_baselines.common import (
    StarterRecipeOptions,
    check_positive,
    concat_features,
    frame_counts,
    frame_mask,
    init_classifier_prior,
)


def lstm_bias(hidden: int, forget_bias: float) -> paddle.ParamAttr:
    """Zero biases except the forget gate's (paddle's gate order is input, forget, cell, output)."""
    value = np.zeros([4 * hidden], dtype="float32")
    value[hidden : 2 * hidden] = forget_bias
    return paddle.ParamAttr(initializer=nn.initializer.Assign(value))


@dataclass
class LSTMConfig(StarterRecipeOptions):
    """Options of the LSTM model; defaults are the starter code's flags (and its train.py's input norm)."""

    lstm_size: int = 1024
    """Hidden units per LSTM layer (starter: lstm_cells)."""
    lstm_layers: int = 2
    """Stacked LSTM layers (starter: lstm_layers)."""
    forget_bias: float = 1.0
    """Initial forget-gate bias (TensorFlow's BasicLSTMCell default, which the starter uses)."""
    classifier: Literal["logistic", "moe"] = "moe"
    """Classifier on the final hidden state (starter: video_level_classifier_model, MoeModel by default)."""
    moe_mixtures: int = 2
    """Experts per class for the MoE classifier (starter: moe_num_mixtures)."""
    classifier_prior: float = 0.0
    """Initial probability of every class, set through the classifier's biases (0: the reference's zero biases).
    About 3 / num_classes (YouTube-8M videos have ~3 labels) spares deep heads a long plateau spent learning
    the class priors; the sample sections use it."""


class LSTMModel(nn.Layer):
    """Stacked LSTM; the top layer's state at each video's last real frame -> MoE."""

    name = "lstm"
    Config = LSTMConfig

    def __init__(self, config: LSTMConfig, spec: DatasetSpec) -> None:
        super().__init__()
        check_positive(config, ["lstm_size", "lstm_layers", "moe_mixtures"], self.name)
        check_frame_options(config, self.name)
        self.config = config
        self.features = dict(spec.features)
        self.lstm = nn.LSTM(
            sum(self.features.values()),
            config.lstm_size,
            num_layers=config.lstm_layers,
            bias_ih_attr=lstm_bias(config.lstm_size, config.forget_bias),
            bias_hh_attr=lstm_bias(config.lstm_size, 0.0),
        )
        self.head = build_head(config.classifier, config.lstm_size, spec.num_classes, config.moe_mixtures)
        init_classifier_prior(self.head, config.classifier_prior, self.name)

    def forward(self, batch: dict) -> paddle.Tensor:
        x = concat_features(batch, self.features, self.config.input_norm)
        # with sequence_length the LSTM stops at each video's last real frame: padding never enters a state
        _, (h, _) = self.lstm(x, sequence_length=frame_counts(frame_mask(batch)))
        return self.head(h[-1])
