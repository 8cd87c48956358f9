"""Every private attribute of Lightning, torchmetrics, TensorBoard, Hydra or W&B litforge uses.

One small function each, so an upgrade that moves one breaks here, in one place, and the test of
that function (tests/test_compat.py) names it. The versions they were written for are the ones in
constraints.txt (lightning 2.6, torchmetrics 1.9, hydra-core 1.3, torch 2.13).
"""

from __future__ import annotations

from typing import Any

# --- Lightning's fit loop: progress counters the fast path keeps as Lightning's loop would ----


def optimizer_step_counters(trainer) -> tuple[Any, Any]:
    """The optimizer steps counted by Lightning's automatic loop and by its manual one.

    `trainer.global_step` reads the one the module's `automatic_optimization` names.
    """
    loop = trainer.fit_loop.epoch_loop
    return (
        loop.automatic_optimization.optim_progress.optimizer.step.total,
        loop.manual_optimization.optim_step_progress.total,
    )


def count_manual_optimizer_step(trainer) -> None:
    """One optimizer step taken on the fast path (manual optimization): `global_step` + 1."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    progress.increment_ready()
    progress.increment_completed()


def logging_step(trainer) -> int:
    """The step Lightning hands to loggers now (`_batches_that_stepped`)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def set_logging_step(trainer, step: int) -> None:
    """The step Lightning hands to loggers (`_batches_that_stepped`), as at a batch's end."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = step


def skip_next_validation(trainer) -> None:
    """Lightning's loop does not validate a partial epoch that `max_steps` ended."""
    trainer.fit_loop.epoch_loop._skip_next_val = True


def batches_done_this_epoch(trainer) -> int:
    """Training batches of the current epoch whose step has run (the current one included)."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


# --- Lightning's ModelCheckpoint -----------------------------------------------------------------


def saves_every_n_train_steps(callback) -> bool:
    """A ModelCheckpoint that saves between epochs, every n optimizer steps or every interval."""
    return bool(callback._every_n_train_steps) or callback._train_time_interval is not None


# --- torchmetrics ---------------------------------------------------------------------------------


def mark_metric_updated(metric) -> None:
    """What `Metric.update()` records besides the states: updated once more, no cached result."""
    metric._update_count += 1
    metric._computed = None


# --- TensorBoard and Lightning's TensorBoardLogger ----------------------------------------------


def event_file_writer(summary_writer):
    """The FileWriter under torch's SummaryWriter: it takes a whole `Summary` proto at once."""
    return summary_writer._get_file_writer()


def logger_prefixed(logger, metrics: dict) -> dict:
    """Metric names with the logger's `prefix` put in front, as Lightning's loggers do."""
    from lightning.fabric.utilities.logger import _add_prefix

    return _add_prefix(metrics, logger._prefix, logger.LOGGER_JOIN_CHAR)


# --- Lightning's precision names -----------------------------------------------------------------


def precision_values() -> tuple[list, list[str]]:
    """(every value Trainer(precision=...) accepts, the aliases mapped to their full names)."""
    import typing

    from lightning.fabric.plugins.precision import precision

    accepted = [
        *typing.get_args(precision._PRECISION_INPUT_INT),
        *typing.get_args(precision._PRECISION_INPUT_STR_ALIAS),
        *typing.get_args(precision._PRECISION_INPUT_STR),
    ]
    return accepted, dict(precision._PRECISION_INPUT_STR_ALIAS_CONVERSION)


# --- Hydra ---------------------------------------------------------------------------------------


def locate(path: str) -> Any:
    """The object a `_target_` names, found as `instantiate` finds it, without its error log."""
    from hydra._internal.utils import _locate

    return _locate(path)


def sweep_jobs(overrides: list) -> list[list[str]]:
    """One override list per job of parsed sweep overrides, as Hydra's basic sweeper makes them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper.split_arguments(overrides, None)[0]


def compose_sweep_job_with(loader, compose) -> None:
    """Make Hydra's config loader compose sweep jobs with `compose(master, overrides)`."""
    loader.load_sweep_config = compose


def own_compose_sweep_job(loader):
    """The config loader's own `load_sweep_config`, bound to it (whatever stands in for it)."""
    return type(loader).load_sweep_config.__get__(loader)


# --- Lightning's WandbLogger ---------------------------------------------------------------------


def drop_wandb_init_argument(logger, name: str) -> None:
    """Leave `name` out of what Lightning's WandbLogger hands to `wandb.init` (it passes
    `anonymous=None` always, which wandb 0.31 answers with a deprecation warning)."""
    logger._wandb_init.pop(name, None)
