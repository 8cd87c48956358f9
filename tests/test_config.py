"""Every option of every config group composes, and instantiates into the object it names."""

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import CONF, cli, make_cfg
from litforge import build
from litforge.data import DigitsImages
from litforge.engine import TabularDataModule
from litforge.errors import UserError
from litforge.models import ClassificationModule, CNNClassifier, RegressionModule

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
REGRESSION_DATA = {"diabetes", "synthetic", "csv"}
HARDWARE = {
    "gpu": torch.cuda.is_available,
    "ddp": torch.cuda.is_available,
    "mps": torch.backends.mps.is_available,
}


def overrides_for(group: str, option: str, tmp_path: Path) -> list[str]:
    """The option plus what it needs to run: a regression model for regression data, a CSV file."""
    extra = [f"{group}={option}"]
    if group == "data" and option in REGRESSION_DATA:
        extra.append("model=regression")
    if group == "model" and option == "regression":
        extra.append("data=diabetes")
    if (group, option) == ("data", "digits_images"):  # images: the CNN
        extra.append("model=cnn")
    if (group, option) == ("model", "cnn"):
        extra.append("data=digits_images")
    if (group, option) == ("logger", "mlflow"):  # its store in tmp_path, not outputs/
        extra += [f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"]
        extra += [f"logger.mlflow.artifact_location={tmp_path}/mlartifacts"]
    if group == "data" and option == "csv":
        path = tmp_path / "table.csv"
        path.write_text("x1,x2,y\n" + "\n".join(f"{i},{i % 7},{2 * i + 1}" for i in range(60)))
        extra += [f"data.path={path}", "data.target=y"]
    return extra


def test_every_group_has_options():
    expected = {
        "data",
        "model",
        "optimizer",
        "device",
        "descent",
        "scheduler",
        "callbacks",
        "early_stopping",
        "logger",
        "experiment",
        "debug",
        "trainer",
    }
    assert expected <= set(GROUPS)
    assert {o for g, o in OPTIONS if g == "optimizer"} >= {
        "sgd",
        "momentum",
        "rmsprop",
        "adam",
        "adamw",
    }
    assert {o for g, o in OPTIONS if g == "device"} >= {
        "cpu",
        "gpu",
        "mps",
        "auto",
        "ddp",
        "ddp_cpu",
    }


def test_every_yaml_file_starts_with_a_comment_saying_what_it_selects():
    for path in CONF.rglob("*.yaml"):
        first = path.read_text().splitlines()[0]
        if first.startswith("# @package"):
            first = path.read_text().splitlines()[1]
        assert first.startswith("# ") and len(first) > 10, path


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_option_composes_and_instantiates(group, option, tmp_path):
    cfg = make_cfg(tmp_path, *overrides_for(group, option, tmp_path))
    assert cfg.hydra.runtime.choices[group] == option
    datamodule = build.datamodule(cfg)
    images = cfg.hydra.runtime.choices.data == "digits_images"
    assert isinstance(datamodule, DigitsImages if images else TabularDataModule)
    module = build.module(cfg, datamodule)
    expected = RegressionModule if datamodule.task == "regression" else ClassificationModule
    assert isinstance(module, CNNClassifier if images else expected)
    optimizers = module.configure_optimizers()
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    assert isinstance(optimizer, torch.optim.Optimizer)
    if group == "device" and option in HARDWARE and not HARDWARE[option]():
        with pytest.raises(UserError, match="use device=cpu"):
            build.trainer(cfg)
        return
    trainer = build.trainer(cfg)
    assert isinstance(trainer, L.Trainer)
    assert trainer.max_epochs == cfg.max_epochs


def test_top_level_knobs_reach_the_trainer(tmp_path):
    cfg = make_cfg(tmp_path, "precision=64", "accumulate_grad_batches=4", "max_epochs=7")
    trainer = build.trainer(cfg)
    assert (trainer.precision, trainer.accumulate_grad_batches, trainer.max_epochs) == (
        "64-true",
        4,
        7,
    )


def test_descent_modes_set_the_batch_size(tmp_path):
    sizes = {}
    for mode in ("batch", "minibatch", "stochastic"):
        cfg = make_cfg(tmp_path, f"descent={mode}", "data=synthetic", "model=regression")
        sizes[mode] = build.datamodule(cfg).train_batch_size()
    n_train = 1000 - 150 - 150
    assert sizes == {"batch": n_train, "minibatch": 64, "stochastic": 1}


def test_optimizer_is_a_partial_with_its_learning_rate(tmp_path):
    cfg = make_cfg(tmp_path, "optimizer=momentum", "optimizer.lr=0.3")
    module = build.module(cfg, build.datamodule(cfg))
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.3 and optimizer.defaults["momentum"] == 0.9


def test_linear_model_has_no_hidden_layer(tmp_path):
    cfg = make_cfg(tmp_path, "model.hidden_dims=[]")
    module = build.module(cfg, build.datamodule(cfg))
    assert [type(m).__name__ for m in module.net] == ["Linear"]
    assert (module.net[0].in_features, module.net[0].out_features) == (64, 10)  # from the data


def test_experiment_states_only_differences(tmp_path):
    cfg = make_cfg(tmp_path, "experiment=diabetes")
    choices = cfg.hydra.runtime.choices
    assert (choices.data, choices.model) == ("diabetes", "regression")
    assert list(cfg.model.hidden_dims) == []
    assert cfg.seed == 0 and cfg.monitor == "val/loss"  # untouched defaults


def test_unknown_option_fails_with_hydras_message(tmp_path):
    with pytest.raises(ConfigCompositionException, match="Could not find 'optimizer/adamm'"):
        make_cfg(tmp_path, "optimizer=adamm")


def test_unknown_key_fails_with_hydras_message(tmp_path):
    with pytest.raises(
        ConfigCompositionException,
        match=r"Could not override 'optimizer.lrr'.\nTo append to your config use "
        r"\+optimizer.lrr=0.1",
    ):
        make_cfg(tmp_path, "optimizer.lrr=0.1")


def test_task_mismatch_names_the_fix(tmp_path):
    cfg = make_cfg(tmp_path, "data=diabetes")
    with pytest.raises(UserError, match="use model=regression"):
        build.module(cfg, build.datamodule(cfg))


def test_help_lists_every_group_and_option():
    result = cli("-m", "litforge.train", "--help", timeout=60)
    assert result.returncode == 0
    for group, option in OPTIONS:
        assert f"{group}: " in result.stdout, group
        assert option in result.stdout, (group, option)


def test_composed_config_matches_the_defaults(tmp_path):
    cfg = make_cfg(tmp_path)
    plain = OmegaConf.to_container(cfg, resolve=False)
    del plain["hydra"]
    assert plain["optimizer"] == {
        "_target_": "torch.optim.Adam",
        "_partial_": True,
        "lr": 0.001,
        "betas": [0.9, 0.999],
        "eps": 1e-08,
        "weight_decay": 0.0,
        "amsgrad": False,
    }
    assert plain["trainer"]["accelerator"] == "cpu" and plain["data"]["name"] == "digits"
    assert plain["trainer"]["max_epochs"] == "${max_epochs}"
