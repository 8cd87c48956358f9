"""Callbacks that make training exact across stops: seeded epochs, a clean stop on a signal."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

log = logging.getLogger("litforge")


class EpochSeed(Callback):
    """Seeds torch's global generator from (seed, epoch, rank) when each training epoch starts.

    Dropout draws from that generator, so an epoch's masks depend on the epoch alone, not on
    what ran before it in this process: a resumed run draws the same masks as one that never
    stopped. (The batch order has its own generator, also seeded by (seed, epoch), in data.py.)
    Lightning resumes a checkpoint written mid-epoch without calling on_train_epoch_start, so
    checkpoints also carry the generator's state, and `on_train_start` puts it back.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._saved: dict[str, Any] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(dropout_seed(self.seed, trainer.current_epoch, trainer.global_rank))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved is not None:  # a resumed run: continue the stream where it stood
            torch.set_rng_state(self._saved["cpu"])
            if "cuda" in self._saved and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._saved["cuda"])
            self._saved = None

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = state_dict


def dropout_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for every (seed, epoch, rank), independent of the batch order's (seed, epoch) one."""
    return int(np.random.SeedSequence([seed, epoch, rank, 1]).generate_state(1, np.uint64)[0])


class Interrupted(SystemExit):
    """Ends a run that a signal stopped; its exit code is 128 + the signal number, as a shell's."""


class GracefulStop(Callback):
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

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        last = batch_idx + 1 >= trainer.num_training_batches
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
            trainer.save_checkpoint(path)
            log.info("saved %s", path)
            return
