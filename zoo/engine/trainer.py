"""The training loop: Adam with L2 decay, example-counted step decay, gradient clipping, validation,
atomic checkpoints and exact resume.

Randomness is re-derived from (seed, step) before every step and the data order from (seed, epoch), so a
resumed run draws the same dropout masks and batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_write_text
from zoo.config import ZooConfig
from zoo.engine import checkpoint, distributed, rundir
from zoo.engine.history import History
from zoo.engine.loop import batches_for, bce_loss, evaluate, to_tensors
from zoo.engine.optim import build_optimizer
from zoo.engine.progress import Progress
from zoo.engine.schedule import learning_rate_at
from zoo.engine.setup import build_model, build_reader, count_parameters, split_paths
from zoo.engine.weights import apply_weights, read_weights
from zoo.errors import ZooError


class TrainingDiverged(ZooError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs: int
    examples: int
    seconds: float
    train_videos_per_s: float
    parameters: int
    last_valid: dict[str, float] = field(default_factory=dict)


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 12345) % (2**31 - 1)


class Trainer:
    def __init__(
        self,
        cfg: ZooConfig,
        *,
        run_dir: str | Path | None = None,
        ctx: distributed.DistContext | None = None,
        progress: bool = True,
        log: Any = None,
        overwrite: bool = False,
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx or distributed.DistContext()
        self.run_dir = Path(run_dir or cfg.train.save_dir)
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        t = cfg.train
        if t.batch_size % self.ctx.world_size:
            raise ZooError(
                f"train.batch_size {t.batch_size} is not divisible by the {self.ctx.world_size} devices"
            )
        self.per_device_batch = t.batch_size // self.ctx.world_size
        self.overwrite = overwrite
        self.epoch_loss = (0.0, 0.0)  # (loss x examples, examples) of the epoch so far; saved in checkpoints

    # ---------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        import paddle

        t = self.cfg.train
        paddle.seed(t.seed)
        np.random.seed(t.seed % (2**32))
        self.model = build_model(self.cfg)
        self.parameters = count_parameters(self.model)
        self.optimizer = build_optimizer(self.model, t)
        self.train_model = self.model
        if self.ctx.distributed:
            self.train_model = paddle.DataParallel(self.model)

    def _state(self, step: int, epoch: int, batch_in_epoch: int, examples: int) -> dict[str, Any]:
        return {
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "examples_seen": examples,
            "model": self.cfg.model_name,
            "seed": self.cfg.train.seed,
            "world_size": self.ctx.world_size,
            "epoch_loss": list(self.epoch_loss),
        }

    def _save(self, step: int, epoch: int, batch_in_epoch: int, examples: int) -> None:
        if self.ctx.is_main:
            checkpoint.save_checkpoint(
                self.run_dir, self.model, self.optimizer, self._state(step, epoch, batch_in_epoch, examples)
            )

    # ---------------------------------------------------------------------------------------------------
    def fit(
        self, *, resume: bool = False, pretrain: str | None = None, allow_changes: tuple[str, ...] = ()
    ) -> TrainResult:
        import paddle

        # run directory: lock, resume config check, absolute data paths (zoo/engine/rundir.py)
        cfg, self.run_lock = rundir.open_run(
            self.run_dir,
            self.cfg,
            resume=resume,
            allow_changes=allow_changes,
            is_main=self.ctx.is_main,
            log=self.log,
        )
        self.cfg, t = cfg, cfg.train
        if not t.fix_random_seed:
            seed = distributed.broadcast_object(
                int(time.time_ns() % (2**31 - 1)), self.ctx
            )  # one seed per job
            cfg = self.cfg = dataclasses.replace(
                cfg, train=dataclasses.replace(t, seed=seed, fix_random_seed=True)
            )
            t = cfg.train
            self.log(f"fix_random_seed is false: this run uses seed {seed}")
        if not resume and checkpoint.latest_checkpoint(self.run_dir) is not None:
            if not self.overwrite:
                raise ZooError(
                    f"{self.run_dir} already holds checkpoints of a run: continue it with --resume, "
                    f"start over with --overwrite, or choose another --save_dir"
                )
            if self.ctx.is_main:
                checkpoint.clear_run(self.run_dir)
        self._build()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.ctx.is_main and not resume:  # on resume, rundir.open_run keeps the run's config
            atomic_write_text(self.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1))
        step = epoch = batch_in_epoch = examples = 0
        history = History(self.run_dir, enabled=self.ctx.is_main)
        if resume:
            latest = checkpoint.checkpoint_to_resume(self.run_dir, self.log)
            if latest is None:
                raise ZooError(
                    f"--resume: no checkpoint in {self.run_dir} (train.save_dir); start without --resume"
                )
            state = checkpoint.load_checkpoint(latest, self.model, self.optimizer)
            saved_world = int(state.get("world_size", 1))
            if saved_world != self.ctx.world_size:
                raise ZooError(
                    f"--resume: {latest} was written by a job of {saved_world} process(es); resume it "
                    f"with {saved_world} (the position in the epoch depends on how the data was "
                    f"split), not {self.ctx.world_size}"
                )
            step, epoch = state["step"], state["epoch"]
            batch_in_epoch, examples = state["batch_in_epoch"], state["examples_seen"]
            self.epoch_loss = tuple(state.get("epoch_loss", (0.0, 0.0))) if batch_in_epoch else (0.0, 0.0)
            rundir.check_work_left(epoch, step, t, latest)
            history.load_existing(up_to_step=step)
            self.log(f"resumed from {latest}: step {step}, epoch {epoch + 1}, batch {batch_in_epoch}")
        elif pretrain:
            report = apply_weights(self.model, read_weights(pretrain), strict=False)
            self.log(f"pretrained weights from {pretrain}: {report.summary()}")
        train_reader = build_reader(cfg, "train")
        rundir.check_training_data(train_reader)
        valid_reader = build_reader(cfg, "valid") if split_paths(cfg, "valid") else None
        start = time.perf_counter()
        trained_examples = 0
        last_valid: dict[str, float] = {}
        done = step >= t.max_iter
        lr = learning_rate_at(examples, t.learning_rate, t.lr_boundary_examples, t.learning_rate_decay)
        while epoch < t.epoch and not done:
            self.train_model.train()
            bar = Progress(
                f"epoch {epoch + 1}/{t.epoch}",
                unit="step",
                enabled=self.progress and self.ctx.is_main,
                log_interval=5.0,
            )
            # resumed mid-epoch: the sums go on from the checkpoint's, so train_loss covers the whole epoch
            loss_sum, n_sum = self.epoch_loss if batch_in_epoch else (0.0, 0.0)
            n_resumed = n_sum
            epoch_start = time.perf_counter()
            it = iter(
                batches_for(
                    train_reader,
                    cfg,
                    batch_size=self.per_device_batch,
                    shuffle=True,
                    epoch=epoch,
                    ctx=self.ctx,
                    skip_batches=batch_in_epoch,
                )
            )
            filler: dict[str, Any] | None = None
            while True:
                # Ranks may hold different numbers of batches (shards differ in size): a rank whose data ran
                # out takes part with a zero-weight step on a filler batch (its running statistics restored),
                # so every record is used once per epoch and the epoch ends when the last rank runs out.
                batch = next(it, None)
                n_local = 0 if batch is None else len(batch["ids"])
                if batch is None and not self.ctx.distributed:
                    break
                saved_state = None
                if batch is None:
                    batch = filler or distributed.filler_batch(cfg.dataset.features, cfg.dataset.num_classes)
                    saved_state = distributed.snapshot_state(self.model)
                else:
                    filler = batch
                lr = learning_rate_at(
                    examples, t.learning_rate, t.lr_boundary_examples, t.learning_rate_decay
                )
                self.optimizer.set_lr(lr)
                paddle.seed(step_seed(t.seed, step) + self.ctx.rank)
                labels = paddle.to_tensor(batch["labels"])
                loss = bce_loss(self.train_model(to_tensors(batch, cfg.dataset.features)), labels)
                n_global, loss_total = distributed.all_sum(
                    [n_local, float(loss) * n_local if n_local else 0.0], self.ctx
                )
                if n_global == 0:
                    distributed.restore_state(self.model, saved_state)
                    break
                value = (
                    loss_total / n_global if self.ctx.distributed else float(loss)
                )  # the global batch's loss
                if not math.isfinite(value):
                    latest = checkpoint.latest_checkpoint(self.run_dir)
                    raise TrainingDiverged(
                        f"the training loss became {value} at step {step + 1} (epoch {epoch + 1}); stopped before "
                        f"updating the weights. The last good checkpoint is "
                        f"{latest if latest else 'none (none was written yet)'}. Lower train.learning_rate, "
                        f"check train.gradient_clip_norm, or check the data for bad values"
                    )
                if self.ctx.distributed:
                    # DataParallel averages gradients over ranks: weighting each rank's mean loss by its share
                    # of the global batch makes that average the global batch's mean gradient.
                    loss = loss * (n_local * self.ctx.world_size / n_global)
                loss.backward()
                self.optimizer.step()
                self.optimizer.clear_grad()
                distributed.restore_state(self.model, saved_state)
                n = int(n_global)
                step += 1
                batch_in_epoch += 1
                examples += n
                trained_examples += n
                loss_sum += value * n
                n_sum += n
                self.epoch_loss = (loss_sum, n_sum)
                speed = (n_sum - n_resumed) / max(time.perf_counter() - epoch_start, 1e-9)
                bar.update(1, loss=value, lr=lr, videos_per_s=round(speed, 1))
                if t.log_interval and step % t.log_interval == 0:
                    history.log_step(
                        step=step,
                        epoch=epoch + 1,
                        loss=value,
                        lr=lr,
                        examples=examples,
                        time=round(time.time(), 3),
                    )
                if t.checkpoint_steps and step % t.checkpoint_steps == 0:
                    self._save(step, epoch, batch_in_epoch, examples)
                if step >= t.max_iter:
                    done = True
                    break
            bar.close(loss=loss_sum / max(n_sum, 1))
            completed = not done  # the data ran out rather than max_iter
            if completed:
                epoch += 1
                batch_in_epoch = 0
                self.epoch_loss = (0.0, 0.0)
            row: dict[str, Any] = {
                "epoch": epoch if completed else epoch + 1,
                "step": step,
                "examples": examples,
                "train_loss": loss_sum / max(n_sum, 1),
                "lr": lr,
                "train_videos_per_s": (n_sum - n_resumed) / max(time.perf_counter() - epoch_start, 1e-9),
            }
            if valid_reader is not None and t.valid_interval and (epoch % t.valid_interval == 0 or done):
                distributed.broadcast_state(self.model, self.ctx)  # evaluate the model rank 0 saves
                metrics, _ = evaluate(
                    self.model, valid_reader, cfg, ctx=self.ctx, desc="validate", progress=self.progress
                )
                last_valid = metrics
                row.update({f"valid_{k}": v for k, v in metrics.items()})
                if self.ctx.is_main:
                    self.log(
                        "validation: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
                    )
            history.log_epoch(row)
            self._save(step, epoch, batch_in_epoch, examples)
        seconds = time.perf_counter() - start
        if self.ctx.is_main:
            checkpoint.save_weights(
                self.run_dir / checkpoint.WEIGHTS_FILE, self.model, metadata={"model": cfg.model_name}
            )
            history.plot()
        if self.run_lock is not None:
            self.run_lock.release()
        return TrainResult(
            self.run_dir,
            step,
            epoch,
            examples,
            seconds,
            trained_examples / max(seconds, 1e-9),
            self.parameters,
            last_valid,
        )
