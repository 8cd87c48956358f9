"""What a run leaves for people and sweeps: metrics.json and its TensorBoard HParams entry."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # imported where used: a config error is reported before torch loads
    import lightning as L

# EarlyStopping's stopping_reason (an EarlyStoppingReason) -> metrics.json's stopped_by
STOP_REASONS = {
    "STOPPING_THRESHOLD": "threshold",
    "PATIENCE_EXHAUSTED": "early_stopping",
    "NON_FINITE_METRIC": "divergence",
    "DIVERGENCE_THRESHOLD": "divergence",
}

# knobs every run's HParams entry carries, so all jobs of a sweep share the same keys
HPARAM_KNOBS = (
    "seed",
    "precision",
    "accumulate_grad_batches",
    "max_epochs",
    "optimizer.lr",
    "data.batch_size",
    "model.hidden_dims",
    "model.dropout",
    "tags",
)


RESERVE_BYTES = 64 * 1024  # a metrics.json with a long history is ~10-40 KB


class RunRecord:
    """metrics.json of one run; `write()` is safe to call on every exit path."""

    def __init__(self, output_dir: Path, monitor: str, overrides: list[str]) -> None:
        self.path = Path(output_dir) / "metrics.json"
        self.started = time.perf_counter()
        self.fitted = False
        self.training_began = False  # the checkpoint (if any) is restored: it writes from now
        self.data: dict[str, Any] = {
            "status": "running",
            "error": None,
            "stopped_by": None,
            "epochs": 0,
            "global_step": 0,
            "monitor": monitor,
            "best": None,
            "val": {},
            "test": {},
            "overrides": overrides,
            "wall_time_s": None,
            "history": {},
        }

    def start_clock(self) -> None:
        """wall_time_s counts from here: the run's own time, once torch and lightning are loaded
        (what a sweep's job costs beyond the process it runs in)."""
        self.started = time.perf_counter()

    def update_from(self, trainer: L.Trainer) -> None:
        """Epochs, steps, best value and why training stopped, as the trainer saw them."""
        from litforge.run.history import EpochHistory

        self.fitted = True
        self.data["epochs"] = trainer.current_epoch
        self.data["global_step"] = trainer.global_step
        self.data["stopped_by"] = stopped_by(trainer)
        history = next((c for c in trainer.callbacks if isinstance(c, EpochHistory)), None)
        if history is None:
            return
        self.data["history"] = history.columns()
        best = history.best()
        if best is not None:
            ckpt = trainer.checkpoint_callback
            path = getattr(ckpt, "best_model_path", "") or None
            if path:
                path = os.path.relpath(path, self.path.parent)
            monitor = self.data["monitor"]
            self.data["best"] = {"value": best[monitor], "epoch": best["epoch"], "checkpoint": path}
            self.data["val"] = {k: v for k, v in best.items() if k.startswith("val")}

    def finish(self, status: str, error: str | None = None, stopped_by: str | None = None) -> None:
        self.data["status"] = status
        self.data["error"] = error
        if stopped_by is not None:
            self.data["stopped_by"] = stopped_by
        self.data["wall_time_s"] = round(time.perf_counter() - self.started, 3)

    @property
    def best_value(self) -> float:
        best = self.data["best"]
        return float(best["value"]) if best else math.nan

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(".metrics.json.reserve")

    def reserve(self) -> None:
        """Hold RESERVE_BYTES of the run's disk, so metrics.json still fits if the disk fills up
        (a checkpoint or event file taking the last of it): write() gives it back first."""
        if is_rank_zero():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # a disk already full: no reserve to hold
                self.reserve_path.write_bytes(bytes(RESERVE_BYTES))

    def write(self) -> None:
        """Write atomically (a reader never sees half a file), from rank zero only."""
        if not is_rank_zero():  # under DDP every process runs train(); one file
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_finite_or_null(self.data), indent=2) + "\n"
        tmp = self.path.with_suffix(".json.tmp")
        try:
            tmp.write_text(text)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            if err.errno != errno.ENOSPC or not self.reserve_path.is_file():
                raise
            self.reserve_path.unlink()  # the disk is full: the reserve makes room for it
            try:
                tmp.write_text(text)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
        tmp.replace(self.path)
        self.reserve_path.unlink(missing_ok=True)


def is_rank_zero() -> bool:
    """Lightning's rank-zero test; before Lightning is loaded (a config error) every process is
    rank zero: no process group can have started yet."""
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    return rank_zero is None or rank_zero.rank_zero_only.rank == 0


def stopped_by(trainer: L.Trainer) -> str:
    from lightning.pytorch.callbacks import EarlyStopping

    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopping_reason.name in STOP_REASONS:
            return STOP_REASONS[callback.stopping_reason.name]
    return "max_epochs"


def hparams(cfg: DictConfig, choices: dict[str, str], overrides: list[str]) -> dict[str, Any]:
    """The run's chosen group options and knobs, flat, with TensorBoard-friendly values."""
    params: dict[str, Any] = {
        group: str(option) for group, option in choices.items() if not group.startswith("hydra")
    }
    keys = list(HPARAM_KNOBS)
    for override in overrides:  # a swept key that is not a group choice or a knob
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in params and key not in keys:
            keys.append(key)
    for key in keys:
        value = OmegaConf.select(cfg, key, default=None)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)  # tags=[a,b] reads as a,b
        params[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return params


def best_tag(monitor: str) -> str:
    """The scalar that holds a run's best monitored value: `val/loss_best` beside `val/loss`."""
    return f"{monitor}_best"


def final_metrics(record: RunRecord, metric_names: list[str]) -> dict[str, float]:
    """Best monitored value and test metrics, by the scalar names TensorBoard reads them from;
    NaN where a run never got there."""
    metrics = {best_tag(record.data["monitor"]): record.best_value}
    for name in metric_names:
        metrics[name] = float(record.data["test"].get(name, math.nan))
    return metrics


def log_hparams(
    trainer: L.Trainer,
    params: dict[str, Any],
    metrics: dict[str, float],
    in_sweep: bool,
    status: str = "completed",
) -> None:
    """The run's final metrics for every logger: one HParams entry per run in TensorBoard (no
    placeholder hp_metric; a sweep's job leaves the experiment's columns to its sweep,
    run/hparams.py); the best value beside the test metrics Lightning logged for the others
    (MLflow, W&B, CSV), which got the params when training started; a failed run is marked
    so."""
    from lightning.pytorch.loggers import TensorBoardLogger

    best = next(iter(metrics))  # the best value: the one final metric no scalar holds yet
    scalars = {best: metrics[best]} if math.isfinite(metrics[best]) else {}
    for logger in trainer.loggers:
        if hasattr(logger, "log_final"):  # litforge's TensorBoard writer
            logger.log_final(params, metrics, scalars, trainer.global_step, not in_sweep)
        elif isinstance(logger, TensorBoardLogger):  # Lightning's own, a forker's: its hp/ way
            logger.log_hyperparams(params, metrics)
        elif scalars:
            logger.log_metrics(scalars, step=trainer.global_step)
        # MLflow marks the run FINISHED or FAILED, W&B its exit code
        outcome = "success" if status in ("completed", "pruned") else "failed"
        logger.finalize(outcome)
        if hasattr(logger, "finish"):  # W&B: its run's record is complete once it finishes
            logger.finish(outcome)


def _finite_or_null(value: Any) -> Any:
    """JSON has no NaN or infinity: write null for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return value
