"""The networks (plain nn.Modules) and the two thin LightningModules that train them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from litforge.chunks import Chunk, FastSteps, train_chunk

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def mlp(
    in_features: int,
    out_features: int,
    hidden_dims: Sequence[int] = (),
    dropout: float = 0.0,
    activation: str = "relu",
) -> nn.Sequential:
    """Linear -> activation -> dropout, per hidden layer; `hidden_dims=[]` is a linear model."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


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

    def update(self, value: Tensor, weight: int) -> None:
        self.total.add_(value, alpha=weight)
        self.weight.add_(weight)

    def note(self, value: Tensor, weight: int) -> None:
        """Add a detached loss of `weight` samples later."""
        if not self.noted:  # what torchmetrics' update() would record, once for all of them
            self._update_count += 1
            self._computed = None
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

    def _apply(self, fn, *args, **kwargs):
        try:
            return super()._apply(fn, *args, **kwargs)
        except TypeError:  # Apple's MPS has no float64: the sums are kept in float32 there
            self.set_dtype(torch.float32)
            return super()._apply(fn, *args, **kwargs)

    def _save_to_state_dict(self, *args, **kwargs) -> None:
        self.add_noted()
        super()._save_to_state_dict(*args, **kwargs)


class TabularModule(L.LightningModule):
    """Shared steps; subclasses define the loss, the metrics and the output width."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None,
        monitor: str,
        metrics: MetricCollection,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.monitor = monitor
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        # in checkpoints, so an epoch resumed mid-way still reports the mean over all its batches
        self.train_loss = RunningMean()
        self.fast: FastSteps | None = None  # set by chunks.FastPath when fit takes the fast path
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def for_metrics(self, output: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(prediction, target) in the form and units the metrics expect."""
        return output, y

    def training_step(self, batch: tuple[Tensor, Tensor] | Chunk, batch_idx: int):
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
        rows = getattr(self.trainer.train_dataloader, "rows", None)
        if rows is None:  # a loader we can't see into
            return 1.0 / k
        first = batch_idx // k * k
        return batch_size / rows(first, first + k)

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


class RegressionModule(TabularModule):
    """MSE on the standardized target; MSE, MAE and R² in the target's own units."""

    def __init__(
        self,
        num_features: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        hidden_dims: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        target_mean: float = 0.0,
        target_std: float = 1.0,
        monitor: str = "val/loss",
    ) -> None:
        metrics = MetricCollection(
            {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()}
        )
        net = mlp(num_features, 1, list(hidden_dims), dropout, activation)
        super().__init__(net, optimizer, scheduler, monitor, metrics)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)  # (batch,)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        # mean over the batch of the squared residual, in standardized target units
        return F.mse_loss(output, y, reduction="mean")

    def for_metrics(self, output: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        scale, shift = self.hparams.target_std, self.hparams.target_mean
        return output * scale + shift, y * scale + shift


class ClassificationModule(TabularModule):
    """Cross-entropy on logits; accuracy and macro F1."""

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        hidden_dims: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        monitor: str = "val/loss",
    ) -> None:
        metrics = MetricCollection(
            {
                # the module's own outputs and labels: no need to validate them every batch
                "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
                "f1": MulticlassF1Score(num_classes, average="macro", validate_args=False),
            }
        )
        net = mlp(num_features, num_classes, list(hidden_dims), dropout, activation)
        super().__init__(net, optimizer, scheduler, monitor, metrics)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        # mean over the batch of -log p(true class), in nats
        return F.cross_entropy(output, y, reduction="mean")
