"""Loggers besides TensorBoard: MLflow (queried back from its store), W&B offline (its run file
read back), several at once, and the message when a logger's package is missing."""

import importlib.util
import struct
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import cli, make_cfg, read_metrics, run_train
from litforge.checks import check_config
from litforge.errors import UserError


def mlflow_overrides(tmp_path: Path) -> list[str]:
    return [
        f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"logger.mlflow.artifact_location={tmp_path}/mlartifacts",
    ]


def mlflow_run(tmp_path: Path, run_name: str):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("litforge")
    (run,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{run_name}'")
    return client, run


def test_an_mlflow_run_is_queried_back_from_its_store(tmp_path):
    run_dir = tmp_path / "wine_adam"
    run_train(run_dir, "data=wine", "optimizer=adam", "max_epochs=4", "logger=mlflow",
              *mlflow_overrides(tmp_path))  # fmt: skip
    metrics = read_metrics(run_dir)
    client, run = mlflow_run(tmp_path, "wine_adam")  # named by its folder
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["optimizer"], params["data"], params["max_epochs"]) == ("adam", "wine", "4")
    final = run.data.metrics
    assert final["val/loss_best"] == pytest.approx(metrics["best"]["value"])
    assert final["test/acc"] == pytest.approx(metrics["test"]["test/acc"])
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert [m.value for m in history] == pytest.approx(metrics["history"]["val/loss"])
    assert len(history) == 4
    assert (tmp_path / "mlartifacts").as_uri() in client.get_experiment_by_name(
        "litforge"
    ).artifact_location  # beside the store, not in the working directory


def test_tensorboard_and_mlflow_at_once(tmp_path):
    run_dir = tmp_path / "both"
    run_train(run_dir, "data=wine", "max_epochs=2", "logger=[tensorboard,mlflow]",
              *mlflow_overrides(tmp_path))  # fmt: skip
    best = read_metrics(run_dir)["best"]["value"]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert events.Scalars("val/loss_best")[0].value == pytest.approx(best)
    _, run = mlflow_run(tmp_path, "both")
    assert run.data.metrics["val/loss_best"] == pytest.approx(best)
    assert make_cfg(tmp_path, "logger=[tensorboard,mlflow]").logger.keys() == {
        "tensorboard",
        "mlflow",
    }


def test_a_failed_run_is_a_failed_mlflow_run(tmp_path):
    run_dir = tmp_path / "diverged"
    with pytest.raises(UserError, match="training diverged"):
        run_train(run_dir, "data=wine", "optimizer=sgd", "optimizer.lr=1e6", "max_epochs=3",
                  "logger=mlflow", *mlflow_overrides(tmp_path))  # fmt: skip
    assert read_metrics(run_dir)["status"] == "failed"
    _, run = mlflow_run(tmp_path, "diverged")
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("logger, package", [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_logger_package_is_one_line_saying_how_to_install_it(
    tmp_path, monkeypatch, logger, package
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == package else find_spec(name, *a),
    )
    with pytest.raises(UserError) as refused:
        check_config(make_cfg(tmp_path, f"logger=[tensorboard,{logger}]"), code=False)
    assert str(refused.value) == (
        f"logger={logger} needs the {package} package, which is not installed: "
        f"pip install -e '.[{logger}]' (make installs it with EXTRAS=dev,sweep,{logger})."
    )


@pytest.mark.slow
def test_a_sweeps_jobs_go_to_an_mlflow_experiment_named_by_the_sweep(tmp_path):
    from mlflow import MlflowClient

    sweep_dir = tmp_path / "seeds"
    result = cli(
        "-m", "litforge.train", "-m", "data=wine", "max_epochs=2", "seed=0,1", "logger=mlflow",
        *mlflow_overrides(tmp_path), f"hydra.sweep.dir={sweep_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("seeds")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["0_seed=0", "1_seed=1"]
    for run in runs:
        best = read_metrics(sweep_dir / run.info.run_name)["best"]["value"]
        assert run.data.metrics["val/loss_best"] == pytest.approx(best)


def wandb_records(path: Path) -> list:
    """The records of an offline W&B run's .wandb file (a log of protobuf records in 32 KiB
    blocks, each chunk behind a 7-byte header: crc32, length, type), as `wandb sync` reads it."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, chunks, pending = 7, 32768, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:  # full
            chunks.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            chunks.append(pending + chunk)
    return [Record.FromString(chunk) for chunk in chunks]


@pytest.mark.slow
def test_a_wandb_run_is_written_offline_with_its_params_and_final_metrics(tmp_path):
    run_dir = tmp_path / "wandb_run"
    result = cli(
        "-m", "litforge.train", "data=wine", "max_epochs=3", "logger=wandb",
        f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wandb:" not in result.stdout + result.stderr  # quiet: nothing but litforge's lines
    metrics = read_metrics(run_dir)
    (offline,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(offline)
    kinds = [r.WhichOneof("record_type") for r in records]
    (run,) = [r.run for r in records if r.HasField("run")]
    assert (run.display_name, run.project) == ("wandb_run", "litforge")
    config = {i.key: i.value_json for r in records if r.HasField("config") for i in r.config.update}
    assert (config["optimizer"], config["data"], config["max_epochs"]) == ('"adam"', '"wine"', "3")
    logged = {}
    for record in records:
        if record.HasField("history"):
            items = record.history.item
            logged |= {i.key or "/".join(i.nested_key): float(i.value_json) for i in items}
    assert logged["val/loss_best"] == pytest.approx(metrics["best"]["value"])
    assert logged["test/acc"] == pytest.approx(metrics["test"]["test/acc"])
    assert kinds[-1] == "exit" and records[-1].exit.exit_code == 0  # finished, ready to sync
