"""The fast path: one Lightning training step runs a chunk of optimizer steps.

Lightning spends about half a millisecond of its own on every training step (hook dispatch, the
optimizer closure, logging, the progress bar), as long as a whole step of a small MLP takes. On
the fast path the training loader yields a `Chunk` of consecutive batches (sliced with one
indexing operation) and `LitModule.training_step` runs their optimizer steps itself (manual
optimization), so Lightning's per-step machinery runs once per chunk instead of once per batch.

What must happen on every batch still does, inside the chunk (`train_chunk`):
- callbacks derived from `EveryBatch` get `on_batch_start` and `on_batch_end` for each batch:
  dropout seeding, the divergence check and the clean stop on a signal (callbacks.py);
- an accumulation group's gradient is the mean over exactly its samples;
- `trainer.global_step` counts optimizer steps, and so does TensorBoard's step axis; learning
  rate schedules step when Lightning would step them;
- `train/loss` is the epoch's exact mean, `train/loss_step` is logged every
  `trainer.log_every_n_steps` optimizer steps, without a host-device sync per step.

`FastPath`, a callback every run has, turns this on when `fit` starts, wherever it is exact.
Anywhere else the fit runs on Lightning's own loop, and a WARNING says why and what would keep the
fast path: a module that is not a `LitModule` or overrides `training_step` or a per-step hook; a
data module that is not a `TabularDataModule` or serves loaders of its own; a callback with
per-batch hooks that is not an `EveryBatch`; data parallel (several backward passes inside one
DDP forward break DDP's gradient reducer); 16-bit mixed precision (its gradient scaler);
`limit_train_batches`, `overfit_batches` and `val_check_interval` (they count Lightning's
batches). `steps_per_call=1` asks for Lightning's loop (said at INFO).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    GradientAccumulationScheduler,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    Timer,
)
from torch import Tensor

from litforge.engine import compat
from litforge.engine.loader import Chunk, InMemoryLoader

log = logging.getLogger("litforge")


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
MODULE_STEP_HOOKS = (
    "training_step",
    *PER_STEP_HOOKS,
    "backward",
    "optimizer_step",
    "optimizer_zero_grad",
)
# callbacks whose per-batch hooks may see a chunk: they show, log or save per epoch
CHUNK_SAFE = (EveryBatch, ProgressBar, LearningRateMonitor, EarlyStopping, Timer, ModelCheckpoint)
KEEP_IT = "To keep litforge's fast path, "


class FastPath(Callback):
    """Switches `fit` to the chunked fast path where that is exact (see the module docstring).

    Anywhere else the fit runs on Lightning's own loop, which is exact too, and the log says why
    at WARNING level, with what would keep the fast path (at INFO where `steps_per_call=1` asked
    for Lightning's loop).
    """

    def __init__(self, steps_per_call: int = 32) -> None:
        self.steps_per_call = steps_per_call

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        reason = self.why_not(trainer, pl_module)
        if reason:
            asked = self.steps_per_call <= 1
            level = logging.INFO if asked else logging.WARNING
            log.log(level, "Lightning's own training loop: %s", reason)
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
        log.info(
            "training loop: litforge's fast path, %d optimizer steps per Lightning step",
            self.steps_per_call,
        )
        pl_module.automatic_optimization = False
        # Lightning refuses both with manual optimization; train_chunk does them itself
        trainer.accumulate_grad_batches, trainer.gradient_clip_val = 1, None
        # a chunk holds whole accumulation groups, so an optimizer step never spans two chunks
        trainer.datamodule.chunk = self.steps_per_call * k

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Check the loader is the chunked one, then carry the optimizer steps over from the
        other loop's counter once a checkpoint is restored: Lightning's own loop counts them in
        its automatic-optimization progress, the fast path in the manual one, and `global_step`
        (TensorBoard's step axis, `max_steps`) reads the one the module's mode names."""
        if getattr(pl_module, "fast", None) is not None:
            loader = trainer.train_dataloader
            if not isinstance(loader, InMemoryLoader) or loader.chunk == 1:
                raise RuntimeError(  # why_not() rules this out; never train without backward
                    f"litforge's fast path is on but the training loader is {type(loader)}, "
                    "not a chunked InMemoryLoader; run with steps_per_call=1 and report this."
                )
        counters = compat.optimizer_step_counters(trainer)
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
        """Why this fit must keep Lightning's loop, and what would keep the fast path; or None."""
        if self.steps_per_call <= 1:
            return "steps_per_call=1"
        module, data = type(pl_module).__name__, type(trainer.datamodule).__name__
        if not hasattr(pl_module, "fast"):
            return (
                f"{module} is not a litforge module. {KEEP_IT}derive it from "
                "litforge.engine.LitModule and give it forward() and loss(output, y)."
            )
        if not hasattr(trainer.datamodule, "chunk"):
            return (
                f"{data} is not a litforge in-memory data module; the fast path slices tensors "
                f"held in memory. {KEEP_IT}derive it from litforge.engine.TabularDataModule and "
                "return the arrays from load() (for data that fits in memory)."
            )
        blockers = [*pl_module.fast_path_blockers(), *trainer.datamodule.fast_path_blockers()]
        if blockers:
            return blockers[0]
        if trainer.world_size > 1:
            return "data parallel (DDP needs one backward pass per forward)"
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return f"precision={trainer.precision} steps through its gradient scaler"
        if not whole_epoch(trainer.limit_train_batches) or trainer.overfit_batches:
            return "limit_train_batches or overfit_batches count Lightning's batches"
        if not whole_epoch(trainer.val_check_interval) or trainer.check_val_every_n_epoch is None:
            return "val_check_interval counts Lightning's batches"
        for callback in trainer.callbacks:
            name = type(callback).__name__
            if isinstance(callback, LearningRateMonitor) and callback.logging_interval != "epoch":
                return f"{name}(logging_interval='step') logs every optimizer step"
            if isinstance(callback, ModelCheckpoint) and compat.saves_every_n_train_steps(callback):
                return f"{name}(every_n_train_steps or train_time_interval) saves between steps"
            if isinstance(callback, GradientAccumulationScheduler):
                return f"{name} changes accumulate_grad_batches from epoch to epoch"
        hooks = [
            f"{type(c).__name__}.{hook}"
            for c in trainer.callbacks
            if not isinstance(c, (*CHUNK_SAFE, FastPath))
            for hook in PER_STEP_HOOKS
            if overrides(c, Callback, hook)
        ]
        if hooks:
            return (
                f"{', '.join(hooks)} must run on every step. {KEEP_IT}derive the callback from "
                "litforge.engine.EveryBatch and implement on_batch_start / on_batch_end, which "
                "run once per batch on both loops."
            )
        return None


def module_blockers(module: L.LightningModule, base: type) -> list[str]:
    """What a subclass of `base` (litforge's LitModule) overrides that the fast path does itself."""
    hooks = [hook for hook in MODULE_STEP_HOOKS if overrides(module, base, hook)]
    if not hooks:
        return []
    name = type(module).__name__
    return [
        f"{name} overrides {', '.join(hooks)}, which the fast path would skip or run once per "
        f"chunk of batches. {KEEP_IT}put the per-batch math in forward() and loss(output, y) and "
        "per-step work in a litforge.engine.EveryBatch callback; or set steps_per_call=1 to "
        "silence this."
    ]


def whole_epoch(value: Any) -> bool:
    """Lightning's 1.0 for "the whole epoch" (an int 1 means one batch)."""
    return isinstance(value, float) and value == 1.0


def overrides(obj: Any, base: type, name: str) -> bool:
    """`obj` has its own `name`: in its class, or set on the object (LambdaCallback's way)."""
    own = getattr(obj, name, None)
    return getattr(own, "__func__", own) is not getattr(base, name, None)


def train_chunk(module: L.LightningModule, chunk: Chunk) -> dict[str, Tensor] | None:
    """Train on a chunk's batches: forward, backward and an optimizer step per group of k.

    `module` is a LitModule on the fast path (FastPath set `module.fast`). Returns the last
    batch's loss, which the progress bar shows.
    """
    trainer, fast = module.trainer, module.fast
    k = fast.accumulate
    optimizer = module.optimizers(use_pl_optimizer=False)
    loader = trainer.train_dataloader
    sizes = loader.batch_sizes()
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
            compat.count_manual_optimizer_step(trainer)  # trainer.global_step reads it
            step += 1
            # Lightning's step counter for loggers: what it would be at this batch's end
            compat.set_logging_step(trainer, step - 1)
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
            if not last:
                compat.skip_next_validation(trainer)
            last = True
            break
    loader.in_chunk = False
    if last:  # once an epoch: a log call costs ~0.3 ms
        # the Metric object, as Lightning's loop logs it: Lightning resets it after the epoch
        module.log("train/loss", module.train_loss, on_step=False, on_epoch=True)
    return {"loss": loss}


def schedules(trainer: L.Trainer, interval: str) -> list:
    """The learning-rate schedules Lightning's loop steps every `interval` ("step" or "epoch").

    Plateau schedules step in `LitModule.on_train_epoch_end`, on both paths.
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
