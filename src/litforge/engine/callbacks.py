"""Callbacks every run has: dropout seeded per batch, a clean stop on a signal, a stop at the first
NaN loss, and a check that the monitored metric is logged."""

from __future__ import annotations

import hashlib
import logging
import math
import signal
import threading
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint

from litforge.engine import compat
from litforge.engine.fastpath import EveryBatch
from litforge.errors import Diverged, Interrupted, UserError

log = logging.getLogger("litforge")


class BatchSeed(EveryBatch):
    """Seeds torch's generator from (seed, epoch, batch, rank) before each training batch.

    Dropout draws from that generator, so a batch's masks depend on where it is in training and
    on nothing that ran before it in this process: a run resumed from any checkpoint, even one
    written mid-epoch, draws on every rank the same masks as a run that never stopped.
    (The batch order has its own generator, seeded by (seed, epoch), in data.py.)
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch_idx: int):
        seed = batch_seed(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank)
        # the generators this process draws from: torch.manual_seed would also seed (and first
        # look for) every other kind of device, ~100 µs a batch
        torch.default_generator.manual_seed(seed)
        device = pl_module.device.type
        if device == "cuda":
            torch.cuda.manual_seed(seed)  # the current device: Lightning sets it to this rank's
        elif device != "cpu":
            torch.manual_seed(seed)


def batch_seed(*key: int) -> int:
    """A reproducible 64-bit seed, a different one for every tuple of whole numbers."""
    digest = hashlib.blake2b(",".join(map(str, key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class GracefulStop(EveryBatch):
    """Ctrl-C (SIGINT) or SIGTERM (what SLURM sends before preemption) stops training cleanly.

    The signal only sets a flag. Training stops after the next optimizer step (never inside an
    accumulation group): the state is written to last.ckpt and the run exits with 128 + the
    signal number, so resuming from last.ckpt continues exactly. A signal during an epoch's last
    step lets that epoch finish (validation, last.ckpt) and stops before the next one. A second
    Ctrl-C stops at once. Lightning's own SIGTERM handling stops after any batch, also inside an
    accumulation group, whose gradient a checkpoint cannot hold; this callback replaces it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning installs its SIGTERM handler before this hook and restores the handlers it
        # found when fit() ends, which also removes these
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        self.received = signum
        log.warning(
            "%s: stopping after this optimizer step and saving last.ckpt (Ctrl-C again to stop "
            "at once, without saving)",
            signal.Signals(signum).name,
        )

    def on_batch_end(self, trainer, pl_module, loss, batch_idx: int, stepped: bool, last: bool):
        if stepped and not last and self._stop_requested(trainer):
            save_last_checkpoint(trainer)
            self._exit()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stop_requested(trainer):  # last.ckpt already holds the epoch that just ended
            self._exit()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stop_requested(trainer):  # training is done; don't go on to testing
            self._exit()

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        stop = self.received is not None
        if trainer.world_size > 1:  # every rank stops at the same step, or they deadlock
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            self.received = self.received or (signal.SIGTERM if stop else None)
        return stop

    def _exit(self) -> None:
        raise Interrupted(128 + int(self.received))


def save_last_checkpoint(trainer: L.Trainer) -> None:
    """Write last.ckpt where the every-epoch checkpoint (a ModelCheckpoint without monitor) goes."""
    from litforge.engine.checkpoints import LastCheckpoint

    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, LastCheckpoint):
            callback.save(trainer)
        elif isinstance(callback, ModelCheckpoint) and callback.monitor is None:
            trainer.save_checkpoint(callback.format_checkpoint_name({}), weights_only=False)
        else:
            continue
        log.info("saved %s", callback.format_checkpoint_name({}))
        return


class AtTrainStart(Callback):
    """Calls `action(trainer)` when training starts: after a checkpoint is restored and before the
    first batch. A run writes nothing into its folder before then (train.py)."""

    def __init__(self, action) -> None:
        self.action = action

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.action(trainer)


class MonitorLogged(Callback):
    """Stops at the first validation that does not log `monitor`, with the names that were logged.

    best.ckpt, early stopping, plateau schedules and sweeps all read `monitor`; without this a
    module of your own that logs `val_loss` would end in Lightning's message about the first of
    them to look. Runs first among the callbacks.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.monitor.startswith("train/") and not trainer.sanity_checking:
            self.check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor.startswith("train/"):  # logged at the epoch's end, after validation
            self.check(trainer, pl_module)

    def check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != "fit" or self.monitor in trainer.callback_metrics:
            return
        logged = sorted(trainer.callback_metrics)
        raise UserError(
            f"monitor={self.monitor} is not a metric {type(pl_module).__name__} logs; it logged "
            f"{', '.join(logged) or 'nothing'} by the end of its first validation. Set monitor= "
            "to one of them (and monitor_mode=min or max), or log it with "
            f"self.log({self.monitor!r}, value) in the module."
        )


class StopOnDivergence(EveryBatch):
    """Raises `Diverged` at the first training batch whose loss is not finite.

    On the CPU every batch's loss is checked as it comes (a host tensor: no sync to wait for).
    On an accelerator the check is folded into a flag on the device every batch, and read (one
    host-device sync) every `trainer.log_every_n_steps` batches and at the last batch of each
    epoch: before validation and ModelCheckpoint run, so best.ckpt and last.ckpt keep the weights
    of the last finite epoch. The message names the batch where the loss first went bad either way.
    """

    def __init__(self) -> None:
        self.first_bad: torch.Tensor | None = None  # index into `seen` of the first bad loss, or -1
        self.seen: list[tuple[int, int, int]] = []  # (epoch, batch, global step) since last read

    def on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        loss: torch.Tensor | None,
        batch_idx: int,
        stepped: bool,
        last: bool,
    ) -> None:
        if not isinstance(loss, torch.Tensor):
            return
        if loss.device.type == "cpu" and trainer.world_size == 1:
            if not math.isfinite(loss.item()):  # a host tensor: reading it costs nothing
                raise Diverged(
                    message(trainer, trainer.current_epoch, batch_idx, trainer.global_step)
                )
            return
        if self.first_bad is None or self.first_bad.device != loss.device:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        not_finite = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(
            not_finite & (self.first_bad < 0), len(self.seen), self.first_bad
        )
        self.seen.append((trainer.current_epoch, batch_idx, trainer.global_step))
        if not (last or len(self.seen) >= trainer.log_every_n_steps):
            return
        first = int(self.first_bad)  # the one host-device sync
        # every rank reads at the same batches, so a rank that saw a bad loss stops them all
        if trainer.strategy.reduce_boolean_decision(first >= 0, all=False):
            raise Diverged(message(trainer, *self.seen[first]))
        self.first_bad.fill_(-1)
        self.seen.clear()


def message(trainer: L.Trainer, epoch: int, batch: int, step: int) -> str:
    """Where it happened, what was kept, and the fix: a lower learning rate."""
    lrs = [group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups]
    fix = f"optimizer.lr={lrs[0]:g} is probably too high: try optimizer.lr={lrs[0] / 10:g}"
    kept = ""
    if epoch > 0 and trainer.checkpoint_callback is not None:
        kept = " Checkpoints saved before that step are kept."
    return (
        f"training diverged: the training loss became NaN or infinite at step {step} "
        f"(epoch {epoch}, batch {batch}) and training stopped there.{kept} {fix} or lower, "
        "or clip gradients with trainer.gradient_clip_val=1.0."
    )


class LearningRate(LearningRateMonitor):
    """Lightning's LearningRateMonitor, logging under one name whatever the optimizer: `train/lr`
    (Lightning's is `lr-Adam`, `lr-SGD`, ..., so a sweep over optimizers gets one chart each).

    With several parameter groups (or optimizers) each gets `train/lr/<its name or number>`;
    `log_momentum` adds `train/momentum` (SGD's momentum, Adam's first beta) and
    `log_weight_decay` `train/weight_decay`. It logs at each epoch's start, or every
    `log_every_n_steps` steps with `logging_interval: step`.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval != "step":
            self.log_stats(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval == "step" and trainer.global_step % trainer.log_every_n_steps == 0:
            self.log_stats(trainer)

    def stats(self, trainer: L.Trainer) -> dict[str, float]:
        groups = [group for optimizer in trainer.optimizers for group in optimizer.param_groups]
        stats = {}
        for number, group in enumerate(groups):
            suffix = "" if len(groups) == 1 else f"/{group.get('name', number)}"
            stats[f"train/lr{suffix}"] = float(group["lr"])
            if self.log_momentum:
                momentum = group.get("momentum", group.get("betas", (0.0,))[0])
                stats[f"train/momentum{suffix}"] = float(momentum)
            if self.log_weight_decay:
                stats[f"train/weight_decay{suffix}"] = float(group.get("weight_decay", 0.0))
        return stats

    def log_stats(self, trainer: L.Trainer) -> None:
        # to the loggers only: not a metric of the run (its history, a monitor) as Lightning's is
        stats = self.stats(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=compat.logging_step(trainer))
