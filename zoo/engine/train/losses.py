"""The training loss: the model's own or the engine's sigmoid cross-entropy, and the distillation term."""

from __future__ import annotations

from typing import Any

from zoo.engine.feed import bce_loss, logits_of, unwrap


def training_loss(
    model: Any,
    outputs: Any,
    inputs: dict[str, Any],
    labels: Any,
    label_mask: Any = None,
    distill: Any = None,
    soft_targets: Any = None,
) -> Any:
    """The model's own loss when it defines one (:class:`zoo.contracts.ModelWithLoss`), else the YouTube-8M
    sigmoid cross-entropy on the logits. ``model`` may be wrapped in ``paddle.DataParallel``. ``label_mask``
    ``[B, C]`` (segment training: only rated classes count) reaches either loss.

    With ``distill`` (``train.distill``) and the batch's teacher probabilities ``soft_targets`` [B, C], the
    loss is ``(1 - weight) * that loss + weight * T**2 * distill_loss(logits, soft_targets, T)``."""
    from zoo.contracts import ModelWithLoss

    core = unwrap(model)
    if isinstance(core, ModelWithLoss):
        extra = {} if label_mask is None else {"label_mask": label_mask}
        loss = core.loss(outputs, {**inputs, "labels": labels, **extra})
    else:
        loss = bce_loss(logits_of(outputs), labels, label_mask)
    if soft_targets is None:
        return loss
    t = distill.temperature
    soft = distill_loss(logits_of(outputs), soft_targets, t)
    return (1.0 - distill.weight) * loss + (distill.weight * t * t) * soft


def distill_loss(logits: Any, teacher_probs: Any, temperature: float) -> Any:
    """Soft-target loss: sigmoid cross-entropy of ``logits / T`` against the teacher's probabilities softened
    the same way (``sigmoid(logit(p) / T)``, p clipped to [1e-7, 1 - 1e-7]), summed over classes, mean over
    the batch. The ``T**2`` factor that keeps gradients comparable across temperatures is the caller's."""
    import paddle
    import paddle.nn.functional as F

    p = paddle.clip(teacher_probs.astype("float32"), 1e-7, 1.0 - 1e-7)
    target = F.sigmoid((paddle.log(p) - paddle.log1p(-p)) / temperature)
    return bce_loss(logits.astype("float32") / temperature, target)
