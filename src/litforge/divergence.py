"""Stop a run whose training loss became NaN or infinite, before a checkpoint can save it."""

from __future__ import annotations

import math

import lightning as L
import torch

from litforge.chunks import EveryBatch
from litforge.errors import Diverged


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
        "or clip gradients with +trainer.gradient_clip_val=1.0."
    )
