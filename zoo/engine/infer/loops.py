"""The evaluation and prediction passes: a model (or any scorer) over a split, metrics merged over the ranks,
top-k predictions per video."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from zoo.config import ZooConfig
from zoo.engine.distributed import context as distributed
from zoo.engine.feed import batches_for, bce_loss, logits_of, to_tensors
from zoo.errors import DataError
from zoo.progress import Progress


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
    from zoo.ranking import top_k as best

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
