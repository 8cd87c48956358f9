"""The one place that calls hydra.utils.instantiate; everything below it takes plain arguments."""

from __future__ import annotations

import logging
import warnings

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from litforge import checks
from litforge.chunks import FastPath
from litforge.data import TabularDataModule
from litforge.divergence import StopOnDivergence
from litforge.history import ConfigInCheckpoint, EpochHistory
from litforge.loop import BatchSeed, GracefulStop
from litforge.models import ClassificationModule, RegressionModule, TabularModule

TASK_OF_MODULE = {RegressionModule: "regression", ClassificationModule: "classification"}


def datamodule(cfg: DictConfig) -> TabularDataModule:
    """The data, loaded and split (the model's input and output sizes come from it)."""
    dm = instantiate(cfg.data, order_seed=cfg.seed)
    dm.setup("fit")
    k = cfg.trainer.get("accumulate_grad_batches", 1)
    checks.check_accumulation(len(dm.splits["train"][0]), dm.batch_size, k)
    return dm


def module(cfg: DictConfig, dm: TabularDataModule) -> TabularModule:
    """The LightningModule, sized by the data: num_features, num_classes, target scale."""
    checks.check_task(TASK_OF_MODULE.get(get_class(cfg.model._target_)), dm.task)
    sizes = {"num_features": dm.num_features}
    if dm.task == "classification":
        sizes["num_classes"] = dm.num_classes
    else:
        sizes |= {"target_mean": dm.y_mean, "target_std": dm.y_std}
    return instantiate(
        cfg.model,
        **sizes,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        monitor=cfg.monitor,
        _convert_="all",
    )


def callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks group, early stopping, and the ones every run has (history, exact resume,
    the fast path)."""
    built = [instantiate(c) for c in (cfg.callbacks or {}).values() if c]
    if cfg.early_stopping:
        built.append(instantiate(cfg.early_stopping))
    return [
        *built,
        EpochHistory(cfg.monitor, cfg.monitor_mode),
        ConfigInCheckpoint(resolved(cfg)),
        StopOnDivergence(),
        BatchSeed(cfg.seed),
        GracefulStop(),
        FastPath(cfg.get("steps_per_call", 1)),
    ]


def resolved(cfg: DictConfig) -> dict:
    """The run's config as plain data, interpolations resolved, Hydra's own node left out."""
    keys = [key for key in cfg if key != "hydra"]
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)


def trainer(cfg: DictConfig, with_logger: bool = True, ckpt_path: str | None = None) -> L.Trainer:
    """The Trainer with the configured device, precision, callbacks and logger."""
    quiet_lightning()
    checks.check_accelerator(str(cfg.trainer.accelerator))
    strategy = strategy_for_sweeps(cfg.trainer.strategy)
    cbs = callbacks(cfg)
    logger = build_logger(cfg, ckpt_path) if with_logger and cfg.logger else False
    if ckpt_path:  # a resumed run writes into its own checkpoints/ folder again, as it should
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    if not logger:  # the learning-rate monitor refuses to run without a logger
        cbs = [c for c in cbs if type(c).__name__ != "LearningRateMonitor"]
    return instantiate(
        cfg.trainer,
        callbacks=cbs,
        logger=logger,
        strategy=strategy,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in cbs),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in cbs),
    )


def build_logger(cfg: DictConfig, ckpt_path: str | None) -> Logger:
    """The configured logger; resuming TensorBoard hides what was logged after the checkpoint."""
    if ckpt_path and issubclass(get_class(cfg.logger._target_), TensorBoardLogger):
        from litforge.resume import checkpoint_step

        # a killed run may have logged steps past its last checkpoint; purge_step makes
        # TensorBoard drop them when the resumed run logs those steps again
        return instantiate(cfg.logger, purge_step=checkpoint_step(ckpt_path))
    return instantiate(cfg.logger)


def strategy_for_sweeps(strategy: str) -> str:
    """DDP inside a local multirun job starts its processes with ddp_spawn.

    Lightning's `ddp` starts the other processes by re-running the command line, which inside a
    Hydra multirun would start the whole sweep again. Under SLURM (hydra/launcher=slurm), SLURM
    starts one task per device itself and `ddp` stays.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.fabric.plugins.environments import SLURMEnvironment

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if strategy == "ddp" and multirun and not SLURMEnvironment.detect():
        logging.getLogger("litforge").info("DDP inside a local sweep job: using ddp_spawn")
        return "ddp_spawn"
    return strategy


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_lightning() -> None:
    """Hydra owns logging: drop Lightning's second console handler (every line twice) and tips."""
    logging.getLogger("lightning").handlers.clear()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropAdverts())
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # small data sets have fewer batches than log_every_n_steps; the epoch metrics still log
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
