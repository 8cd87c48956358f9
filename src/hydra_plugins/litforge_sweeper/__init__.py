"""litforge's Optuna sweeper for Hydra (`hparams_search=optuna`), on Optuna's public API.

It reads the configuration hydra-optuna-sweeper users know (`hydra.sweeper.n_trials`,
`direction`, `storage`, `study_name`, `sampler`, `params` with `choice`, `range`, `interval`
and `tag(log, ...)`) and adds what that plugin lacks: `n_trials` counts the whole study, so a
rerun continues it (interrupted trials resume from their last.ckpt), job n is trial n, failed
trials are recorded and the search goes on, list-valued choices, and pruning
(`hydra.sweeper.pruner`: median, hyperband or none) from inside each job.

Hydra loads plugins only from the `hydra_plugins` package, hence this folder beside `litforge`,
and imports every module in it at every start: optuna is imported only when a search runs
(litforge/run/study.py does the work; litforge/engine/pruning.py is the job's side).
"""

# no `from __future__ import annotations`: OmegaConf reads the dataclasses' types at run time,
# and Hydra loads this module in a way dataclasses cannot resolve string annotations in
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    multivariate: bool = False


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConf:
    """Every combination of the choices and ranges once (intervals cannot be gridded)."""

    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True  # the search space comes from `params` when the search starts
    seed: int | None = None


@dataclass
class QMCSamplerConf:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: int | None = None


@dataclass
class MedianPrunerConf:
    """Stop a trial whose monitored value is worse than the median of earlier trials' at the
    same epoch, once `n_startup_trials` trials have finished and after `n_warmup_steps` epochs."""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 2
    n_warmup_steps: int = 3
    interval_steps: int = 1


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"  # the most epochs a finished trial ran
    reduction_factor: int = 3


@dataclass
class NopPrunerConf:
    """No pruning: every trial runs to its own end."""

    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.litforge_sweeper.OptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    direction: str = "minimize"  # or maximize (one objective: the job's best monitored value)
    storage: str | None = None  # e.g. sqlite:///outputs/multiruns/search/optuna.db
    study_name: str | None = None
    n_trials: int = 20  # trials of the whole study, over all reruns
    n_jobs: int = 1  # trials launched at once (with a parallel launcher)
    params: dict[str, str] | None = None  # key: choice(...), range(...), interval(...)


store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="litforge")
for name, node in {
    "tpe": TPESamplerConf,
    "random": RandomSamplerConf,
    "grid": GridSamplerConf,
    "qmc": QMCSamplerConf,
}.items():
    store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="litforge")
for name, node in {
    "median": MedianPrunerConf,
    "hyperband": HyperbandPrunerConf,
    "none": NopPrunerConf,
}.items():
    store.store(group="hydra/sweeper/pruner", name=name, node=node, provider="litforge")


class OptunaSweeper(Sweeper):
    """Asks Optuna for trials, launches them as Hydra jobs and tells Optuna how they ended."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.launcher = self.config = self.hydra_context = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from litforge.errors import exit_on_error
        from litforge.run.study import Search
        from litforge.run.sweep import SweepStop

        def search() -> None:
            Search(self.config, self.launcher, self.validate_batch_is_legal, **self.settings).run(
                arguments
            )

        try:
            exit_on_error(search)  # a mistake is one message, not a traceback
        except SystemExit:
            SweepStop.refused()  # rerunning the same command would not continue it
            raise
