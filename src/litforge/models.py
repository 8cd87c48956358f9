"""YOURS: the networks (plain nn.Modules) and the LightningModules that train them.

A model here is a network, a loss and its metrics. Everything else (the steps, logging, exact
accumulation, the fast path) comes from `litforge.engine.LitModule`. Sizes that only the data
knows (`num_features`, `num_classes`, `target_mean`, ...) arrive as constructor arguments: name
an argument like an attribute of the data module and litforge passes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from litforge.engine import LitModule

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}
Optimizer = Callable[..., torch.optim.Optimizer]  # torch.optim.Adam with its lr, ... (a partial)


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


class SmallCNN(nn.Module):
    """(batch, in_channels, H, W) images -> (batch, num_classes) logits.

    Per width in `channels`: a 3×3 convolution (padding 1), ReLU, 2×2 max pooling, so 8×8 inputs
    become 4×4, 2×2, 1×1 with three widths; then global average pooling, dropout and a linear
    layer.
    """

    def __init__(
        self, in_channels: int, num_classes: int, channels: Sequence[int], dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def classification_metrics(num_classes: int) -> MetricCollection:
    """Accuracy and macro F1 of the predicted class."""
    # the module's own outputs and labels: no need to validate them every batch
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
            "f1": MulticlassF1Score(num_classes, average="macro", validate_args=False),
        }
    )


class RegressionModule(LitModule):
    """MSE on the standardized target; MSE, MAE and R² in the target's own units."""

    task = "regression"

    def __init__(
        self,
        num_features: int,
        optimizer: Optimizer,
        scheduler: Callable | None = None,
        hidden_dims: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        target_mean: float = 0.0,
        target_std: float = 1.0,
        monitor: str = "val/loss",
    ) -> None:
        metrics = {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()}
        super().__init__(optimizer, scheduler, monitor, MetricCollection(metrics))
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.net = mlp(num_features, 1, list(hidden_dims), dropout, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)  # (batch,)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        # mean over the batch of the squared residual, in standardized target units
        return F.mse_loss(output, y, reduction="mean")

    def for_metrics(self, output: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        scale, shift = self.hparams.target_std, self.hparams.target_mean
        return output * scale + shift, y * scale + shift


class ClassificationModule(LitModule):
    """An MLP on cross-entropy over logits; accuracy and macro F1."""

    task = "classification"

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        optimizer: Optimizer,
        scheduler: Callable | None = None,
        hidden_dims: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        monitor: str = "val/loss",
    ) -> None:
        super().__init__(optimizer, scheduler, monitor, classification_metrics(num_classes))
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.net = mlp(num_features, num_classes, list(hidden_dims), dropout, activation)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        # mean over the batch of -log p(true class), in nats
        return F.cross_entropy(output, y, reduction="mean")


class CNNClassifier(LitModule):
    """SmallCNN on cross-entropy over logits, for images; accuracy and macro F1."""

    task = "classification"

    def __init__(
        self,
        num_classes: int,
        optimizer: Optimizer,
        scheduler: Callable | None = None,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float = 0.25,
        monitor: str = "val/loss",
    ) -> None:
        super().__init__(optimizer, scheduler, monitor, classification_metrics(num_classes))
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.net = SmallCNN(in_channels, num_classes, list(channels), dropout)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        # mean over the batch of -log p(true class), in nats
        return F.cross_entropy(output, y, reduction="mean")
