"""LitModule: the LightningModule litforge's models derive from. A subclass builds its network and
metrics and says what its loss is; the steps, the epoch metrics, exact gradient accumulation, the
fast path and the learning-rate schedules are here."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MeanMetric, Metric, MetricCollection

from litforge.engine import compat
from litforge.engine.fastpath import FastSteps, module_blockers, train_chunk
from litforge.engine.loader import Chunk, group_rows

log = logging.getLogger("litforge")


class RunningMean(Metric):
    """The weighted mean of the epoch's training loss, kept in checkpoints.

    `note()` is the fast path's per-batch update: it only lists the loss (~0.1 µs; torchmetrics'
    update() costs ~10 µs, a few percent of a small model's step). Listed losses are added when
    the mean is computed or saved, one addition per batch in the order they came, in float64, so
    the sums hold the same bits as update()'s, however often they are read. One process only:
    DDP syncs the states before compute() (Lightning's own loop, which calls update()).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        zero = torch.zeros((), dtype=torch.float64)
        self.add_state("total", zero.clone(), dist_reduce_fx="sum", persistent=True)
        self.add_state("weight", zero.clone(), dist_reduce_fx="sum", persistent=True)
        self.noted: list[tuple[Tensor, int]] = []
        self.register_state_dict_pre_hook(add_noted)  # a checkpoint holds the noted losses too

    def update(self, value: Tensor, weight: int) -> None:
        self.total.add_(value, alpha=weight)
        self.weight.add_(weight)

    def note(self, value: Tensor, weight: int) -> None:
        """Add a detached loss of `weight` samples later."""
        if not self.noted:  # what torchmetrics' update() would record, once for all of them
            compat.mark_metric_updated(self)
        self.noted.append((value, weight))

    def add_noted(self) -> None:
        for value, weight in self.noted:
            self.total.add_(value.to(self.total.device), alpha=weight)
        self.weight.add_(sum(weight for _, weight in self.noted))
        self.noted.clear()

    def compute(self) -> Tensor:
        self.add_noted()
        return self.total / self.weight

    def reset(self) -> None:
        self.noted.clear()
        super().reset()


def add_noted(metric: RunningMean, prefix: str, keep_vars: bool) -> None:
    metric.add_noted()


class LitModule(L.LightningModule):
    """Training, validation and test steps around `forward` and `loss`, for (x, y) batches.

    A subclass sets `self.net` (or overrides `forward`), defines `loss(output, y)`, the batch's
    mean loss, and passes its torchmetrics to `__init__`; `for_metrics` maps outputs and targets
    to what those metrics expect (e.g. back to the data's units). `task` ("regression" or
    "classification") is checked against the data module's.

    Logged: `train/loss` (the epoch's mean over samples), `train/loss_step`, `val/loss`,
    `test/loss` and `val/<metric>`, `test/<metric>` for each metric, once an epoch.
    """

    task: str | None = None

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        monitor: str = "val/loss",
        metrics: MetricCollection | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor = monitor
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        # in checkpoints, so an epoch resumed mid-way still reports the mean over all its batches
        self.train_loss = RunningMean()
        self.fast: FastSteps | None = None  # set by fastpath.FastPath when fit takes the fast path
        metrics = metrics if metrics is not None else MetricCollection({})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def setup(self, stage: str) -> None:
        if self.trainer.strategy.root_device.type == "mps":  # Apple's MPS has no float64
            self.train_loss.set_dtype(torch.float32)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define loss(output, y)")

    def for_metrics(self, output: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(prediction, target) in the form and units the metrics expect."""
        return output, y

    def fast_path_blockers(self) -> list[str]:
        """What in this module keeps a fit on Lightning's own loop (fastpath.FastPath asks)."""
        return module_blockers(self, LitModule)

    def training_step(self, batch: tuple[Tensor, Tensor] | Chunk, batch_idx: int):
        if isinstance(batch, Chunk) != (self.fast is not None):
            raise RuntimeError(  # FastPath sets both together: never train without backward
                f"{type(self).__name__} got a {type(batch).__name__} with the fast path "
                f"{'on' if self.fast else 'off'}; run with steps_per_call=1 and report this."
            )
        if isinstance(batch, Chunk):  # the fast path: this call trains a chunk of batches
            return train_chunk(self, batch)
        x, y = batch
        loss = self.loss(self(x), y)
        # the epoch mean is weighted by batch size, so a short last batch counts for what it holds
        self.train_loss.update(loss.detach(), len(y))
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        # Lightning divides the loss by k itself
        return loss * self.accumulation_weight(batch_idx, len(y)) * self.accumulate

    @property
    def accumulate(self) -> int:
        """k: batches per optimizer step (accumulate_grad_batches), on either path."""
        return self.fast.accumulate if self.fast else self.trainer.accumulate_grad_batches

    def accumulation_weight(self, batch_idx: int, batch_size: int) -> float:
        """The weight of a batch's mean loss so its group's gradient is the mean over its samples.

        That is len(batch) / samples_in_group: 1/k when all k batches of a group hold b samples,
        more for the batches of an epoch's short last batch or short last group, whose summed
        gradient would otherwise be too small (Lightning's own weighting is 1/k for all).
        """
        k = self.accumulate
        if k == 1:
            return 1.0
        first = batch_idx // k * k
        rows = group_rows(self.trainer.train_dataloader, first, first + k)
        return 1.0 / k if rows is None else batch_size / rows

    def on_train_start(self) -> None:
        k = self.accumulate
        if k > 1 and group_rows(self.trainer.train_dataloader, 0, k) is None:
            log.warning(
                "accumulate_grad_batches=%d with a training loader whose batch sizes litforge "
                "cannot see (%s): each batch's loss is weighted 1/%d, as in plain Lightning, which "
                "is the mean over a group's samples only when all its batches are full. Give the "
                "DataLoader a batch_size and a sampler with a length to weight a short last group "
                "exactly.",
                k,
                type(self.trainer.train_dataloader).__name__,
                k,
            )

    def on_train_epoch_start(self) -> None:
        # Lightning skips this hook when it resumes mid-epoch: the restored sum carries on
        self.train_loss.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_loss, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self.log_epoch(self.val_loss, self.val_metrics, "val/loss")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self.log_epoch(self.test_loss, self.test_metrics, "test/loss")

    def log_epoch(self, loss: Metric, metrics: MetricCollection, name: str) -> None:
        """Log the epoch's loss and metrics, computed here (summed over ranks), then reset them.

        Their values are logged, not the Metric objects: Lightning moves a logged Metric object
        to the device on every log call (~0.3 ms each, a tenth of a small epoch).
        """
        values = {name: loss.compute(), **metrics.compute()}
        loss.reset()
        metrics.reset()
        self.log_value(name, values.pop(name), prog_bar=True)
        for key, value in values.items():
            self.log_value(key, value)

    def log_value(self, name: str, value: Tensor, prog_bar: bool = False) -> None:
        """Log an epoch's value as it is: batch_size=1 makes Lightning's epoch mean of one value
        that value, bit for bit. Every rank holds the same value (torchmetrics summed the states
        over ranks), so the mean over ranks that Lightning asks for under DDP changes nothing."""
        sync = self.trainer.world_size > 1
        self.log(name, value, prog_bar=prog_bar, batch_size=1, sync_dist=sync)

    def _evaluate(self, batch, loss_metric: MeanMetric, metrics: MetricCollection) -> None:
        x, y = batch
        output = self(x)
        # MeanMetric weighted by batch size: the exact mean over the split, summed over ranks
        loss_metric.update(self.loss(output, y), weight=len(y))
        metrics.update(*self.for_metrics(output, y))

    def on_train_epoch_end(self) -> None:
        # Lightning steps a plateau schedule after the epoch's checkpoints are written, so a run
        # resumed from one would miss that step; step it here, before them, instead
        metric = self.trainer.callback_metrics.get(self.monitor)
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, ReduceLROnPlateau) and metric is not None:
                config.scheduler.step(metric)

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if not isinstance(scheduler, ReduceLROnPlateau):  # that one stepped in on_train_epoch_end
            super().lr_scheduler_step(scheduler, metric)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        schedule = {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}
        if self.automatic_optimization:  # Lightning's loop needs it for a plateau schedule
            schedule["monitor"] = self.monitor
        return {"optimizer": optimizer, "lr_scheduler": schedule}
