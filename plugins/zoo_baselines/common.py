"""Pieces the baseline models share beyond zoo.nn: feature handling, masked attention, frame sampling.

Every function here takes the frame mask (``[B, T]``, 1 = real frame) so that padding never reaches an
output: padded frames are multiplied by zero in sums, pushed to -1e9 before a softmax over frames, and left
out of BatchNorm statistics and LSTM steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import paddle
import paddle.nn.functional as F
from paddle import nn

from zoo.errors import ConfigError
from zoo.nn import FrameModelOptions, LogisticHead, MoEHead, normalize_frames

_EPS = 1e-7
_NEG = -1e9


@dataclass
class StarterRecipeOptions(FrameModelOptions):
    """:class:`zoo.nn.FrameModelOptions` with the starter code's values as defaults (WILLOW's are the same).

    The starter's train.py L2-normalises every frame before any model sees it, and slim's BatchNorm keeps
    its running averages with decay 0.999 and adds epsilon 0.001 to the variance.
    """

    input_norm: Literal["none", "l2"] = "l2"
    """Normalise each real frame before the model sees it: "l2" (the starter's train.py) divides the frame's
    concatenated features by their joint L2 norm; "none" feeds the features as read."""
    bn_momentum: float = 0.999
    """BatchNorm running-average momentum: running = m * running + (1 - m) * batch (slim's decay 0.999)."""
    bn_epsilon: float = 0.001
    """BatchNorm epsilon added to the variance (slim's 0.001; paddle's default is 1e-5)."""


def check_positive(config: object, names: Iterable[str], model: str, minimum: int = 1) -> None:
    """Reject sizes below ``minimum`` with a message naming the model and the option."""
    for name in names:
        value = getattr(config, name)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        if any(v < minimum for v in values):
            what = "positive" if minimum == 1 else f"at least {minimum}"
            raise ConfigError(f"model {model!r}: model.{name} must be {what}, got {value!r}")


def check_fraction(value: float, name: str, model: str) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"model {model!r}: model.{name} must be in [0, 1), got {value!r}")


def init_classifier_prior(head: nn.Layer, prior: float, model: str, option: float | None = None) -> None:
    """Set the biases of a zoo.nn head so that every class starts at probability ``prior`` (0: leave them).

    LogisticHead: bias = logit(prior). MoEHead: with zero gate biases each of the M experts gets weight
    1 / (M + 1) beside the dummy expert, so the expert biases are logit(prior * (M + 1) / M).
    """
    value = prior if option is None else option
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"model {model!r}: model.classifier_prior must be in [0, 1), got {value!r}")
    if prior == 0.0:
        return
    if isinstance(head, LogisticHead):
        bias, p = head.fc.bias, prior
    elif isinstance(head, MoEHead):
        bias, p = head.experts.bias, min(prior * (head.num_mixtures + 1) / head.num_mixtures, 0.999)
    else:
        raise ConfigError(f"model {model!r}: model.classifier_prior needs a logistic or moe classifier")
    bias.set_value(paddle.full(bias.shape, math.log(p / (1.0 - p)), dtype=bias.dtype))


def per_feature(sizes: dict[str, int], features: dict[str, int], name: str, model: str) -> dict[str, int]:
    """``sizes`` checked against the dataset's feature names (a missing or unknown name is a ConfigError)."""
    missing = [f for f in features if f not in sizes]
    unknown = [f for f in sizes if f not in features]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"no entry for {', '.join(missing)}")
        if unknown:
            parts.append(f"entries for {', '.join(unknown)} which the dataset does not have")
        raise ConfigError(
            f"model {model!r}: model.{name} has {' and '.join(parts)}; give one value per dataset feature "
            f"({', '.join(features)}), e.g. -o model.{name}.{next(iter(features))}=64"
        )
    return {f: sizes[f] for f in features}


def check_hidden(sizes: Sequence[int], activations: Sequence[str], model: str) -> None:
    if len(sizes) != len(activations):
        raise ConfigError(
            f"model {model!r}: model.hidden_sizes ({len(sizes)} layers) and model.hidden_activations "
            f"({len(activations)} entries) must have the same length"
        )


def frame_mask(batch: dict) -> paddle.Tensor:
    """The ``[B, T]`` float mask of real frames."""
    return batch["mask"]


def input_features(batch: dict, features: dict[str, int], input_norm: str) -> list[paddle.Tensor]:
    """The frame features in ``features`` order, normalised per ``model.input_norm`` (zoo.nn.normalize_frames)."""
    return normalize_frames([batch[name] for name in features], frame_mask(batch), input_norm)


def concat_features(batch: dict, features: dict[str, int], input_norm: str = "none") -> paddle.Tensor:
    """All frame features side by side, ``[B, T, sum(D)]`` (the starter code's single input tensor)."""
    tensors = input_features(batch, features, input_norm)
    return tensors[0] if len(tensors) == 1 else paddle.concat(tensors, axis=-1)


def frame_counts(mask: paddle.Tensor) -> paddle.Tensor:
    """Real frames per video as int64 ``[B]`` (taken from the mask, the one source of truth for padding)."""
    return mask.sum(axis=1).astype("int64")


def masked_softmax(scores: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
    """Softmax over frames (axis 1) of ``scores [B, T, ...]`` in which padded frames get exactly zero weight."""
    m = mask
    for _ in range(scores.ndim - 2):
        m = m.unsqueeze(-1)
    weights = F.softmax(scores + (1.0 - m) * _NEG, axis=1)
    return weights * m


def l2_normalize(x: paddle.Tensor, axis: int = -1) -> paddle.Tensor:
    return F.normalize(x, p=2, axis=axis, epsilon=1e-12)


def sample_frames(
    features: list[paddle.Tensor], mask: paddle.Tensor, count: int
) -> tuple[list[paddle.Tensor], paddle.Tensor]:
    """Draw ``count`` real frames per video uniformly with replacement (the starter's SampleRandomFrames).

    Returns the sampled features ``[B, count, D]`` and an all-ones mask: every drawn index is below the
    video's frame count, so padding can never be drawn.
    """
    n = mask.sum(axis=1, keepdim=True)  # [B, 1]
    u = paddle.rand([mask.shape[0], count], dtype=mask.dtype)
    index = paddle.minimum(paddle.floor(u * n), n - 1.0).astype("int64")  # [B, count]
    out = []
    for x in features:
        idx = index.unsqueeze(-1).expand([index.shape[0], count, x.shape[-1]])
        out.append(paddle.take_along_axis(x, idx, axis=1))
    return out, paddle.ones([mask.shape[0], count], dtype=mask.dtype)


def normal_init(std: float) -> paddle.ParamAttr:
    return paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, std))


class ProbabilityGating(nn.Layer):
    """WILLOW's gated MoE output ("moe_prob_gating"): class probabilities re-weighted by their context.

    p = sigmoid(logits); p' = p * sigmoid(BN(p W)) with W ``[C, C]`` (no bias), so each class score can be
    damped by the scores of the classes it co-occurs with. Returns the logits of p', like zoo.nn.MoEHead.
    """

    def __init__(self, num_classes: int, momentum: float = 0.9, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.fc = nn.Linear(
            num_classes, num_classes, weight_attr=normal_init(1.0 / math.sqrt(num_classes)), bias_attr=False
        )
        self.bn = nn.BatchNorm1D(num_classes, momentum=momentum, epsilon=epsilon)

    def forward(self, logits: paddle.Tensor) -> paddle.Tensor:
        p = F.sigmoid(logits)
        gated = (p * F.sigmoid(self.bn(self.fc(p)))).clip(_EPS, 1.0 - _EPS)
        return paddle.log(gated) - paddle.log1p(-gated)


ACTIVATIONS = {"relu": F.relu, "relu6": F.relu6, "tanh": paddle.tanh, "sigmoid": F.sigmoid}


class MLP(nn.Layer):
    """Fully connected layers with the given activations (the attention models' FC stack before the head).

    ``weight_attr`` / ``bias_attr`` make one ``ParamAttr`` per layer (None: paddle's defaults), so that each
    model can start its FC stack the way its reference does.
    """

    def __init__(
        self,
        in_dim: int,
        sizes: Sequence[int],
        activations: Sequence[str],
        weight_attr: Callable[[], paddle.ParamAttr] | None = None,
        bias_attr: Callable[[], paddle.ParamAttr] | None = None,
    ) -> None:
        super().__init__()
        layers = []
        for size in sizes:
            layers.append(
                nn.Linear(
                    in_dim,
                    size,
                    weight_attr=weight_attr() if weight_attr else None,
                    bias_attr=bias_attr() if bias_attr else None,
                )
            )
            in_dim = size
        self.layers = nn.LayerList(layers)
        self.activations = list(activations)
        self.out_dim = in_dim

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for layer, act in zip(self.layers, self.activations):
            x = ACTIVATIONS[act](layer(x))
        return x
