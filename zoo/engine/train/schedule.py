"""The learning-rate schedule, counted in training examples so it does not change with the device count."""

from __future__ import annotations


def learning_rate_at(examples_seen: int, base: float, boundary_examples: int, decay: float) -> float:
    """``base * decay ** (examples_seen // boundary_examples)`` (PaddleVideo's piecewise decay, per example).

    PaddleVideo 1.x sets the boundaries at multiples of ``lr_boundary_examples // batch_size`` steps; with the
    global batch fixed that is the same, and here it also holds when the batch or the device count changes.
    """
    if boundary_examples <= 0:
        return base
    return base * decay ** (examples_seen // boundary_examples)
