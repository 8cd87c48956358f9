"""A job's side of an Optuna search's pruning (hparams_search=optuna, run/study.py the sweep's).

Each epoch the job reports its monitored value to its trial, in the study's own storage, and
asks the study's pruner (`hydra.sweeper.pruner`) whether to go on. A pruned job stops after
that epoch as early stopping does (best.ckpt is tested); metrics.json says `"status":
"pruned"`, and the sweeper records the trial as PRUNED. Job n is trial n of the study, so the
job finds its trial by its job number, whichever launcher runs it (this process, joblib,
submitit).
"""

from __future__ import annotations

import logging
import math

import lightning as L
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

SWEEPER = "hydra_plugins.litforge_sweeper.OptunaSweeper"


class TrialPruning(Callback):
    """Reports `monitor` at every training epoch's end; stops the run when the pruner says so."""

    def __init__(self, trial, reported: set[int], monitor: str, pruner_name: str) -> None:
        self.trial, self.monitor, self.pruner_name = trial, monitor, pruner_name
        self.reported = reported  # a resumed trial reported the epochs before its checkpoint
        self.pruned_epoch: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value, epoch = float(value), trainer.current_epoch
        prune = False
        if trainer.is_global_zero and math.isfinite(value):
            if epoch not in self.reported:
                self.trial.report(value, step=epoch)
                self.reported.add(epoch)
            prune = self.trial.should_prune()
        if trainer.strategy.reduce_boolean_decision(prune, all=False):
            self.pruned_epoch = epoch
            trainer.should_stop = True
            log.info(
                "pruned after epoch %d: %s %.4g is not promising (%s)",
                epoch,
                self.monitor,
                value,
                self.pruner_name,
            )


def trial_pruning(cfg: DictConfig) -> TrialPruning | None:
    """The pruning callback for this job if it is a trial of a search with a pruner, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    if hydra_cfg.mode != RunMode.MULTIRUN or sweeper.get("_target_") != SWEEPER:
        return None
    pruner_target = str(sweeper.pruner._target_)
    if pruner_target.endswith("NopPruner"):
        return None
    import optuna
    from hydra.utils import instantiate

    from litforge.engine.studies import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(sweeper.storage)
    if storage is None:
        log.warning("no pruning: the search has no hydra.sweeper.storage to report to")
        return None
    study = optuna.load_study(
        study_name=sweeper.study_name, storage=storage, pruner=instantiate(sweeper.pruner)
    )
    number = hydra_cfg.job.num
    stored = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if stored is None or stored.state != optuna.trial.TrialState.RUNNING:
        log.warning("no pruning: trial %d of study %s is not running", number, study.study_name)
        return None
    study_id = storage.get_study_id_from_name(study.study_name)
    trial = optuna.trial.Trial(
        study, storage.get_trial_id_from_study_id_trial_number(study_id, number)
    )
    reported = set(stored.intermediate_values)
    return TrialPruning(trial, reported, str(cfg.monitor), pruner_target.rsplit(".", 1)[-1])
