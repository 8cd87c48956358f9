"""Each shipped experiment reaches its stated quality on the test split it never trained on."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from conftest import make_cfg, read_metrics, run_train
from litforge import build


@pytest.mark.parametrize(
    ("experiment", "metric", "bar"),
    [
        ("digits", "test/acc", 0.95),
        ("digits_cnn", "test/acc", 0.97),  # the same split as digits, as 1x8x8 images
        ("wine", "test/acc", 0.95),
        ("breast_cancer", "test/acc", 0.95),
    ],
)
def test_classification_experiment_reaches_its_bar(experiment, metric, bar, tmp_path):
    run_train(tmp_path, f"experiment={experiment}")
    assert read_metrics(tmp_path)["test"][metric] >= bar


def test_diabetes_is_within_003_r2_of_least_squares_on_the_same_split(tmp_path):
    run_train(tmp_path, "experiment=diabetes")
    dm = build.datamodule(make_cfg(tmp_path, "experiment=diabetes"))
    (x_train, y_train), (x_test, y_test) = dm.splits["train"], dm.splits["test"]
    ols = LinearRegression().fit(x_train.numpy(), y_train.numpy())
    ols_r2 = r2_score(y_test.numpy(), ols.predict(x_test.numpy()))
    assert read_metrics(tmp_path)["test"]["test/r2"] >= ols_r2 - 0.03


def test_synthetic_linear_model_recovers_the_true_weights(tmp_path):
    run_train(tmp_path, "experiment=synthetic")
    assert read_metrics(tmp_path)["test"]["test/r2"] >= 0.99
    dm = build.datamodule(make_cfg(tmp_path, "experiment=synthetic"))
    state = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    w = state["net.0.weight"].double().numpy().ravel()
    b = float(state["net.0.bias"])
    w_raw, b_raw = dm.unstandardize(w, b)  # back to the data's own units
    assert np.max(np.abs(w_raw - dm.true_w) / np.abs(dm.true_w)) < 0.05
    assert abs(b_raw - dm.true_b) < 0.05  # noise is 0.1: within noise of the true b
