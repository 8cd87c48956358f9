"""The one place that calls hydra.utils.instantiate; everything below it takes plain arguments."""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from litforge import rules
from litforge.engine import DataModule, TabularDataModule
from litforge.engine.callbacks import BatchSeed, GracefulStop, MonitorLogged, StopOnDivergence
from litforge.engine.checkpoints import ConfigInCheckpoint
from litforge.engine.fastpath import FastPath
from litforge.errors import UserError
from litforge.run.history import EpochHistory

log = logging.getLogger("litforge")


def datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The data module, prepared and set up for fitting (the model's sizes come from it)."""
    cls = get_class(cfg.data._target_)
    extra = {"order_seed": cfg.seed} if issubclass(cls, DataModule) else {}  # the batch order
    dm = instantiate(cfg.data, **extra, _convert_="all")  # plain lists: checkpoints hold data
    dm.prepare_data()
    dm.setup("fit")
    if isinstance(dm, TabularDataModule):
        k = cfg.trainer.get("accumulate_grad_batches", 1)
        rules.check_accumulation(len(dm.splits["train"][0]), dm.batch_size, k)
    return dm


def module(cfg: DictConfig, dm: L.LightningDataModule) -> L.LightningModule:
    """The model, given what its constructor asks for and the YAML leaves out: the optimizer and
    scheduler partials, `monitor`, and sizes the data module knows (`num_features`, ...)."""
    cls = get_class(cfg.model._target_)
    rules.check_task(getattr(cls, "task", None), getattr(dm, "task", None))
    wanted = [name for name in parameters(cls) if name not in cfg.model]
    offered: dict[str, Any] = {"monitor": cfg.monitor}
    offered["scheduler"] = instantiate(cfg.scheduler, _convert_="all") if cfg.scheduler else None
    offered["optimizer"] = instantiate(cfg.optimizer, _convert_="all")
    if "optimizer" not in wanted:
        log.warning(
            "%s takes no `optimizer` argument, so optimizer=%s is not used: its own "
            "configure_optimizers() decides. Add `optimizer` to its constructor to use the "
            "optimizer group.",
            cls.__name__,
            cfg.optimizer.get("_target_"),
        )
    offered |= data_sizes(dm, [name for name in wanted if name not in offered])
    kwargs = {name: offered[name] for name in wanted if name in offered}
    try:
        return instantiate(cfg.model, **kwargs, _convert_="all")
    except InstantiationException as err:
        missing = [name for name in required(cls) if name not in cfg.model and name not in kwargs]
        if not missing:
            raise
        raise UserError(
            f"model={cfg.model._target_} needs {', '.join(missing)}: neither its config nor the "
            f"data module ({type(dm).__name__}) gives {'it' if len(missing) == 1 else 'them'}. "
            f"Add model.{missing[0]}=... to the model's YAML, or give the data module an "
            f"attribute {missing[0]} (sizes the data knows reach the model by name)."
        ) from err


def parameters(cls: type) -> list[str]:
    """The names a class's constructor takes by keyword."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(cls).parameters.values() if p.kind in kinds]


def required(cls: type) -> list[str]:
    empty = inspect.Parameter.empty
    params = inspect.signature(cls).parameters
    return [name for name in parameters(cls) if params[name].default is empty]


# the data module's own knobs, not sizes the data knows: never handed to the model
DATA_KNOBS = {"batch_size", "val_fraction", "test_fraction", "seed", "shuffle", "order_seed"}


def data_sizes(dm: L.LightningDataModule, names: list[str]) -> dict[str, Any]:
    """What only the data knows, of `names`: the data module's public attributes, but its knobs
    (batch size, split, seeds) and what every LightningDataModule has (`trainer`, `hparams`)."""
    sizes = {}
    for name in names:
        if name.startswith("_") or name in DATA_KNOBS or hasattr(L.LightningDataModule, name):
            continue
        try:
            value = getattr(dm, name)
        except AttributeError:
            continue
        if not callable(value):
            sizes[name] = value
    return sizes


def callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks group, early stopping, and the ones every run has (history, exact resume,
    the fast path)."""
    # a node without a _target_ holds keys an experiment set on a group the command turned off
    # (`experiment=digits early_stopping=none` leaves {patience: 20}): nothing to build
    built = [instantiate(c) for c in (cfg.callbacks or {}).values() if c and "_target_" in c]
    if cfg.early_stopping and "_target_" in cfg.early_stopping:
        built.append(instantiate(cfg.early_stopping))
    return [
        MonitorLogged(cfg.monitor),  # first: it names what was logged before others complain
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


def trainer(
    cfg: DictConfig,
    with_logger: bool = True,
    ckpt_path: str | None = None,
    purge_step: int | None = None,
) -> L.Trainer:
    """The Trainer with the configured device, precision, callbacks and logger."""
    quiet_lightning()
    check_accelerator(str(cfg.trainer.accelerator))
    strategy = strategy_for_sweeps(cfg.trainer.strategy)
    cbs = callbacks(cfg)
    logger = build_logger(cfg, ckpt_path, purge_step) if with_logger and cfg.logger else False
    if ckpt_path:  # a resumed run writes into its own checkpoints/ folder again, as it should
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    if not logger:  # the learning-rate monitor refuses to run without a logger
        cbs = [c for c in cbs if not isinstance(c, LearningRateMonitor)]
    return instantiate(
        cfg.trainer,
        callbacks=cbs,
        logger=logger,
        strategy=strategy,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in cbs),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in cbs),
    )


def check_accelerator(accelerator: str) -> None:
    """Say which device= to use instead, before Lightning's deeper error."""
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} needs a CUDA GPU and torch sees none "
            "(torch.cuda.is_available() is False); use device=cpu, or device=auto to take a GPU "
            "only where there is one."
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            "device=mps needs Apple silicon with Metal (torch.backends.mps.is_available() is "
            "False); use device=cpu or device=auto."
        )


def build_logger(
    cfg: DictConfig, ckpt_path: str | None, purge_step: int | None = None
) -> list[Logger]:
    """The configured loggers (`logger=[tensorboard,mlflow]`: one each), MLflow and W&B runs
    named by the run folder; resuming TensorBoard hides what was logged after the checkpoint."""
    from pathlib import Path

    from litforge.engine.trackers import named, sweep_name

    if ckpt_path:
        from litforge.run.resume import checkpoint_step

        # a killed run may have logged steps past its last checkpoint; purge_step makes
        # TensorBoard drop them when the resumed run logs those steps again
        purge_step = checkpoint_step(ckpt_path)
    loggers = []
    for logger_cfg in cfg.logger.values():
        settings = OmegaConf.to_container(logger_cfg, resolve=True)
        settings = named(settings, Path(str(cfg.output_dir)).name, sweep_name())
        if (
            issubclass(get_class(settings["_target_"]), TensorBoardLogger)
            and purge_step is not None
        ):
            settings["purge_step"] = purge_step  # (0: a job run again drops its earlier attempt's)
        loggers.append(instantiate(settings))
    return loggers


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
        log.info("DDP inside a local sweep job: using ddp_spawn")
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
    # litforge's in-memory loader turns its shuffling off itself for overfit_batches
    warnings.filterwarnings("ignore", message=".*requested to overfit but enabled.*shuffling.*")
    # in-memory datasets need no worker processes (data.num_workers adds them)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
