"""The two modules compute the losses they claim, on batches small enough to check by hand."""

import math
from functools import partial

import pytest
import torch

from litforge.models import ClassificationModule, RegressionModule, mlp


def sgd():
    return partial(torch.optim.SGD, lr=0.1)


def test_mse_is_the_squared_residual_averaged():
    module = RegressionModule(num_features=2, optimizer=sgd(), hidden_dims=[])
    prediction = torch.tensor([1.0, 2.0, 4.0])
    target = torch.tensor([0.0, 2.0, 1.0])
    # residuals 1, 0, 3 -> squares 1, 0, 9 -> mean 10/3
    assert module.loss(prediction, target).item() == pytest.approx(10 / 3)


def test_cross_entropy_is_the_mean_negative_log_probability_of_the_true_class():
    module = ClassificationModule(num_features=2, num_classes=3, optimizer=sgd(), hidden_dims=[])
    logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    target = torch.tensor([1, 0])
    # row 1: uniform -> -log(1/3); row 2: -log(e^2 / (e^2 + 2))
    expected = (math.log(3) + -math.log(math.e**2 / (math.e**2 + 2))) / 2
    assert module.loss(logits, target).item() == pytest.approx(expected)


def test_regression_metrics_are_in_the_targets_own_units():
    module = RegressionModule(
        num_features=1, optimizer=sgd(), hidden_dims=[], target_mean=100.0, target_std=10.0
    )
    prediction, target = module.for_metrics(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 1.0]))
    assert prediction.tolist() == [100.0, 110.0]
    assert target.tolist() == [105.0, 110.0]


@pytest.mark.parametrize(
    ("hidden_dims", "expected"),
    [([], [(4, 3)]), ([8], [(4, 8), (8, 3)]), ([8, 5], [(4, 8), (8, 5), (5, 3)])],
)
def test_mlp_layers_follow_hidden_dims(hidden_dims, expected):
    net = mlp(4, 3, hidden_dims, dropout=0.1, activation="gelu")
    linear = [(m.in_features, m.out_features) for m in net if isinstance(m, torch.nn.Linear)]
    assert linear == expected
    if hidden_dims:
        assert any(isinstance(m, torch.nn.Dropout) for m in net)
        assert any(isinstance(m, torch.nn.GELU) for m in net)
    assert net(torch.zeros(2, 4)).shape == (2, 3)
