"""Short real fits through the same `train()` the CLI runs: what a user sees afterwards."""

import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import read_metrics, run_train
from litforge.errors import UserError
from litforge.eval import evaluate


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("wine")
    record = run_train(run_dir, "data=wine", "max_epochs=8", "optimizer.lr=0.003")
    return run_dir, record


def test_classification_fit_lowers_the_validation_loss(wine_run):
    run_dir, _ = wine_run
    history = read_metrics(run_dir)["history"]
    assert len(history["val/loss"]) == 8
    assert history["val/loss"][-1] < 0.7 * history["val/loss"][0]
    assert history["train/loss"][-1] < history["train/loss"][0]


def test_regression_fit_lowers_the_validation_loss(tmp_path):
    run_train(tmp_path, "data=synthetic", "model=regression", "max_epochs=4")
    history = read_metrics(tmp_path)["history"]
    assert history["val/loss"][-1] < 0.5 * history["val/loss"][0]


def test_metrics_json_describes_the_run(wine_run):
    run_dir, record = wine_run
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["error"] is None
    assert metrics["stopped_by"] == "max_epochs"
    assert metrics["epochs"] == 8
    assert metrics["global_step"] == 8 * math.ceil(125 / 32)  # 125 training wines, batch 32
    assert metrics["monitor"] == "val/loss"
    best = metrics["best"]
    assert best["value"] == min(metrics["history"]["val/loss"])
    assert best["checkpoint"] == "checkpoints/best.ckpt"
    assert metrics["val"]["val/loss"] == best["value"]
    assert set(metrics["test"]) == {"test/loss", "test/acc", "test/f1"}
    assert metrics["overrides"] == ["data=wine", "max_epochs=8", "optimizer.lr=0.003"]
    assert metrics["wall_time_s"] > 0
    assert record.best_value == best["value"]
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_the_best_checkpoint_is_the_one_tested(wine_run):
    run_dir, _ = wine_run
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["epoch"] == read_metrics(run_dir)["best"]["epoch"]


def test_eval_reproduces_the_test_metrics_exactly(wine_run, tmp_path):
    run_dir, _ = wine_run
    test = evaluate(run_dir / "checkpoints" / "best.ckpt", tmp_path)
    assert test == read_metrics(run_dir)["test"]


def test_tensorboard_has_split_scalars_and_an_hparams_entry_with_final_metrics(wine_run):
    run_dir, _ = wine_run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "val/loss",
        "val/acc",
        "val/f1",
        "test/loss",
        "test/acc",
        "test/f1",
    } <= tags
    assert "hp_metric" not in tags
    # the curves only: no `epoch` chart, no single-point hp/ copies; one learning-rate tag
    assert "epoch" not in tags and not [t for t in tags if t.startswith("hp/")]
    assert "train/lr" in tags and not [t for t in tags if t.startswith("lr-")]
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([0.003] * 8)
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["data"].string_value == "wine"
    assert hparams["optimizer"].string_value == "adam"
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.003)
    assert hparams["max_epochs"].number_value == 8
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert metric_tags == {"val/loss_best", "test/loss", "test/acc", "test/f1"}
    # HParams reads each metric's last value from the run's scalar of that name
    metrics = read_metrics(run_dir)
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test"]["test/acc"])
    (best,) = events.Scalars("val/loss_best")
    assert best.value == pytest.approx(metrics["best"]["value"])
    assert best.value == pytest.approx(min(e.value for e in events.Scalars("val/loss")))


def test_patience_stops_on_a_plateau(tmp_path):
    run_train(
        tmp_path,
        "experiment=synthetic",
        "max_epochs=200",
        "early_stopping.patience=3",
        "early_stopping.min_delta=0.001",
    )
    metrics = read_metrics(tmp_path)
    losses = metrics["history"]["val/loss"]
    assert metrics["stopped_by"] == "early_stopping"
    assert metrics["epochs"] < 200 and len(losses) == metrics["epochs"]
    best_before = min(losses[:-3])
    assert all(loss > best_before - 0.001 for loss in losses[-3:])  # 3 epochs without progress


def test_threshold_stops_at_the_first_epoch_under_the_threshold(tmp_path):
    run_train(
        tmp_path,
        "experiment=synthetic",
        "max_epochs=200",
        "early_stopping=threshold",
        "early_stopping.stopping_threshold=0.01",
    )
    metrics = read_metrics(tmp_path)
    losses = metrics["history"]["val/loss"]
    assert metrics["stopped_by"] == "threshold"
    first_under = next(i for i, loss in enumerate(losses) if loss < 0.01)
    assert metrics["epochs"] == first_under + 1 == len(losses)
    assert first_under > 0  # it had to train to get there


def test_a_task_mismatch_fails_before_training_and_says_so_in_metrics_json(tmp_path):
    with pytest.raises(UserError, match="model=regression"):
        run_train(tmp_path, "data=diabetes")
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "failed" and "use model=regression" in metrics["error"]
    assert not (tmp_path / "checkpoints").exists()


def test_without_callbacks_the_final_weights_are_tested(tmp_path):
    run_train(
        tmp_path, "data=wine", "max_epochs=2", "callbacks=none", "logger=csv", "early_stopping=none"
    )
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "completed" and metrics["best"]["checkpoint"] is None
    assert not (tmp_path / "checkpoints").exists()
    assert (tmp_path / "metrics.csv").is_file()
