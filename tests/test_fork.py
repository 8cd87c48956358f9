"""A forker's first edits train what they ask for: anything the fast path cannot train exactly
runs on Lightning's own loop, with a WARNING that says why and what keeps the fast path, and a
LightningModule / LightningDataModule of your own gets every output a litforge run has."""

import json
import logging
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import GradientAccumulationScheduler
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from conftest import copy_repo, make_cfg, read_metrics
from litforge import build
from litforge.data import SklearnDataModule
from litforge.errors import UserError
from litforge.models import ClassificationModule
from litforge.train import train

# wine: 124 training rows, 4 batches of 32 an epoch
WINE = ("data=wine", "max_epochs=3", "logger=none", "callbacks=none", "early_stopping=none")
STEPS = 3 * 4


# --- what forkers write ------------------------------------------------------------------------


class PlainLoaderWine(SklearnDataModule):
    """litforge's data module, serving its training split through an ordinary DataLoader."""

    def train_dataloader(self):
        return DataLoader(TensorDataset(*self.splits["train"]), batch_size=32, shuffle=True)


class OwnStep(ClassificationModule):
    """litforge's module with the most natural Lightning edit: its own training_step."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss


class ClippedNorms(ClassificationModule):
    """litforge's module with a per-step hook of its own."""

    norms: list

    def on_before_optimizer_step(self, optimizer):
        self.norms = getattr(self, "norms", [])
        self.norms.append(float(torch.cat([p.grad.ravel() for p in self.parameters()]).norm()))


class CountBatches(L.Callback):
    """A plain Lightning callback with a per-batch hook."""

    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1


class PlainClassifier(L.LightningModule):
    """A LightningModule as Lightning's docs write one, taking litforge's optimizer partial."""

    def __init__(self, num_features: int, num_classes: int, optimizer, width: int = 32):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.net = nn.Sequential(
            nn.Linear(num_features, width), nn.ReLU(), nn.Linear(width, num_classes)
        )
        self.val_acc = MulticlassAccuracy(num_classes)
        self.test_acc = MulticlassAccuracy(num_classes)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.val_acc(logits, y)
        self.log("val/acc", self.val_acc)

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("test/loss", F.cross_entropy(logits, y))
        self.test_acc(logits, y)
        self.log("test/acc", self.test_acc)

    def configure_optimizers(self):
        return self.optimizer(self.parameters())


class OwnOptimizerClassifier(PlainClassifier):
    """The same, choosing its optimizer itself."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__(num_features, num_classes, None)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class PlainWine(L.LightningDataModule):
    """A LightningDataModule as Lightning's docs write one: wine, split and standardized."""

    def __init__(self, batch_size: int = 32):
        super().__init__()
        self.batch_size = batch_size
        self.num_classes = 3

    def setup(self, stage=None):
        from sklearn.datasets import load_wine

        x, y = load_wine(return_X_y=True)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        x = torch.as_tensor(x, dtype=torch.float32)[order]
        y = torch.as_tensor(y)[order]
        x = (x - x[:124].mean(0)) / x[:124].std(0)
        self.num_features = x.shape[1]
        self.train, self.val = (
            TensorDataset(x[:124], y[:124]),
            TensorDataset(x[124:151], y[124:151]),
        )
        self.test = TensorDataset(x[151:], y[151:])

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=64)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=64)


# --- the fast path steps aside, says so, and the run trains --------------------------------------


def fit_from_start(tmp_path, overrides, model=None, data=None, extra_callbacks=()):
    """Build as train() does (model/data: another _target_ and its keys), fit; return the
    module's weights before and after, and the trainer."""
    cfg = make_cfg(tmp_path, *overrides)
    if model is not None:
        cfg.model = OmegaConf.create(model)
    if data is not None:
        cfg.data = OmegaConf.create(data)
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    before = torch.cat([p.detach().clone().ravel() for p in module.parameters()])
    trainer = build.trainer(cfg)
    trainer.callbacks.extend(extra_callbacks)
    trainer.fit(module, datamodule=datamodule)
    after = torch.cat([p.detach().ravel() for p in module.parameters()])
    return before, after, module, trainer


def fallback_warning(caplog) -> str:
    (warning,) = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "Lightning's own training loop" in r.getMessage()
    ]
    return warning


CASES = {
    "plain-dataloader": (
        {"data": {"_target_": "test_fork.PlainLoaderWine", "name": "wine", "batch_size": 32}},
        ["PlainLoaderWine overrides train_dataloader", "leave train_dataloader to"],
    ),
    "own-training-step": (
        {"model": {"_target_": "test_fork.OwnStep"}},
        ["OwnStep overrides training_step", "put the per-batch math in forward() and loss"],
    ),
    "per-step-hook": (
        {"model": {"_target_": "test_fork.ClippedNorms"}},
        ["ClippedNorms overrides on_before_optimizer_step", "EveryBatch callback"],
    ),
    "plain-lightning-module": (
        {"model": {"_target_": "test_fork.PlainClassifier"}},
        ["PlainClassifier is not a litforge module", "derive it from litforge.engine.LitModule"],
    ),
    "plain-lightning-data-module": (
        {"data": {"_target_": "test_fork.PlainWine"}},
        ["PlainWine is not a litforge in-memory data module", "litforge.engine.TabularDataModule"],
    ),
}


@pytest.mark.parametrize(("swap", "words"), CASES.values(), ids=CASES.keys())
def test_what_the_fast_path_cannot_train_runs_on_lightnings_loop_and_trains(
    tmp_path, caplog, swap, words
):
    with caplog.at_level(logging.INFO, logger="litforge"):
        before, after, module, trainer = fit_from_start(tmp_path, WINE, **swap)
    assert getattr(module, "fast", None) is None and module.automatic_optimization
    assert trainer.global_step == STEPS  # every batch took its optimizer step
    assert (after - before).abs().max() > 1e-3  # and the weights moved
    warning = fallback_warning(caplog)
    for word in words:
        assert word in warning, warning
    if "ClippedNorms" in warning:  # the hook ran on every step
        assert len(module.norms) == STEPS


def test_a_callback_with_per_batch_hooks_sees_every_batch(tmp_path, caplog):
    counter = CountBatches()
    with caplog.at_level(logging.INFO, logger="litforge"):
        before, after, module, trainer = fit_from_start(tmp_path, WINE, extra_callbacks=[counter])
    assert module.fast is None and trainer.global_step == STEPS == counter.batches
    assert (after - before).abs().max() > 1e-3
    warning = fallback_warning(caplog)
    assert "CountBatches.on_train_batch_end must run on every step" in warning
    assert "derive the callback from litforge.engine.EveryBatch" in warning


def test_a_changing_accumulation_schedule_runs_on_lightnings_loop(tmp_path, caplog):
    # k=1 for epochs 0 and 1 (4 steps each), k=2 from epoch 2 (2 steps)
    scheduler = GradientAccumulationScheduler({0: 1, 2: 2})
    with caplog.at_level(logging.INFO, logger="litforge"):
        before, after, module, trainer = fit_from_start(tmp_path, WINE, extra_callbacks=[scheduler])
    assert module.fast is None and trainer.global_step == 4 + 4 + 2
    assert (after - before).abs().max() > 1e-3
    assert "GradientAccumulationScheduler changes accumulate_grad_batches" in fallback_warning(
        caplog
    )


def test_the_default_run_keeps_the_fast_path_and_says_nothing(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="litforge"):
        before, after, module, trainer = fit_from_start(tmp_path, WINE)
    assert module.fast is not None and trainer.global_step == STEPS
    assert (after - before).abs().max() > 1e-3
    assert "Lightning's own training loop" not in caplog.text


# --- bring your own Lightning: every output of a run ------------------------------------------


def train_own(tmp_path, model: dict, data: dict, *overrides):
    cfg = make_cfg(tmp_path, "max_epochs=4", *overrides)
    cfg.model, cfg.data = OmegaConf.create(model), OmegaConf.create(data)
    return train(cfg, list(overrides), dict(cfg.hydra.runtime.choices))


def hparams_entry(run_dir) -> tuple[dict, list[str]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    content = events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert set(metrics) - {"val/loss_best"} <= set(events.Tags()["scalars"])  # values to read
    return dict(start.hparams), metrics


def test_your_own_lightning_module_and_data_module_get_every_output(tmp_path):
    model = {"_target_": "test_fork.PlainClassifier", "width": 16}
    record = train_own(tmp_path, model, {"_target_": "test_fork.PlainWine", "batch_size": 32})
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "completed" and metrics["global_step"] == 4 * 4
    assert metrics["best"]["checkpoint"] == "checkpoints/best.ckpt"
    assert metrics["best"]["value"] == min(metrics["history"]["val/loss"])
    assert metrics["val"].keys() == {"val/loss", "val/acc"}
    assert metrics["test"].keys() == {"test/loss", "test/acc"} and metrics["test"]["test/acc"] > 0.8
    assert record.best_value == metrics["best"]["value"]
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == metrics["best"]["epoch"]
    assert best["hyper_parameters"] == {"num_features": 13, "num_classes": 3, "width": 16}
    params, tags = hparams_entry(tmp_path)
    assert params["optimizer"].string_value == "adam" and "seed" in params
    assert set(tags) == {"val/loss_best", "test/loss", "test/acc"}


def test_a_model_that_chooses_its_own_optimizer_is_told_the_group_is_unused(tmp_path, caplog):
    model = {"_target_": "test_fork.OwnOptimizerClassifier"}
    with caplog.at_level(logging.WARNING, logger="litforge"):
        train_own(tmp_path, model, {"_target_": "test_fork.PlainWine"}, "optimizer=adam")
    assert (
        "OwnOptimizerClassifier takes no `optimizer` argument, so optimizer=torch.optim.Adam"
        in (caplog.text)
    )
    assert read_metrics(tmp_path)["status"] == "completed"


def test_a_size_neither_the_config_nor_the_data_gives_is_one_message(tmp_path):
    model = {"_target_": "test_fork.PlainClassifier"}
    cfg = make_cfg(tmp_path)
    cfg.model = OmegaConf.create(model)
    with pytest.raises(UserError, match=r"needs num_features, num_classes: neither its config"):
        build.module(cfg, torch.nn.Identity())  # a data module that knows no sizes


def test_a_monitor_the_module_does_not_log_names_what_it_logs(tmp_path):
    model = {"_target_": "test_fork.PlainClassifier"}
    with pytest.raises(UserError, match=r"monitor=val/f1 is not a metric PlainClassifier logs; "):
        train_own(tmp_path, model, {"_target_": "test_fork.PlainWine"}, "monitor=val/f1",
                  "monitor_mode=max")  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "it logged" in metrics["error"]
    assert "it logged val/acc, val/loss by the end" in metrics["error"]


# --- the same, as a forker does it: files in a copy of the repo, the real command line ----------

PLAIN_MODEL = '''

class PlainClassifier(L.LightningModule):
    """A LightningModule as Lightning's docs write one (added by a forker)."""

    def __init__(self, num_features: int, num_classes: int, optimizer, width: int = 32):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.net = nn.Sequential(
            nn.Linear(num_features, width), nn.ReLU(), nn.Linear(width, num_classes)
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("test/loss", F.cross_entropy(logits, y))
        self.log("test/acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return self.optimizer(self.parameters())
'''
PLAIN_DATA = '''

class PlainWine(L.LightningDataModule):
    """A LightningDataModule as Lightning's docs write one (added by a forker)."""

    def __init__(self, batch_size: int = 32):
        super().__init__()
        self.batch_size = batch_size
        self.num_classes = 3

    def setup(self, stage=None):
        from sklearn.datasets import load_wine
        from torch.utils.data import TensorDataset

        x, y = load_wine(return_X_y=True)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        x, y = torch.as_tensor(x, dtype=torch.float32)[order], torch.as_tensor(y)[order]
        x = (x - x[:124].mean(0)) / x[:124].std(0)
        self.num_features = x.shape[1]
        self.train = TensorDataset(x[:124], y[:124])
        self.val, self.test = TensorDataset(x[124:151], y[124:151]), TensorDataset(x[151:], y[151:])

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=64)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=64)
'''


@pytest.mark.slow
def test_a_plain_lightning_pair_in_a_copy_of_the_repo_trains_through_the_cli(tmp_path):
    project = tmp_path / "project"
    copy_repo(project)
    package = project / "src" / "litforge"
    models = (package / "models.py").read_text()
    models = models.replace("import torch\n", "import lightning as L\nimport torch\n", 1)
    (package / "models.py").write_text(models + PLAIN_MODEL)
    data = (
        (package / "data.py")
        .read_text()
        .replace("import numpy", "import lightning as L\nimport numpy", 1)
    )
    (package / "data.py").write_text(data + PLAIN_DATA)
    (project / "conf" / "model" / "plain.yaml").write_text(
        "# A plain LightningModule of my own.\n"
        "_target_: litforge.models.PlainClassifier\nwidth: 16\n"
    )
    (project / "conf" / "data" / "plain_wine.yaml").write_text(
        "# Wine through a plain LightningDataModule of my own.\n"
        "_target_: litforge.data.PlainWine\nbatch_size: 32\n"
    )
    env = {**os.environ, "PYTHONPATH": str(project / "src")}  # the copy, not this checkout

    def cli_here(*args):
        result = subprocess.run(
            [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, (args, result.stderr[-3000:])
        return result

    run = tmp_path / "run"
    first = cli_here("-m", "litforge.train", "data=plain_wine", "model=plain", "max_epochs=3",
                     f"hydra.run.dir={run}")  # fmt: skip
    assert "PlainClassifier is not a litforge module" in first.stderr + first.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["global_step"] == 12
    assert metrics["test"].keys() == {"test/loss", "test/acc"}
    assert metrics["best"]["checkpoint"] == "checkpoints/best.ckpt"
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "hparams.yaml", ".hydra"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*"))
    params, tags = hparams_entry(run)
    assert params["model"].string_value == "plain" and params["data"].string_value == "plain_wine"
    assert set(tags) == {"val/loss_best", "test/loss", "test/acc"}

    cli_here("-m", "litforge.train", f"resume={run}", "max_epochs=5")  # two more epochs
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["status"] == "completed" and resumed["global_step"] == 20
    assert len(resumed["history"]["val/loss"]) == 5

    best = run / "checkpoints" / "best.ckpt"
    cli_here("-m", "litforge.eval", f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}")
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]
    assert evaluated == resumed["test"]

    sweep = tmp_path / "sweep"
    cli_here("-m", "litforge.train", "-m", "data=plain_wine", "model=plain", "max_epochs=2",
             "seed=0,1", f"hydra.sweep.dir={sweep}")  # fmt: skip
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and all(",completed," in row for row in summary[1:])
