"""Callbacks that make training exact across stops: seeded batches, a clean stop on a signal."""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from litforge.chunks import EveryBatch

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


class Interrupted(SystemExit):
    """Ends a run that a signal stopped; its exit code is 128 + the signal number, as a shell's."""


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
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None:
            path = callback.format_checkpoint_name({})
            trainer.save_checkpoint(path, weights_only=False)
            log.info("saved %s", path)
            return
