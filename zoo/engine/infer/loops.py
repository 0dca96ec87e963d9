"""Feeding batches to a model: tensors, loss, and the evaluation / prediction passes."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from zoo.config import ZooConfig
from zoo.engine.distributed import context as distributed
from zoo.errors import DataError, ZooError
from zoo.progress import Progress


def to_tensors(batch: dict[str, Any], features: dict[str, int]) -> dict[str, Any]:
    """A batch's model inputs as tensors on the current device.

    Quantized (uint8) features are dequantized there through the batch's ``dequantize`` table (the reader's
    float32 value of each code, so the values equal the host's bit for bit) and their padding zeroed.
    """
    import paddle

    out = {"mask": paddle.to_tensor(batch["mask"]), "num_frames": paddle.to_tensor(batch["num_frames"])}
    table = None
    for name in features:
        value = batch[name]
        if value.dtype != np.uint8:
            out[name] = paddle.to_tensor(value)
            continue
        if table is None:
            if "dequantize" not in batch:
                raise DataError(
                    f"feature {name!r} is quantized (uint8) but the batch has no 'dequantize' table; "
                    f"build batches with zoo.data.batches(..., quantized=True)"
                )
            table = paddle.to_tensor(batch["dequantize"])
        codes = paddle.to_tensor(value)
        values = paddle.gather(table, codes.astype("int32").flatten()).reshape(codes.shape)
        # zero the padding: value * 0 is -0.0 for negative values, and -0.0 + 0.0 is +0.0
        out[name] = values * out["mask"].unsqueeze(-1) + 0.0
    return out


def bce_loss(logits: Any, labels: Any, mask: Any = None) -> Any:
    """Sigmoid cross-entropy summed over classes, mean over the batch (the YouTube-8M loss).

    ``mask`` ``[B, C]`` (the batch's ``label_mask``; None: every class counts) weighs each (example, class)
    term: segment-level training counts only the classes a segment was rated for, as the starter code's
    label weights do.
    """
    import paddle
    import paddle.nn.functional as F

    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if mask is not None:
        loss = loss * (mask if isinstance(mask, paddle.Tensor) else paddle.to_tensor(mask))
    return loss.sum(axis=1).mean()


def unwrap(model: Any) -> Any:
    """The model inside a ``paddle.DataParallel`` wrapper (or the model itself)."""
    return getattr(model, "_layers", model)


def logits_of(outputs: Any) -> Any:
    """The logits of a model's ``forward`` outputs: the tensor itself, or a dict's ``"logits"``."""
    if isinstance(outputs, dict):
        if "logits" not in outputs:
            raise ZooError(
                f"the model's forward returned a dict without 'logits' (keys: {', '.join(map(str, outputs))}); "
                f"a model returning a dict must put its predictions under 'logits'"
            )
        return outputs["logits"]
    return outputs


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


def batches_for(
    reader: Any,
    cfg: ZooConfig,
    *,
    batch_size: int,
    shuffle: bool,
    epoch: int = 0,
    ctx: distributed.DistContext | None = None,
    skip_batches: int = 0,
) -> Any:
    from zoo.data.pipeline import batches

    ctx = ctx or distributed.DistContext()
    return batches(
        reader,
        quantized=dequantize_on_device(cfg),
        threads=cfg.data.collate_threads,
        spec=cfg.dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=cfg.train.seed,
        epoch=epoch,
        rank=ctx.rank,
        world_size=ctx.world_size,
        num_workers=cfg.data.num_workers,
        shuffle_buffer=cfg.data.shuffle_buffer,
        drop_last=False,
        skip_batches=skip_batches,
        bucket_by_length=shuffle and cfg.data.bucket_by_length,
    )


def dequantize_on_device(cfg: ZooConfig) -> bool:
    """``data.dequantize_on_device``, or (None) whether paddle runs on a GPU."""
    if cfg.data.dequantize_on_device is not None:
        return cfg.data.dequantize_on_device
    import paddle

    return paddle.device.get_device().startswith("gpu")


def evaluate(
    model: Any,
    reader: Any,
    cfg: ZooConfig,
    *,
    ctx: distributed.DistContext | None = None,
    desc: str = "eval",
    progress: bool = True,
    refuse_duplicates: bool = False,
) -> tuple[dict[str, float], Any]:
    """One pass over ``reader``: the metric plugin's results (global over every rank) and the metric.

    ``refuse_duplicates``: a video id read twice is an error naming both files (`zoo eval`: the metric would
    count that video twice)."""
    import paddle
    import paddle.nn.functional as F

    from zoo.data.duplicates import DuplicateIds, describe
    from zoo.engine.build import build_metric

    ctx = ctx or distributed.DistContext()
    metric = build_metric(cfg)
    model.eval()
    bar = Progress(desc, unit="video", enabled=progress and ctx.is_main)
    per_rank = max(1, cfg.eval.batch_size // ctx.world_size)
    tracker = DuplicateIds()
    with paddle.no_grad():
        for batch in batches_for(reader, cfg, batch_size=per_rank, shuffle=False, ctx=ctx):
            tracker.add(batch["ids"])
            labels = paddle.to_tensor(batch["labels"])
            logits = logits_of(model(to_tensors(batch, cfg.dataset.features)))
            mask = batch.get("label_mask")  # segment mode: only the rated (segment, class) pairs count
            loss = float(bce_loss(logits, labels, mask))
            metric.update(F.sigmoid(logits).numpy(), batch["labels"], loss=loss, mask=mask)
            bar.update(len(batch["ids"]))
    bar.close()
    if refuse_duplicates and tracker.repeated:
        raise DataError(
            f"the evaluation data is not a set of distinct videos: {describe(tracker, reader)}. The metric "
            f"would count those videos twice: remove the duplicate file(s) from the data"
        )
    if ctx.distributed:
        states = distributed.all_gather_objects(metric.state(), ctx)
        metric.reset()
        metric.merge(states)
    return metric.compute(), metric


def dygraph_scorer(model: Any, features: dict[str, int]) -> Any:
    """``batch -> probabilities [B, C]`` (numpy) for a paddle model in eval mode."""
    import paddle
    import paddle.nn.functional as F

    model.eval()

    def score(batch: dict[str, Any]) -> np.ndarray:
        with paddle.no_grad():
            return F.sigmoid(logits_of(model(to_tensors(batch, features)))).numpy()

    return score


def predict(
    scorer: Any, reader: Any, cfg: ZooConfig, *, top_k: int, batch_size: int, progress: bool = True
) -> list[Any]:
    """Top-k classes and probabilities for every video of ``reader``, in reading order.

    ``scorer`` maps a batch (numpy dict) to probabilities ``[B, C]``: :func:`dygraph_scorer` for a paddle
    model, or an exported model's predictor. A video id read twice is predicted once: the first occurrence
    is kept and the repeats are reported with their files (a prediction file has one row per video).
    """
    from zoo.contracts import Prediction
    from zoo.data.duplicates import DuplicateIds, describe
    from zoo.engine.infer.predictions import top_k as best

    tracker = DuplicateIds()

    out: list[Prediction] = []
    bar = Progress("predict", unit="video", enabled=progress)
    for batch in batches_for(reader, cfg, batch_size=batch_size, shuffle=False):
        classes, scores = best(scorer(batch), top_k)  # ties: lowest class first, as in the metric
        keep = tracker.add(batch["ids"])
        for i, vid in enumerate(batch["ids"]):
            if not keep[i]:
                continue
            out.append(Prediction(str(vid), classes[i].tolist(), scores[i].astype(float).tolist()))
        bar.update(len(batch["ids"]))
    bar.close()
    if tracker.repeated:
        print(
            f"predict: kept the first prediction of each video; {describe(tracker, reader)}", file=sys.stderr
        )
    return out
