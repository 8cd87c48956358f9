"""MLflow and Weights & Biases: Lightning's loggers, set up for a litforge run on one machine.

`logger=mlflow` keeps every run in one local SQLite tracking store (`outputs/mlflow.db`, the
artifacts in `outputs/mlartifacts`), which `make mlflow` serves with `mlflow ui`.
`logger=wandb` runs offline: no account and no network; the run's files go to
`<run folder>/wandb/offline-run-*` and `wandb sync` uploads them later. Each run is named by its
folder (a sweep's job: `3_optimizer=adam,seed=1`), a sweep's jobs go to an MLflow experiment
(a W&B group) named by the sweep's folder. Like TensorBoard's HParams entry, each gets
the run's params when training starts (train.py) and its final metrics when it ends: the test
metrics as Lightning logs them, and the best monitored value (`val/loss_best`, run/record.py).
Several loggers at once: `logger=[tensorboard,mlflow]`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from litforge.engine import compat


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLFlowLogger with a SQLite store whose folder is made, artifacts at an
    absolute location (the store outlives the working directory), and no notice on the first
    run that it creates the experiment."""

    def __init__(self, tracking_uri: str, artifact_location: str | None = None, **kwargs) -> None:
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if artifact_location and "://" not in artifact_location:
            artifact_location = Path(artifact_location).resolve().as_uri()
        import mlflow  # noqa: F401  (it sets up its loggers as it is imported: quiet them after)

        logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)
        for name in ("mlflow", "alembic"):  # the store's set-up lines
            logging.getLogger(name).setLevel(logging.WARNING)
        super().__init__(tracking_uri=tracking_uri, artifact_location=artifact_location, **kwargs)


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, offline by default and quiet (its notices go to the run's debug
    log, not the console), and finished once the run's last metrics are in: the offline run's
    record (`run-*.wandb`, what `wandb sync` uploads) is complete when the run ends."""

    def __init__(self, offline: bool = True, **kwargs: Any) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        super().__init__(offline=offline, **kwargs)
        compat.drop_wandb_init_argument(self, "anonymous")

    def finish(self, status: str) -> None:
        """End the W&B run (Lightning leaves it to the interpreter's exit)."""
        self.experiment.finish(exit_code=0 if status == "success" else 1)


def named(logger_cfg: dict[str, Any], run_name: str, sweep: str | None) -> dict[str, Any]:
    """The logger's settings with the run's names where the user gave none: the run is named by
    its folder; a sweep's jobs go to an MLflow experiment (a W&B group) named by the sweep's
    folder, single runs to the experiment `litforge`."""
    kind = str(logger_cfg.get("_target_", "")).rsplit(".", 1)[-1]
    defaults = {
        "MLFlowLogger": {"run_name": run_name, "experiment_name": sweep or "litforge"},
        "WandbLogger": {"name": run_name, "group": sweep},
    }.get(kind, {})
    return {**logger_cfg, **{k: v for k, v in defaults.items() if not logger_cfg.get(k)}}


def sweep_name() -> str | None:
    """The folder name of the sweep this run is a job of (a Hydra multirun), or None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(str(HydraConfig.get().sweep.dir)).name
