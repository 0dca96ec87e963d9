"""The training loop: Adam with L2 decay, example-counted step decay, gradient clipping, validation,
atomic checkpoints and exact resume.

Randomness is re-derived from (seed, step) before every step and the data order from (seed, epoch), so a
resumed run draws the same dropout masks and batches as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
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
from zoo.contracts import TrainingState
from zoo.engine.build import build_model, build_reader, count_parameters, split_paths
from zoo.engine.distributed import context as distributed
from zoo.engine.feed import batches_for, to_tensors
from zoo.engine.infer.loops import evaluate
from zoo.engine.runs import checkpoint, rundir
from zoo.engine.runs.bucket import RunMirror, is_bucket_run, local_run_dir
from zoo.engine.runs.weights import apply_weights, read_weights
from zoo.engine.train.ema import EMA_FILE, WeightAverage
from zoo.engine.train.losses import training_loss
from zoo.engine.train.optimizer import build_optimizer
from zoo.engine.train.schedule import learning_rate_at
from zoo.errors import UsageError, ZooError
from zoo.progress import Progress
from zoo.storage import redact, redact_tree


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
    epoch_steps: int = 0
    """Steps into an unfinished epoch (a run stopped by ``train.max_iter``); 0 when every epoch is whole."""

    def describe_epochs(self) -> str:
        """``3`` or, for a run stopped inside an epoch, ``0 + 12 steps``."""
        return f"{self.epochs} + {self.epoch_steps} steps" if self.epoch_steps else str(self.epochs)


AMP_FP32_OPS = frozenset(
    {"batch_norm", "sync_batch_norm", "softmax", "rsqrt", "sum", "reduce_sum", "p_norm", "squared_l2_norm"}
)
"""Ops kept in float32 under ``train.amp`` (``custom_black_list``): BatchNorm statistics, the softmax over
clusters and the L2 normalisation (sum of squares, rsqrt), whose ranges or sums lose too much in 16 bits."""


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 12345) % (2**31 - 1)


class Trainer:
    """Trains ``cfg``'s model: :meth:`fit` runs setup / resume, then epochs of steps with validation and
    checkpoints, calling the ``train.callbacks`` at each event."""

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
        # train.save_dir in a bucket: the run is written in a local staging copy and mirrored (runs.bucket)
        self.save_url = (
            None if run_dir else (cfg.train.save_dir if is_bucket_run(cfg.train.save_dir) else None)
        )
        self.run_dir = Path(run_dir) if run_dir else local_run_dir(cfg.train.save_dir)
        self.mirror: RunMirror | None = None
        self.shown_dir = redact(self.save_url.rstrip("/")) if self.save_url else str(self.run_dir)
        """The run directory as messages name it (a bucket run: its URL, not the staging copy)."""
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        t = cfg.train
        if t.batch_size % self.ctx.world_size:
            raise ZooError(
                f"train.batch_size {t.batch_size} is not divisible by the {self.ctx.world_size} devices"
            )
        self.per_device_batch = t.batch_size // self.ctx.world_size
        self.overwrite = overwrite
        self.batch_in_epoch = 0
        self.epoch_loss = (0.0, 0.0)  # (loss x examples, examples) of the epoch so far; saved in checkpoints
        self.ids_checked = False  # whether a whole epoch's ids were checked for repeats
        self.done = False
        self.finished: str | None = None  # a resumed run already complete: why (see rundir.check_work_left)
        self.state = TrainingState(self.run_dir, cfg, is_main=self.ctx.is_main)
        self.ema: WeightAverage | None = None

    # -- setup ----------------------------------------------------------------------------------------
    def _fix_seed(self) -> None:
        """``fix_random_seed: false``: draw one seed for the whole job (every rank uses rank 0's)."""
        t = self.cfg.train
        if t.fix_random_seed:
            return
        seed = distributed.broadcast_object(int(time.time_ns() % (2**31 - 1)), self.ctx)
        self.cfg = dataclasses.replace(
            self.cfg, train=dataclasses.replace(t, seed=seed, fix_random_seed=True)
        )
        self.state.config = self.cfg
        self.log(f"fix_random_seed is false: this run uses seed {seed}")

    def _prepare_run_dir(self, resume: bool) -> None:
        if not resume and checkpoint.latest_checkpoint(self.run_dir) is not None:
            if not self.overwrite:
                raise ZooError(
                    f"{self.shown_dir} already holds checkpoints of a run: continue it with --resume, "
                    f"start over with --overwrite, or choose another --save_dir"
                )
            if self.ctx.is_main:
                checkpoint.clear_run(self.run_dir)

    def _check_amp(self) -> None:
        """``train.amp`` needs a GPU: paddle's dygraph autocast leaves CPU ops in float32, so an amp run on
        CPU would silently be a float32 run."""
        import paddle

        amp = self.cfg.train.amp
        if amp != "off" and not paddle.device.get_device().startswith("gpu"):
            raise UsageError(
                f"train.amp={amp}: paddle's dygraph mixed precision does nothing on CPU (the run would "
                f"silently stay float32); train on a GPU or set train.amp=off"
            )

    def _build(self) -> None:
        import paddle

        t = self.cfg.train
        # first: building the store runs the teacher models, and the student's initialisation must not
        # depend on whether the store already existed
        self.teacher = self._teacher_store() if t.distill.teachers else None
        paddle.seed(t.seed)
        np.random.seed(t.seed % (2**32))
        self.model = build_model(self.cfg)
        self.parameters = count_parameters(self.model)
        self.optimizer = build_optimizer(self.model, t, log=self.log)
        self._had_gradient: set[int] = set()  # parameters with a gradient in a step so far
        self.train_model = self.model
        if self.ctx.distributed:
            self.train_model = paddle.DataParallel(self.model)
        # fp16 needs loss scaling; bf16 has float32's range and does not
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**15) if t.amp == "fp16" else None

    def _zero_unreached_gradients(self) -> None:
        """A zero gradient for every parameter that had one in an earlier step of this process but none now:
        paddle's zeroed gradients (``clear_grad()``) kept those in Adam's update (moments decaying, the L2
        term), and freeing the gradients must not change the update."""
        import paddle

        had = self._had_gradient
        for p in self.model.parameters():
            if p.stop_gradient:
                continue
            if p.grad is not None:
                had.add(id(p))
            elif id(p) in had:
                p.grad = paddle.zeros_like(p)

    def _teacher_store(self) -> Any:
        """``train.distill``'s teacher store: built (once) by the main process, then opened by every rank."""
        from zoo.engine.train.distill import open_teacher_store

        if self.ctx.is_main:
            open_teacher_store(self.cfg, log=self.log)
        distributed.broadcast_object(True, self.ctx)  # the other ranks wait for the store
        return open_teacher_store(self.cfg, log=self.log, build=False)

    def _build_callbacks(self) -> list[Any]:
        """The callbacks named in ``train.callbacks``, each built with its own default Config."""
        from zoo.plugins import get_plugins

        registry = get_plugins().registry("callback")
        callbacks = []
        for name in self.cfg.train.callbacks:
            cls: Any = registry.get(name).cls
            callbacks.append(cls(cls.Config(), self.state))
        return callbacks

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self.state, *args)

    def _headline(self) -> str:
        import zoo

        metric = self.cfg.eval.metric
        return zoo.plugin_class("metric", metric).headline if metric else ""

    def _resume(self) -> None:
        latest = checkpoint.checkpoint_to_resume(self.run_dir, self.log)
        if latest is None:
            raise ZooError(
                f"--resume: no checkpoint in {self.shown_dir} (train.save_dir); start without --resume"
            )
        saved = checkpoint.load_checkpoint(latest, self.model, self.optimizer)
        saved_world = int(saved.get("world_size", 1))
        if saved_world != self.ctx.world_size:
            raise ZooError(
                f"--resume: {latest} was written by a job of {saved_world} process(es); resume it "
                f"with {saved_world} (the position in the epoch depends on how the data was "
                f"split), not {self.ctx.world_size}"
            )
        self.state.step, self.state.epoch = saved["step"], saved["epoch"]
        self.batch_in_epoch, self.state.examples = saved["batch_in_epoch"], saved["examples_seen"]
        self.epoch_loss = tuple(saved.get("epoch_loss", (0.0, 0.0))) if self.batch_in_epoch else (0.0, 0.0)
        self.finished = rundir.check_work_left(self.state.epoch, self.state.step, self.cfg.train, latest)
        self._start_average(latest, int(saved.get("ema_updates", 0)))
        self.log(
            f"resumed from {latest}: step {self.state.step}, epoch {self.state.epoch + 1}, "
            f"batch {self.batch_in_epoch}"
        )

    # -- checkpoints ----------------------------------------------------------------------------------
    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "examples_seen": self.state.examples,
            "model": self.cfg.model_name,
            "seed": self.cfg.train.seed,
            "world_size": self.ctx.world_size,
            "epoch_loss": list(self.epoch_loss),
            **({"ema_updates": self.ema.updates} if self.ema else {}),
        }

    def _start_average(self, checkpoint_dir: Path | None = None, updates: int = 0) -> None:
        """``train.ema_decay``: the average from the checkpoint resumed, else from the current weights."""
        if not self.cfg.train.ema_decay:
            return
        self.ema = WeightAverage(self.model, self.cfg.train.ema_decay)
        if checkpoint_dir is not None and (checkpoint_dir / EMA_FILE).is_file():
            self.ema.load(checkpoint_dir / EMA_FILE, updates)
        elif checkpoint_dir is not None:
            self.log(f"{checkpoint_dir} holds no weight average: train.ema_decay starts one from its weights")

    def _save(self) -> None:
        if self.ctx.is_main:
            extra = {EMA_FILE: self.ema.arrays()} if self.ema else None
            checkpoint.save_checkpoint(
                self.run_dir, self.model, self.optimizer, self._checkpoint_state(), extra=extra
            )
            self.publish(wait=False)

    def publish(self, *, wait: bool = True) -> None:
        """A run in a bucket: upload what changed in the staging copy (a new checkpoint's files before the
        ``latest`` pointer naming it, pruned checkpoints deleted after); ``wait=False``: on the mirror's
        thread, training goes on meanwhile. A local run: nothing to do."""
        if self.mirror is not None:
            if wait:
                self.mirror.push()
            else:
                self.mirror.push_in_background()

    # -- the run --------------------------------------------------------------------------------------
    def fit(
        self, *, resume: bool = False, pretrain: str | None = None, allow_changes: tuple[str, ...] = ()
    ) -> TrainResult:
        # the run directory: lock, resume config check, absolute data paths (zoo/engine/runs/rundir.py)
        if self.save_url is not None and self.ctx.is_main:
            self.mirror = RunMirror(self.save_url, self.run_dir, log=self.log)
            if not distributed.in_launched_job():  # a launched job's parent copied the run already
                self.mirror.pull()
        self.cfg, self.run_lock = rundir.open_run(
            self.run_dir,
            self.cfg,
            resume=resume,
            allow_changes=allow_changes,
            is_main=self.ctx.is_main,
            log=self.log,
        )
        self.state.config = self.cfg
        try:
            result = self._fit(resume, pretrain)
            if self.ctx.is_main:
                self.publish()  # the final weights, history and plots
            return result
        except BaseException:
            if self.mirror is not None:  # the checkpoints written before the failure reach the bucket
                with contextlib.suppress(Exception):
                    self.mirror.wait()
            raise
        finally:
            if self.run_lock is not None:
                self.run_lock.release()

    def _fit(self, resume: bool, pretrain: str | None) -> TrainResult:
        self._fix_seed()
        self._check_amp()
        self.callbacks = self._build_callbacks()  # a missing optional package fails before any work
        self._prepare_run_dir(resume)
        self._build()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.ctx.is_main and not resume:  # on resume, rundir.open_run keeps the run's config
            # credentials in a data URL (user:password@, signatures) never reach the run directory
            atomic_write_text(
                self.run_dir / "config.json", json.dumps(redact_tree(self.cfg.to_dict()), indent=1)
            )
        if self.ctx.is_main:
            # a bucket shows the new run (--overwrite's removals, a resume's record) from its start; done
            # here, before any data is read, so that the store's client is set up before training starts
            self.publish()
        if resume:
            self._resume()
        elif pretrain:
            report = apply_weights(self.model, read_weights(pretrain), strict=False)
            self.log(f"pretrained weights from {redact(pretrain)}: {report.summary()}")
        if not resume:
            self._start_average()
        if self.finished is not None:  # a complete run resumed: only its final weights, from the checkpoint
            self._write_final_weights()
            if self.ctx.is_main:
                self.log(
                    f"{self.finished}\nfinished the run: wrote its final weights "
                    f"{self.run_dir / checkpoint.WEIGHTS_FILE} from that checkpoint"
                )
            st = self.state
            return TrainResult(
                self.run_dir,
                st.step,
                st.epoch,
                st.examples,
                seconds=0.0,
                train_videos_per_s=0.0,
                parameters=self.parameters,
                epoch_steps=self.batch_in_epoch,
            )
        self.state.headline = self._headline()
        from zoo.contracts import ModelWithLoss

        if isinstance(self.model, ModelWithLoss) and self.ctx.is_main:
            self.log(
                f"{self.cfg.model_name} trains with its own loss: train_loss in the history and the progress "
                f"line is that loss (docs/models.md), not the sigmoid cross-entropy that valid_loss, test loss "
                f"and other models' train_loss report"
            )
        train_reader = build_reader(self.cfg, "train")
        rundir.check_training_data(train_reader)
        valid_reader = build_reader(self.cfg, "valid") if split_paths(self.cfg, "valid") else None
        if valid_reader is None and self.ctx.is_main:
            self.log(
                "no validation data (data.valid is not set): training without validation; set data.valid "
                "(or a valid/ folder beside train/ with --data) to validate every train.valid_interval epochs"
            )
        self._emit("on_train_start")
        start = time.perf_counter()
        self.trained_examples = 0
        last_valid: dict[str, float] = {}
        t = self.cfg.train
        self.done = self.state.step >= t.max_iter
        self.lr = learning_rate_at(
            self.state.examples, t.learning_rate, t.lr_boundary_examples, t.learning_rate_decay
        )
        while self.state.epoch < t.epoch and not self.done:
            row = self._train_epoch(train_reader)
            if (
                valid_reader is not None
                and t.valid_interval
                and (self.state.epoch % t.valid_interval == 0 or self.done)
            ):
                last_valid = self._validate(valid_reader)
                row.update({f"valid_{k}": v for k, v in last_valid.items()})
            self._emit("on_epoch", row)
            self._save()
        seconds = time.perf_counter() - start
        self._write_final_weights()
        self._emit("on_train_end")
        return TrainResult(
            self.run_dir,
            self.state.step,
            self.state.epoch,
            self.state.examples,
            seconds,
            self.trained_examples / max(seconds, 1e-9),
            self.parameters,
            last_valid,
            self.batch_in_epoch,
        )

    def _write_final_weights(self) -> None:
        if self.ctx.is_main:  # with train.ema_decay the run's final weights are the average
            with self.ema.applied(self.model) if self.ema else contextlib.nullcontext():
                checkpoint.save_weights(
                    self.run_dir / checkpoint.WEIGHTS_FILE,
                    self.model,
                    metadata={"model": self.cfg.model_name, "weights": "ema" if self.ema else "trained"},
                )

    def _train_epoch(self, reader: Any) -> dict[str, Any]:
        """Steps until this rank's data (and every rank's) runs out or ``max_iter``; returns the epoch row."""
        t, st = self.cfg.train, self.state
        self.train_model.train()
        bar = Progress(
            f"epoch {st.epoch + 1}/{t.epoch}",
            unit="step",
            enabled=self.progress and self.ctx.is_main,
            log_interval=5.0,
        )
        # resumed mid-epoch: the sums go on from the checkpoint's, so train_loss covers the whole epoch
        loss_sum, n_sum = self.epoch_loss if self.batch_in_epoch else (0.0, 0.0)
        n_resumed = n_sum
        epoch_start = time.perf_counter()
        it = iter(
            batches_for(
                reader,
                self.cfg,
                batch_size=self.per_device_batch,
                shuffle=True,
                epoch=st.epoch,
                ctx=self.ctx,
                skip_batches=self.batch_in_epoch,
            )
        )
        filler: dict[str, Any] | None = None
        # the ids of the first epoch this process trains, to say whether a video is read twice (copies of a
        # file under two names): about 11 bytes a video, dropped after that epoch
        ids_seen: list[np.ndarray] | None = [] if not (self.ids_checked or self.batch_in_epoch) else None
        while True:
            # Ranks may hold different numbers of batches (shards differ in size): a rank whose data ran
            # out takes part with a zero-weight step on a filler batch (its running statistics restored),
            # so every record is used once per epoch and the epoch ends when the last rank runs out.
            batch = next(it, None)
            if batch is None and not self.ctx.distributed:
                break
            if batch is not None:
                filler = batch
                if ids_seen is not None:
                    ids_seen.append(
                        np.array([i if isinstance(i, bytes) else str(i).encode() for i in batch["ids"]])
                    )
            stepped = self._train_step(batch, filler)
            if stepped is None:  # every rank ran out
                break
            value, n = stepped
            loss_sum += value * n
            n_sum += n
            self.epoch_loss = (loss_sum, n_sum)
            speed = (n_sum - n_resumed) / max(time.perf_counter() - epoch_start, 1e-9)
            bar.update(1, loss=value, lr=self.lr, videos_per_s=round(speed, 1))
            if t.log_interval and st.step % t.log_interval == 0:
                row = {
                    "step": st.step,
                    "epoch": st.epoch + 1,
                    "loss": value,
                    "lr": self.lr,
                    "examples": st.examples,
                    "time": round(time.time(), 3),
                }
                self._emit("on_step", row)
            if t.checkpoint_steps and st.step % t.checkpoint_steps == 0:
                self._save()
            if st.step >= t.max_iter:
                self.done = True
                break
        bar.close(loss=loss_sum / max(n_sum, 1))
        if ids_seen is not None and not self.done:
            self.ids_checked = True  # a whole epoch from its start: every video of this rank was seen
            warn_repeated_ids(ids_seen, self.ctx.rank if self.ctx.distributed else None)
        completed = not self.done  # the data ran out rather than max_iter
        if completed:
            st.epoch += 1
            self.batch_in_epoch = 0
            self.epoch_loss = (0.0, 0.0)
        return {
            "epoch": st.epoch if completed else st.epoch + 1,
            "step": st.step,
            "examples": st.examples,
            "train_loss": loss_sum / max(n_sum, 1),
            "lr": self.lr,
            "train_videos_per_s": (n_sum - n_resumed) / max(time.perf_counter() - epoch_start, 1e-9),
        }

    def _autocast(self) -> Any:
        """``paddle.amp.auto_cast`` for ``train.amp`` (float32 master weights: level O1 casts op inputs)."""
        import paddle

        amp = self.cfg.train.amp
        if amp == "off":
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(
            enable=True,
            custom_black_list=set(AMP_FP32_OPS),
            level="O1",
            dtype="bfloat16" if amp == "bf16" else "float16",
        )

    def _train_step(
        self, batch: dict[str, Any] | None, filler: dict[str, Any] | None
    ) -> tuple[float, int] | None:
        """One optimizer step on ``batch`` (None: this rank's data ran out, it steps with zero weight on
        ``filler``). Returns the global batch's mean loss and size, or None when every rank ran out."""
        import paddle

        cfg, t, st = self.cfg, self.cfg.train, self.state
        n_local = 0 if batch is None else len(batch["ids"])
        saved_state = None
        if batch is None:
            batch = filler or distributed.filler_batch(cfg.dataset.features, cfg.dataset.num_classes)
            saved_state = distributed.snapshot_state(self.model)
        self.lr = learning_rate_at(
            st.examples, t.learning_rate, t.lr_boundary_examples, t.learning_rate_decay
        )
        self.optimizer.set_lr(self.lr)
        paddle.seed(step_seed(t.seed, st.step) + self.ctx.rank)
        labels = paddle.to_tensor(batch["labels"])
        inputs = to_tensors(batch, cfg.dataset.features)
        with self._autocast():
            outputs = self.train_model(inputs)
            loss = training_loss(
                self.train_model,
                outputs,
                inputs,
                labels,
                batch.get("label_mask"),
                t.distill,
                self._soft_targets(batch, saved_state),
            )
        n_global, loss_total = distributed.all_sum(
            [n_local, float(loss) * n_local if n_local else 0.0], self.ctx
        )
        if n_global == 0:
            distributed.restore_state(self.model, saved_state)
            return None
        value = loss_total / n_global if self.ctx.distributed else float(loss)  # the global batch's loss
        if not math.isfinite(value):
            latest = checkpoint.latest_checkpoint(self.run_dir)
            raise TrainingDiverged(
                f"the training loss became {value} at step {st.step + 1} (epoch {st.epoch + 1}); stopped "
                f"before updating the weights. The last good checkpoint is "
                f"{latest if latest else 'none (none was written yet)'}. Lower train.learning_rate, "
                f"check train.gradient_clip_norm, or check the data for bad values"
            )
        if self.ctx.distributed:
            # DataParallel averages gradients over ranks: weighting each rank's mean loss by its share
            # of the global batch makes that average the global batch's mean gradient.
            loss = loss * (n_local * self.ctx.world_size / n_global)
        if self.scaler is None:
            loss.backward()
            self._zero_unreached_gradients()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self._zero_unreached_gradients()
            self.scaler.step(self.optimizer)  # unscales before the optimizer clips and steps
            self.scaler.update()
        # Freed, not zeroed (single process): backward then writes each gradient instead of adding it to a
        # zero tensor, which held a second copy of the largest gradient (the hidden FC's 302 MB at the
        # reference NeXtVLAD size). DataParallel keeps paddle's zeroed gradients.
        self.optimizer.clear_grad(set_to_zero=self.ctx.distributed)
        distributed.restore_state(self.model, saved_state)
        if self.ema is not None:
            self.ema.update(self.model)
        n = int(n_global)
        st.step += 1
        self.batch_in_epoch += 1
        st.examples += n
        self.trained_examples += n
        return value, n

    def _soft_targets(self, batch: dict[str, Any], saved_state: Any) -> Any:
        """The teacher's probabilities for the batch's ids (zeros in a zero-weight filler step)."""
        if self.teacher is None:
            return None
        import paddle

        num_classes = self.cfg.dataset.num_classes
        if saved_state is not None:
            targets = np.zeros((len(batch["ids"]), num_classes), np.float32)
        else:
            targets = self.teacher.soft_targets(batch["ids"], num_classes)
        return paddle.to_tensor(targets)

    def _validate(self, reader: Any) -> dict[str, float]:
        distributed.broadcast_state(self.model, self.ctx)  # evaluate the model rank 0 saves
        with self.ema.applied(self.model) if self.ema else contextlib.nullcontext():
            metrics, _ = evaluate(
                self.model, reader, self.cfg, ctx=self.ctx, desc="validate", progress=self.progress
            )
        if self.ctx.is_main:
            self.log(
                ("validation (weight average): " if self.ema else "validation: ")
                + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            )
        self._emit("on_validation", metrics)
        return metrics


def warn_repeated_ids(batches: list[np.ndarray], rank: int | None = None) -> int:
    """Warn (stderr) when one epoch's training ids hold a video more than once, with the count and an
    example; returns the number of repeated reads. (`zoo data inspect` names the files.)"""
    if not batches:
        return 0
    ids, counts = np.unique(np.concatenate(batches), return_counts=True)
    repeated = counts > 1
    extra = int((counts[repeated] - 1).sum())
    if extra:
        example = ids[repeated][0].decode("utf-8", "backslashreplace")
        where = f" (rank {rank})" if rank is not None else ""
        print(
            f"warning: the training data{where} holds {int(repeated.sum())} video id(s) more than once "
            f"({extra} repeated reads an epoch; for example {example!r}, read {int(counts[repeated][0])} times): "
            f"those videos weigh more in training. A file listed twice or a copy of a shard under another name? "
            f"`zoo data inspect` names the files",
            file=sys.stderr,
            flush=True,
        )
    return extra
