"""Hydra's Optuna sweeper, made to continue a stored study where it stopped (hparams_search=optuna).

Hydra only loads plugins from the `hydra_plugins` package, hence this folder beside `litforge`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)


class ResumableOptunaSweeper(OptunaSweeper):
    """`n_trials` counts the whole study, so a rerun with the same study name finishes it.

    The upstream sweeper loads a stored study but then runs `n_trials` more trials and numbers
    its jobs from 0 again, so the new jobs' folders overwrite the first ones. Here a rerun runs
    only the trials still missing and numbers its jobs after the study's trials (job n is trial
    n), with a freshly seeded sampler so it does not suggest the first run's trials again. The
    sweep folder is made first, since the SQLite file lives in it.
    """

    def sweep(self, arguments: list[str]) -> None:
        impl = self.sweeper  # the plugin's OptunaSweeperImpl, set up by Hydra
        Path(impl.sweep_dir).mkdir(parents=True, exist_ok=True)
        trials = stored_trials(impl.storage, impl.study_name)
        finished = sum(trial.state.is_finished() for trial in trials)
        if trials:
            log.info(
                "Study %s has %d trials, %d finished: running %d more",
                impl.study_name,
                len(trials),
                finished,
                max(impl.n_trials - finished, 0),
            )
            if hasattr(impl.sampler, "reseed_rng"):  # the grid sampler is still a partial here
                # a seeded sampler would otherwise suggest the first run's trials again
                impl.sampler.reseed_rng()
        impl.job_idx = len(trials)
        impl.n_trials = max(impl.n_trials - finished, 0)
        try:
            return super().sweep(arguments)
        except ValueError:  # optuna's "No trials are completed yet", asked for the best trial
            if any(
                t.state.name == "COMPLETE" for t in stored_trials(impl.storage, impl.study_name)
            ):
                raise
            log.error(
                "No trial of study %s completed: the jobs' metrics.json say why", impl.study_name
            )
            return None


def stored_trials(storage: str | None, study_name: str | None) -> list:
    """The trials of the stored study, [] if there is no such study (yet)."""
    if storage is None or study_name is None:
        return []
    import optuna

    try:
        return optuna.load_study(study_name=study_name, storage=storage).trials
    except KeyError:  # optuna's answer for a study name the storage does not hold
        return []
