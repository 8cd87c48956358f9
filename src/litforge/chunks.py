"""The fast path: one Lightning training step runs a chunk of optimizer steps.

Lightning spends about half a millisecond of its own on every training step (hook dispatch, the
optimizer closure, logging, the progress bar), as long as a whole step of a small MLP takes. On
the fast path the training loader yields a `Chunk` of consecutive batches (sliced with one
indexing operation) and `TabularModule.training_step` runs their optimizer steps itself (manual
optimization), so Lightning's per-step machinery runs once per chunk instead of once per batch.

What must happen on every batch still does, inside the chunk (`train_chunk`):
- callbacks derived from `EveryBatch` get `on_batch_start` and `on_batch_end` for each batch:
  dropout seeding, the divergence check and the clean stop on a signal (loop.py, divergence.py);
- an accumulation group's gradient is the mean over exactly its samples;
- `trainer.global_step` counts optimizer steps, and so does TensorBoard's step axis; learning
  rate schedules step when Lightning would step them;
- `train/loss` is the epoch's exact mean, `train/loss_step` is logged every
  `trainer.log_every_n_steps` optimizer steps, without a host-device sync per step.

`FastPath`, a callback every run has, turns this on when `fit` starts, wherever it is exact. It
leaves Lightning's own loop in place for data parallel (several backward passes inside one DDP
forward break DDP's gradient reducer), 16-bit mixed precision (its gradient scaler),
`limit_train_batches` and `overfit_batches` (they count Lightning's batches), and callbacks that
need Lightning's per-step hooks. `steps_per_call=1` always keeps Lightning's loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import lightning as L
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    Timer,
    TQDMProgressBar,
)
from torch import Tensor

log = logging.getLogger("litforge")


class Chunk(NamedTuple):
    """Consecutive training batches: their rows of x and y, and where they sit in the epoch."""

    x: Tensor  # (rows, features): the batches one after another
    y: Tensor  # (rows,)
    first: int  # index in the epoch of the first batch
    count: int  # number of batches

    def batches(self, sizes: list[int]) -> Iterator[tuple[int, Tensor, Tensor]]:
        """(batch_idx, x, y) of each batch, given the epoch's batch sizes; views, no copies."""
        mine = sizes[self.first : self.first + self.count]
        indices = range(self.first, self.first + self.count)
        return zip(indices, self.x.split(mine), self.y.split(mine), strict=True)


class EveryBatch(Callback):
    """A callback that sees every training batch, on the fast path too.

    On the fast path Lightning calls `on_train_batch_start/end` once per chunk. Subclasses
    implement `on_batch_start` and `on_batch_end` instead, which run once per batch on both
    paths: after the batch's backward pass and, when it ends an accumulation group (`stepped`),
    after its optimizer step. `last`: the batch is the epoch's last.
    """

    def on_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int):
        pass

    def on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        loss: Tensor | None,
        batch_idx: int,
        stepped: bool,
        last: bool,
    ) -> None:
        pass

    # Lightning's own loop (steps_per_call=1, DDP, 16-mixed): one batch per call
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not isinstance(batch, Chunk):
            self.on_batch_start(trainer, pl_module, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if isinstance(batch, Chunk):
            return
        last = batch_idx + 1 >= trainer.num_training_batches
        stepped = last or (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        self.on_batch_end(trainer, pl_module, loss, batch_idx, stepped, last)


@dataclass
class FastSteps:
    """What the chunk loop needs that Lightning's Trainer holds for its own loop."""

    accumulate: int  # k: batches per optimizer step
    clip_val: float | None = None  # trainer.gradient_clip_val (its algorithm stays on the trainer)
    starts: list[EveryBatch] = field(default_factory=list)  # callbacks with on_batch_start
    ends: list[EveryBatch] = field(default_factory=list)  # callbacks with on_batch_end


# Lightning hooks that run per optimizer step or per batch: on the fast path they would run once
# per chunk (the first two) or not at all
PER_STEP_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)
MODULE_STEP_HOOKS = (*PER_STEP_HOOKS, "backward", "optimizer_step", "optimizer_zero_grad")
# callbacks whose per-batch hooks may see a chunk: they show, log or save per epoch
CHUNK_SAFE = (EveryBatch, ProgressBar, LearningRateMonitor, EarlyStopping, Timer)


class FastPath(Callback):
    """Switches `fit` to the chunked fast path where that is exact (see the module docstring)."""

    def __init__(self, steps_per_call: int = 32) -> None:
        self.steps_per_call = steps_per_call

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        reason = self.why_not(trainer, pl_module)
        if reason:
            log.info("Lightning's own training loop: %s", reason)
            if hasattr(trainer.datamodule, "chunk"):  # in case an earlier fit chunked it
                trainer.datamodule.chunk = 1
            if getattr(pl_module, "fast", None) is not None:  # an earlier fit took the fast path
                pl_module.fast, pl_module.automatic_optimization = None, True
            return
        k = trainer.accumulate_grad_batches
        every = [c for c in trainer.callbacks if isinstance(c, EveryBatch)]
        pl_module.fast = FastSteps(
            accumulate=k,
            clip_val=trainer.gradient_clip_val,
            starts=[c for c in every if overrides(c, EveryBatch, "on_batch_start")],
            ends=[c for c in every if overrides(c, EveryBatch, "on_batch_end")],
        )
        pl_module.automatic_optimization = False
        # Lightning refuses both with manual optimization; train_chunk does them itself
        trainer.accumulate_grad_batches, trainer.gradient_clip_val = 1, None
        # a chunk holds whole accumulation groups, so an optimizer step never spans two chunks
        trainer.datamodule.chunk = self.steps_per_call * k

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Carry the optimizer steps over from the other loop's counter, once a checkpoint is
        restored: Lightning's own loop counts them in its automatic-optimization progress, the
        fast path in the manual one, and `global_step` (TensorBoard's step axis, `max_steps`)
        reads the one the module's mode names."""
        loop = trainer.fit_loop.epoch_loop
        counters = (
            loop.automatic_optimization.optim_progress.optimizer.step.total,
            loop.manual_optimization.optim_step_progress.total,
        )
        steps = max(counter.completed for counter in counters)
        for counter in counters:
            counter.ready = counter.completed = steps

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Give the trainer back its own settings, so a later fit with it starts from them."""
        fast = getattr(pl_module, "fast", None)
        if stage == "fit" and fast is not None:
            trainer.accumulate_grad_batches = fast.accumulate
            trainer.gradient_clip_val = fast.clip_val

    def why_not(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str | None:
        """Why this fit must keep Lightning's own loop, or None."""
        if self.steps_per_call <= 1:
            return "steps_per_call=1"
        if not hasattr(pl_module, "fast") or not hasattr(trainer.datamodule, "chunk"):
            return "the module or data module does not train in chunks"
        if trainer.world_size > 1:
            return "data parallel (DDP needs one backward pass per forward)"
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return f"precision={trainer.precision} steps through its gradient scaler"
        if not whole_epoch(trainer.limit_train_batches) or trainer.overfit_batches:
            return "limit_train_batches or overfit_batches count Lightning's batches"
        if not whole_epoch(trainer.val_check_interval) or trainer.check_val_every_n_epoch is None:
            return "val_check_interval counts Lightning's batches"
        if any(
            isinstance(c, LearningRateMonitor) and c.logging_interval != "epoch"
            for c in trainer.callbacks
        ):
            return "LearningRateMonitor(logging_interval='step') logs every optimizer step"
        if any(getattr(c, "_every_n_train_steps", 0) for c in trainer.checkpoint_callbacks):
            return "ModelCheckpoint(every_n_train_steps) saves between optimizer steps"
        hooks = [
            f"{type(c).__name__}.{hook}"
            for c in trainer.callbacks
            if not isinstance(c, CHUNK_SAFE + (ModelCheckpoint, FastPath))
            for hook in PER_STEP_HOOKS
            if overrides(c, Callback, hook)
        ]
        hooks += [
            f"{type(pl_module).__name__}.{hook}"
            for hook in MODULE_STEP_HOOKS
            if overrides(pl_module, L.LightningModule, hook)
        ]
        if hooks:
            return f"{', '.join(hooks)} must run on every step"
        return None


def whole_epoch(value: Any) -> bool:
    """Lightning's 1.0 for "the whole epoch" (an int 1 means one batch)."""
    return isinstance(value, float) and value == 1.0


def overrides(obj: Any, base: type, name: str) -> bool:
    return getattr(type(obj), name) is not getattr(base, name)


def train_chunk(module: L.LightningModule, chunk: Chunk) -> dict[str, Tensor] | None:
    """Train on a chunk's batches: forward, backward and an optimizer step per group of k.

    `module` is a TabularModule on the fast path (FastPath set `module.fast`). Returns the last
    batch's loss, which the progress bar shows.
    """
    trainer, fast = module.trainer, module.fast
    k = fast.accumulate
    optimizer = module.optimizers(use_pl_optimizer=False)
    loader = trainer.train_dataloader
    sizes = loader.batch_sizes()
    epoch_loop = trainer.fit_loop.epoch_loop
    progress = epoch_loop.manual_optimization.optim_step_progress  # trainer.global_step reads it
    step = trainer.global_step  # optimizer steps taken, counted along here
    max_steps = trainer.max_steps if trainer.max_steps >= 0 else math.inf
    log_every = trainer.log_every_n_steps
    per_step = schedules(trainer, "step")
    group_loss = 0.0  # with k > 1: the mean loss over the group's samples, for train/loss_step
    if not chunk.count:  # the empty rest of a chunk a signal stopped after its last batch
        return None
    loader.in_chunk = True  # a checkpoint written now (a signal) is inside this training step
    for batch_idx, x, y in chunk.batches(sizes):
        loader.batches_done = batch_idx + 1  # a checkpoint written now resumes after this batch
        for callback in fast.starts:
            callback.on_batch_start(trainer, module, batch_idx)
        loss = module.loss(module(x), y)  # the batch's mean loss
        weight = module.accumulation_weight(batch_idx, len(y))
        (loss * weight if weight != 1.0 else loss).backward()
        loss = loss.detach()
        module.train_loss.note(loss, len(y))
        if k > 1:
            group_loss = group_loss + loss * weight
        last = batch_idx + 1 == len(sizes)
        stepped = last or (batch_idx + 1) % k == 0
        if stepped:
            if fast.clip_val:
                module.clip_gradients(optimizer, fast.clip_val)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            progress.increment_ready()
            progress.increment_completed()
            step += 1
            # Lightning's step counter for loggers: what it would be at this batch's end
            epoch_loop._batches_that_stepped = step - 1
            step_schedules(module, per_step, batch_idx + 1)
            if last:
                step_schedules(module, schedules(trainer, "epoch"), trainer.current_epoch + 1)
            if log_every and step % log_every == 0:
                log_step_loss(trainer, group_loss if k > 1 else loss, step - 1)
            group_loss = 0.0
        for callback in fast.ends:
            callback.on_batch_end(trainer, module, loss, batch_idx, stepped, last)
        if stepped and step >= max_steps:
            # Lightning ends the fit after this chunk; its own loop would not validate a
            # partial epoch, so neither does this one
            epoch_loop._skip_next_val = not last
            last = True
            break
    loader.in_chunk = False
    if last:  # once an epoch: a log call costs ~0.3 ms
        # the Metric object, as Lightning's loop logs it: Lightning resets it after the epoch
        module.log("train/loss", module.train_loss, on_step=False, on_epoch=True)
    return {"loss": loss}


def schedules(trainer: L.Trainer, interval: str) -> list:
    """The learning-rate schedules Lightning's loop steps every `interval` ("step" or "epoch").

    Plateau schedules step in `TabularModule.on_train_epoch_end`, on both paths.
    """
    configs = trainer.lr_scheduler_configs
    return [c for c in configs if c.interval == interval and not c.reduce_on_plateau]


def step_schedules(module: L.LightningModule, configs: list, count: int) -> None:
    """Step each schedule whose frequency divides `count` (batches or epochs), as Lightning does."""
    for config in configs:
        if count % config.frequency == 0:
            module.lr_scheduler_step(config.scheduler, None)


def log_step_loss(trainer: L.Trainer, loss: Tensor, step: int) -> None:
    """train/loss_step at the step Lightning logs it (one host read per logged step)."""
    metrics = {"train/loss_step": float(loss), "epoch": trainer.current_epoch}
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)


class BatchProgressBar(TQDMProgressBar):
    """TQDM's progress bar, counting batches also on the fast path (Lightning counts chunks),
    where it shows the last batch's loss as train/loss_step without a log call per chunk.

    While fitting, validation gets no bar of its own: it is a batch or two of in-memory data,
    and a new bar every epoch cost ~0.4 ms (a few percent of a small epoch). Its results show on
    the training bar, as Lightning's do. `trainer.validate` keeps its bar.
    """

    step_loss: Tensor | None = None

    @property
    def total_train_batches(self) -> int | float:
        loader = self.trainer.train_dataloader
        if getattr(loader, "chunk", 1) > 1:
            return loader.num_batches
        return super().total_train_batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if isinstance(batch, Chunk):
            batch_idx = batch.first + batch.count - 1
            if outputs:  # not the empty rest of a chunk (data.InMemoryLoader)
                self.step_loss = outputs["loss"]
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        if self.step_loss is not None:
            metrics["train/loss_step"] = float(self.step_loss)  # read when the bar redraws
        return metrics

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn != "fit":
            super().on_validation_start(trainer, pl_module)

    def on_validation_batch_start(self, trainer, pl_module, *args, **kwargs) -> None:
        if trainer.state.fn != "fit":
            super().on_validation_batch_start(trainer, pl_module, *args, **kwargs)

    def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs) -> None:
        if trainer.state.fn != "fit":
            super().on_validation_batch_end(trainer, pl_module, *args, **kwargs)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn != "fit":
            super().on_validation_end(trainer, pl_module)
        elif self._train_progress_bar is not None:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
