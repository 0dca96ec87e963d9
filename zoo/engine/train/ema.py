"""``train.ema_decay``: an exponential moving average of the weights, kept beside the trained ones.

The average covers the whole ``state_dict`` (parameters and BatchNorm running statistics), so evaluating it
needs no extra pass to re-estimate statistics. Early on the decay is capped at ``(1 + n) / (10 + n)`` after
``n`` updates (as TensorFlow's ``ExponentialMovingAverage(num_updates=...)``): a plain 0.999 average of a
short run would still be mostly the random initialisation. The update runs in float32 with paddle ops on the
training device and is a pure function of the weights and the update count, so a run resumed from a
checkpoint (which stores both) continues it bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import ZooError

EMA_FILE = "ema.safetensors"


def _is_float(tensor: Any) -> bool:
    return "float" in str(tensor.dtype)


class WeightAverage:
    """The moving average of ``model``'s state, started from its current weights."""

    def __init__(self, model: Any, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {name: t.detach().clone() for name, t in model.state_dict().items()}

    def decay_now(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    def update(self, model: Any) -> None:
        """Fold the model's current weights in (after each optimizer step)."""
        import paddle

        self.updates += 1
        d = self.decay_now()
        with paddle.no_grad():
            for name, t in model.state_dict().items():
                live = t.detach()
                if _is_float(live):
                    self.shadow[name] = self.shadow[name] * d + live * (1.0 - d)
                else:  # integer counters, if a layer keeps any: the live value
                    self.shadow[name] = live.clone()

    @contextlib.contextmanager
    def applied(self, model: Any) -> Iterator[None]:
        """The model holds the averaged weights inside the block and its own (restored exactly) after it."""
        live = {name: t.detach().clone() for name, t in model.state_dict().items()}
        model.set_state_dict(self.shadow)
        try:
            yield
        finally:
            model.set_state_dict(live)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(t.numpy()) for name, t in self.shadow.items()}

    def load(self, path: Path, updates: int) -> None:
        """Restore the average saved in checkpoint file ``path`` after ``updates`` updates."""
        import paddle
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise ZooError(
                f"{path}: the weight average cannot be read ({exc}); resume from another checkpoint"
            ) from None
        own = {name: tuple(t.shape) for name, t in self.shadow.items()}
        if set(arrays) != set(own) or any(tuple(arrays[k].shape) != own[k] for k in own):
            raise ZooError(
                f"{path}: the weight average does not fit the model (tensor names or shapes differ); "
                f"resume with the config saved in the run directory"
            )
        self.shadow = {name: paddle.to_tensor(value) for name, value in arrays.items()}
        self.updates = updates
