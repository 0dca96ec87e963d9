"""The engine's config sections: ``train`` (with ``train.distill``), ``eval`` and ``predict``.

The core keeps the mechanism (``zoo_register_config_sections``, :func:`zoo.config.sections`) and its own
sections (``dataset``, ``model``, ``data``, ``sample``); the engine registers these dataclasses through it, so
an engine feature adds its keys here without editing the core. Every field has a default and a docstring
(``zoo models`` and the config checker read them); ranges are checked with :func:`zoo.config.bounded`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from zoo.config import bounded
from zoo.errors import ConfigError


@dataclass
class DistillConfig:
    """Distillation from teacher predictions (docs/ensembles.md): the training loss becomes
    ``(1 - weight) * label loss + weight * temperature**2 * soft-target loss``."""

    teachers: list[str] = field(default_factory=list)
    """Prediction files (.jsonl, .csv) or run directories whose (combined) predictions over the training split
    are the soft targets. Empty: no distillation."""
    teacher_weights: list[float] | None = None
    """One weight per teacher for combining them (None: equal weights)."""
    mean: Literal["arithmetic", "geometric"] = "arithmetic"
    """How several teachers' probabilities are combined (as ``zoo ensemble --mean``)."""
    missing: Literal["floor", "zero"] = "floor"
    """A class outside a teacher's top-k counts as its lowest listed probability ("floor") or 0 ("zero")."""
    top_k: int = bounded(20, ge=1)
    """Classes kept per video in the teacher store (run teachers predict this many)."""
    weight: float = bounded(0.5, ge=0)
    """Share of the soft-target loss, 0 .. 1."""
    temperature: float = bounded(1.0, gt=0)
    """Softening of teacher and student: sigmoid(logit / temperature) on both sides."""
    store: str | None = None
    """Directory of the memory-mapped teacher store. None: ``<save_dir>/teacher``."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"train.distill.weight: must be between 0 and 1, got {self.weight!r}")


@dataclass
class TrainConfig:
    """Training recipe; names follow PaddleVideo's configs where they mean the same thing."""

    epoch: int = bounded(6, ge=1)
    """Passes over the training data."""
    max_iter: int = bounded(700000, ge=1)
    """Stop after this many optimizer steps even if epochs remain."""
    batch_size: int = bounded(160, ge=1)
    """Global batch size (split evenly over the devices)."""
    num_gpus: int = bounded(1, ge=1)
    """Devices to train on (``zoo train --gpus`` overrides)."""
    learning_rate: float = bounded(0.0002, gt=0)
    """Initial Adam learning rate."""
    lr_boundary_examples: int = bounded(2000000, ge=1)
    """Multiply the learning rate by ``learning_rate_decay`` every this many training examples."""
    learning_rate_decay: float = bounded(0.8, gt=0)
    """Factor applied at each boundary."""
    l2_penalty: float = bounded(1.0e-5, ge=0)
    """L2 weight decay coefficient."""
    gradient_clip_norm: float = bounded(1.0, ge=0)
    """Clip gradients to this norm (0 disables clipping); ``gradient_clip_mode`` says which norm."""
    gradient_clip_mode: Literal["global", "per_tensor"] = "global"
    """"global": the norm of all gradients together (PaddleVideo); "per_tensor": each parameter's gradient
    separately (the starter code, WILLOW and linrongc's NeXtVLAD)."""
    l2_scope: Literal["all", "classifier"] = "all"
    """Parameters ``l2_penalty`` applies to: "all", or "classifier": the classifier heads' weights only (the
    starter code and WILLOW; see zoo.nn.ClassifierHead)."""
    fused_update: bool = False
    """Opt-in: clip in place and apply the clip factor, the L2 term and Adam in one threaded pass over each
    parameter (zoo's C kernel; the same arithmetic as paddle's, bit for bit where paddle runs its AVX-512 adam
    kernel; ~1.3x per training step, one copy of the gradients less). It overrides private paddle methods, so
    it runs only on the paddle versions it was tested with (zoo.engine.train.optimizer.FUSED_PADDLE_TESTED);
    elsewhere, and where the kernel is not built or a parameter is not float32 on the CPU, paddle's public
    clip, L2 term and adam kernel run. False (the default): paddle's public optimizer API only."""
    seed: int = 0
    """Seed for weights, dropout and shuffling."""
    fix_random_seed: bool = True
    """Make runs reproducible with ``seed`` (False: a fresh seed per run)."""
    log_interval: int = bounded(10, ge=0)
    """Log every this many steps."""
    valid_interval: int = bounded(1, ge=0)
    """Validate every this many epochs (0: never during training)."""
    save_dir: str | None = None
    """Where checkpoints, metrics history and plots are written. None: ``checkpoints/<model name>``."""
    checkpoint_steps: int = bounded(0, ge=0)
    """Also write a checkpoint every this many steps (0: only at the end of each epoch)."""
    callbacks: list[str] = field(default_factory=lambda: ["history"])
    """Training callbacks by name (``zoo plugins`` lists them); ``history`` writes the metrics history."""
    amp: Literal["off", "bf16", "fp16"] = "off"
    """Mixed precision through ``paddle.amp`` (GPU only): matmuls in bfloat16 or float16 with float32 master
    weights (fp16 also scales the loss); BatchNorm, softmax and L2 normalisation stay float32."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Distillation from an ensemble's predictions (``teachers`` empty: off)."""
    ema_decay: float = bounded(0.0, ge=0)
    """Keep an exponential moving average of the weights with this decay (0: off; e.g. 0.999): validation
    uses it, checkpoints store it (``ema.safetensors``) and the run's final ``model.safetensors`` is it."""

    def finish(self, config: Any) -> None:
        """Defaults that depend on other sections (``zoo.config.validate`` calls it): the run directory."""
        if self.save_dir is None:
            self.save_dir = f"checkpoints/{config.model_name}"

    def __post_init__(self) -> None:
        if not self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay: must be below 1 (0 turns it off), got {self.ema_decay!r}")


@dataclass
class EvalConfig:
    """Evaluation (the metric plugin's own options sit beside these keys)."""

    metric: str | None = None
    """Metric plugin name. None: the dataset preset's metric."""
    batch_size: int = bounded(160, ge=1)
    """Validation batch size."""


@dataclass
class PredictConfig:
    """Prediction output."""

    batch_size: int = bounded(1, ge=1)
    """Prediction batch size (the seed's infer batch is 1; larger is faster)."""
    top_k: int = bounded(20, ge=1)
    """Classes reported per video."""
    formats: list[str] = field(default_factory=lambda: ["jsonl"])
    """Prediction file formats to write (``zoo plugins`` lists them)."""
    vocabulary: str | None = None
    """Optional YouTube-8M ``vocabulary.csv`` to name the classes."""
