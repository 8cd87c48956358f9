"""The test-split pictures in TensorBoard hold the same predictions the test metrics scored."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import make_cfg, read_metrics
from litforge import build
from litforge.run.figures import TestFigures
from litforge.run.record import RunRecord
from litforge.train import fit_and_test

PNG = b"\x89PNG\r\n\x1a\n"


def fit(output_dir, *overrides):
    """A short real fit and test; returns the TestFigures callback the trainer used."""
    cfg = make_cfg(output_dir, *overrides)
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    trainer = build.trainer(cfg)
    record = fit_and_test(datamodule, module, trainer, RunRecord(output_dir, cfg.monitor, []))
    record.write()
    (figures,) = [c for c in trainer.callbacks if isinstance(c, TestFigures)]
    return figures, datamodule


def image(run_dir, tag: str) -> bytes:
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    (picture,) = events.Images(tag)
    return picture.encoded_image_string


def test_classification_logs_the_confusion_matrix_of_the_test_split(tmp_path):
    figures, datamodule = fit(tmp_path, "data=wine", "max_epochs=3")
    counts = figures.metrics["confusion"].compute()
    assert counts.shape == (3, 3)
    assert int(counts.sum()) == len(datamodule.test_dataloader().y)  # every test sample once
    accuracy = float(counts.trace() / counts.sum())
    assert accuracy == pytest.approx(read_metrics(tmp_path)["test"]["test/acc"])
    assert image(tmp_path, "test/confusion_matrix").startswith(PNG)


def test_regression_logs_predicted_against_true_of_the_test_split(tmp_path):
    figures, datamodule = fit(tmp_path, "experiment=diabetes", "max_epochs=3")
    predicted = figures.metrics["predicted"].compute()
    true = figures.metrics["true"].compute()
    assert len(predicted) == len(true) == len(datamodule.test_dataloader().y)
    r2 = 1 - float(((true - predicted) ** 2).sum() / ((true - true.mean()) ** 2).sum())
    assert r2 == pytest.approx(read_metrics(tmp_path)["test"]["test/r2"], abs=1e-5)
    assert image(tmp_path, "test/predicted_vs_true").startswith(PNG)


def test_without_tensorboard_no_predictions_are_made_again(tmp_path):
    figures, _ = fit(tmp_path, "data=wine", "max_epochs=1", "logger=csv")
    assert figures.metrics == {}
