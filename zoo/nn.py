"""Building blocks shared by the model plugins: classifier heads, gating, masked pooling and BatchNorm.

Padded frames carry ``mask == 0``; everything here that reduces over frames ignores them, so a video's
output does not depend on how much padding its batch needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from zoo.errors import ConfigError

_EPS = 1e-7
_L2_FLOOR = 1e-12  # TensorFlow's l2_normalize: x * rsqrt(max(sum(x^2), 1e-12))


@dataclass
class FrameModelOptions:
    """Recipe options any frame-level model can inherit into its ``Config``: input normalisation and BatchNorm.

    The defaults change nothing (raw features, paddle's BatchNorm settings); configs that follow the starter
    code set ``input_norm: l2``, ``bn_momentum: 0.999`` and ``bn_epsilon: 0.001`` (its train.py and slim).
    """

    input_norm: Literal["none", "l2"] = "none"
    """Normalise each real frame before the model sees it: "l2" divides the frame's concatenated features by
    their joint L2 norm (the starter's train.py and WILLOW's); "none" feeds the features as read."""
    bn_momentum: float = 0.9
    """BatchNorm running-average momentum: running = m * running + (1 - m) * batch (slim's decay: 0.999)."""
    bn_epsilon: float = 1e-5
    """BatchNorm epsilon added to the variance (paddle: 1e-5, slim: 0.001)."""


def check_frame_options(options: FrameModelOptions, model: str) -> None:
    """Reject BatchNorm settings outside their meaningful range, naming the model and the option."""
    if not 0.0 <= options.bn_momentum < 1.0:
        raise ConfigError(
            f"model {model!r}: model.bn_momentum must be in [0, 1), got {options.bn_momentum!r}"
        )
    if not options.bn_epsilon > 0.0:
        raise ConfigError(f"model {model!r}: model.bn_epsilon must be positive, got {options.bn_epsilon!r}")


def normalize_frames(
    features: list[paddle.Tensor], mask: paddle.Tensor, mode: str = "none"
) -> list[paddle.Tensor]:
    """``features`` (each ``[B, T, D_i]``) with every real frame scaled to unit joint L2 norm (``mode="l2"``).

    The norm runs over the frame's concatenated features, as the starter normalises its single input tensor,
    so a model that keeps one branch per feature sees the same numbers as one that concatenates them. Padded
    frames come back as zeros whatever they held (the starter's padding is zeros and stays zeros).
    """
    if mode == "none":
        return features
    if mode != "l2":
        raise ConfigError(f"model.input_norm must be 'none' or 'l2', got {mode!r}")
    squares = features[0].square().sum(axis=-1)
    for x in features[1:]:
        squares = squares + x.square().sum(axis=-1)
    scale = (paddle.rsqrt(squares.clip(min=_L2_FLOOR)) * mask).unsqueeze(-1)  # [B, T, 1]
    return [x * scale for x in features]


def feature_tensors(batch: dict, features: dict[str, int]) -> list[paddle.Tensor]:
    """The frame features of ``batch`` in the order of ``spec.features`` (each ``[B, T, D]``)."""
    return [batch[name] for name in features]


def masked_mean(x: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
    """Mean over frames of ``x [B, T, D]`` counting only frames with ``mask [B, T] == 1``."""
    m = mask.unsqueeze(-1)
    return (x * m).sum(axis=1) / m.sum(axis=1).clip(min=1.0)


def masked_max(x: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
    """Max over valid frames of ``x [B, T, D]`` (padding never wins).

    Picks the winning frame with argmax and gathers it: the gradient reaches that frame only, and on CPU this
    trains ~10x faster than ``Tensor.max``, whose backward pass dominated a DBoF step.
    """
    m = mask.unsqueeze(-1)
    winner = (x * m + (m - 1.0) * 1e9).detach().argmax(axis=1, keepdim=True)  # [B, 1, D]
    return paddle.take_along_axis(x, winner, axis=1).squeeze(1)


class MaskedBatchNorm(nn.Layer):
    """BatchNorm over the last axis whose batch statistics come from valid rows only.

    ``x`` is ``[..., F]`` and ``mask`` has the leading shape of ``x`` (1 = valid). In eval mode it uses the
    running statistics, like ``paddle.nn.BatchNorm1D``; parameter names match it (weight, bias, _mean,
    _variance) so weights convert between the two. Output rows at padded positions carry no meaning (zeros
    while training); mask them downstream like any padding.
    """

    def __init__(self, num_features: int, momentum: float = 0.9, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.weight = self.create_parameter([num_features], default_initializer=nn.initializer.Constant(1.0))
        self.bias = self.create_parameter([num_features], is_bias=True)
        self.register_buffer("_mean", paddle.zeros([num_features]))
        self.register_buffer("_variance", paddle.ones([num_features]))

    def forward(
        self, x: paddle.Tensor, mask: paddle.Tensor | None = None, offset: paddle.Tensor | None = None
    ) -> paddle.Tensor:
        """BatchNorm of ``x + offset`` (``offset [F]``, a per-channel constant such as a bias) without the
        ``[..., F]`` pass that adds it: training-mode normalisation subtracts the batch mean, which cancels it
        exactly, so it only enters the running mean (as its batch mean would have) and the eval-mode shift."""
        if not self.training:
            scale = self.weight * paddle.rsqrt(self._variance + self.epsilon)
            mean = self._mean if offset is None else self._mean - offset
            return x * scale + (self.bias - mean * scale)
        flat = x.reshape([-1, self.num_features])
        if mask is None:
            out = self._batch_norm(flat).reshape(x.shape)
        else:
            # Only the valid rows go through paddle's fused BatchNorm (its statistics and running averages are
            # those of the valid rows, exactly); padded rows come back as zeros. About 5x faster on CPU than
            # masked reductions written with elementwise ops, whose broadcasting gradients are slow.
            rows = paddle.nonzero(mask.reshape([-1]) > 0.5).squeeze(-1)
            if rows.shape[0] == flat.shape[0]:  # no padding (full-length batches): the same, without copies
                out = self._batch_norm(flat).reshape(x.shape)
            else:
                normed = self._batch_norm(paddle.gather(flat, rows))
                out = paddle.scatter(paddle.zeros_like(flat), rows, normed).reshape(x.shape)
        if offset is not None:
            with paddle.no_grad():
                self._mean.set_value(self._mean + (1.0 - self.momentum) * offset.detach())
        return out

    def _batch_norm(self, rows: paddle.Tensor) -> paddle.Tensor:
        """Training-mode BatchNorm of ``rows [N, F]``: biased batch variance, running stats updated in place."""
        return F.batch_norm(
            rows,
            self._mean,
            self._variance,
            weight=self.weight,
            bias=self.bias,
            training=True,
            momentum=self.momentum,
            epsilon=self.epsilon,
        )


class SEGating(nn.Layer):
    """Squeeze-and-excitation context gating (NeXtVLAD): x * sigmoid(FC(ReLU(BN(FC(x)))))."""

    def __init__(self, dim: int, reduction: int, momentum: float = 0.9, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.squeeze = nn.Linear(dim, dim // reduction, bias_attr=False)
        self.bn = nn.BatchNorm1D(dim // reduction, momentum=momentum, epsilon=epsilon)
        self.excite = nn.Linear(dim // reduction, dim, bias_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gates = F.sigmoid(self.excite(F.relu(self.bn(self.squeeze(x)))))
        return x * gates


class ContextGating(nn.Layer):
    """WILLOW context gating: x * sigmoid(BN(W x))."""

    def __init__(self, dim: int, momentum: float = 0.9, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias_attr=False)
        self.bn = nn.BatchNorm1D(dim, momentum=momentum, epsilon=epsilon)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * F.sigmoid(self.bn(self.fc(x)))


class ClassifierHead(nn.Layer):
    """Base of the classifier heads: says which weights ``train.l2_scope: classifier`` penalises.

    The starter code and WILLOW put their L2 penalty on the classifier's weight matrices only (slim's
    ``weights_regularizer``; biases are never penalised). A model's own head class derives from this and
    lists its weights; :func:`classifier_weights` finds them in any model.
    """

    penalize_bias: bool = False
    """Set (on the class or one head) when the reference penalises the head's biases too (linrongc's
    LogisticModel: slim ``weights_regularizer`` and ``biases_regularizer``)."""

    def penalized_weights(self) -> list[paddle.Tensor]:
        """The parameters the reference's L2 penalty covers: the weight matrices, and the biases only with
        ``penalize_bias``."""
        return [p for name, p in self.named_parameters() if self.penalize_bias or not name.endswith("bias")]


def classifier_weights(model: nn.Layer) -> list[paddle.Tensor]:
    """Every :class:`ClassifierHead`'s penalised weights in ``model`` (empty if it has no such head)."""
    out: list[paddle.Tensor] = []
    seen: set[int] = set()
    for layer in [model, *model.sublayers()]:
        if isinstance(layer, ClassifierHead):
            for p in layer.penalized_weights():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


class LogisticHead(ClassifierHead):
    """One linear layer to class logits (the starter code's LogisticModel)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(x)


class MoEHead(ClassifierHead):
    """Mixture of logistic experts (the starter code's MoeModel), returned as logits of the mixed probability.

    p = sum_m softmax(gates)_m * sigmoid(expert_m), with a dummy "none" expert as in the reference;
    the output is log(p) - log(1 - p), so the sigmoid cross-entropy on it is the cross-entropy on p.
    """

    def __init__(self, in_dim: int, num_classes: int, num_mixtures: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_mixtures = num_mixtures
        self.gates = nn.Linear(in_dim, num_classes * (num_mixtures + 1))
        self.experts = nn.Linear(in_dim, num_classes * num_mixtures)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        m = self.num_mixtures
        gates = F.softmax(self.gates(x).reshape([-1, self.num_classes, m + 1]), axis=-1)
        experts = F.sigmoid(self.experts(x).reshape([-1, self.num_classes, m]))
        p = (gates[:, :, :m] * experts).sum(axis=-1).clip(_EPS, 1.0 - _EPS)
        return paddle.log(p) - paddle.log1p(-p)


HEADS = {"logistic": LogisticHead, "moe": MoEHead}


def build_head(kind: str, in_dim: int, num_classes: int, moe_mixtures: int = 2) -> nn.Layer:
    """``"logistic"`` or ``"moe"`` (with ``moe_mixtures`` experts)."""
    if kind == "logistic":
        return LogisticHead(in_dim, num_classes)
    if kind == "moe":
        return MoEHead(in_dim, num_classes, moe_mixtures)
    raise ValueError(f"unknown classifier head {kind!r}; expected one of {', '.join(HEADS)}")


_cpu_threads: int | None = None


def set_cpu_threads(count: int) -> None:
    """Record how many CPU threads paddle was given (:func:`zoo.engine.runtime.init_paddle` calls this), so
    the model plugins' own C kernels use as many and no more."""
    global _cpu_threads
    _cpu_threads = max(1, int(count))


def cpu_threads() -> int:
    """The CPU threads paddle was given, or 1 (paddle's own default) when nobody said."""
    return _cpu_threads or 1


def cpu_array(t: paddle.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor's memory, for C kernels (a copy only if the tensor is not contiguous, so
    writes reach the tensor only when it is)."""
    return np.from_dlpack(t.detach().contiguous())
