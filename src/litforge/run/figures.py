"""Pictures of the test split in TensorBoard: a confusion matrix, or predicted against true."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics import Metric
from torchmetrics.aggregation import CatMetric
from torchmetrics.classification import MulticlassConfusionMatrix


class TestFigures(Callback):
    """At test time, `test/confusion_matrix` (classification) or `test/predicted_vs_true`
    (regression) as an image in each TensorBoard logger, for a litforge module (its `task` and
    `for_metrics` say what to draw).

    The predictions are made again here, batch by batch, so the model's own steps stay as they
    are; torchmetrics gathers them across DDP ranks.
    """

    __test__ = False  # a Lightning callback, not a pytest class

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metrics = {}
        if not _tensorboards(trainer):
            return
        task = getattr(pl_module, "task", None)
        if not callable(getattr(pl_module, "for_metrics", None)):  # not a litforge module
            return
        if task == "classification" and "num_classes" in pl_module.hparams:
            self.metrics = {"confusion": MulticlassConfusionMatrix(pl_module.hparams.num_classes)}
        elif task == "regression":
            self.metrics = {"predicted": CatMetric(), "true": CatMetric()}
        for metric in self.metrics.values():
            metric.to(pl_module.device)

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module, outputs: Any, batch: Any, batch_idx: int, *args
    ) -> None:
        if not self.metrics:
            return
        x, y = batch
        with torch.no_grad(), trainer.precision_plugin.test_step_context():
            predicted, true = pl_module.for_metrics(pl_module(x), y)  # in the data's own units
        if "confusion" in self.metrics:
            self.metrics["confusion"].update(predicted, true)
        else:
            self.metrics["predicted"].update(predicted.float())
            self.metrics["true"].update(true.float())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.metrics:
            return
        computed = {name: metric.compute().cpu() for name, metric in self.metrics.items()}
        if not trainer.is_global_zero:
            return
        if "confusion" in computed:
            tag, figure = "test/confusion_matrix", confusion_figure(computed["confusion"])
        else:
            tag, figure = "test/predicted_vs_true", scatter_figure(**computed)
        for logger in _tensorboards(trainer):
            logger.experiment.add_figure(tag, figure, global_step=trainer.global_step)


def confusion_figure(counts: torch.Tensor):
    """Counts of (true class, predicted class) over the test split, in torchmetrics' drawing."""
    from matplotlib.figure import Figure  # the object API: no GUI backend, no global state
    from torchmetrics.utilities.plot import plot_confusion_matrix

    n = len(counts)
    figure = Figure(figsize=(2 + 0.5 * n, 1.5 + 0.5 * n), layout="constrained")
    plot_confusion_matrix(counts, ax=figure.subplots())
    return figure


def scatter_figure(predicted: torch.Tensor, true: torch.Tensor):
    """Each test sample's prediction against its target, with the line of perfect predictions."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5), layout="constrained")
    ax = figure.subplots()
    ax.scatter(true.numpy(), predicted.numpy(), s=8, alpha=0.5)
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="predicted = true")
    ax.set(xlabel="true", ylabel="predicted", title=f"test split, {len(true)} samples")
    ax.legend(loc="upper left")
    return figure


def _tensorboards(trainer: L.Trainer) -> list[TensorBoardLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
