"""Feeding batches to a model: a split's batches, tensors on the device, the model's logits and the default loss.

What training, evaluation, prediction and export share: :func:`batches_for` builds the data pipeline's
batches of a split, :func:`to_tensors` moves one to the device (dequantizing uint8 frames there if asked),
:func:`logits_of` reads a model's output, :func:`bce_loss` is the loss of a model without its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.config import ZooConfig
from zoo.engine.distributed import context as distributed
from zoo.errors import DataError, ZooError


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
