"""An Optuna search run as a Hydra sweep (hparams_search=optuna; the plugin is in hydra_plugins/).

- The search space is `hydra.sweeper.params` plus the command's sweep overrides: `choice(...)`
  (values of any type: `choice([64],[64,64])` searches lists), `range(...)`, `interval(a, b)`,
  `tag(log, interval(...))`, `tag(int, interval(...))`; a plain `key=value` goes to every job.
- The study lives in its storage (SQLite in the sweep folder). `n_trials` counts the whole
  study: a rerun runs what is missing, first the trials an interrupted run left running (each
  resumes from its last.ckpt), then new ones. Job n is trial n.
- A job that fails is a FAIL trial and the search goes on; a job its pruner stopped
  (metrics.json: "pruned") is a PRUNED trial, a normal outcome.
- A changed search space for a stored study is refused: the study's trials would no longer
  compare.
- At the end: optimization_results.yaml, and the study's optimization history and parameter
  importances as PNGs beside summary.md.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litforge.engine.studies import open_storage
from litforge.errors import UserError
from litforge.run.summary import STUDY_PLOTS, read_metrics

log = logging.getLogger(__name__)

SPACE_ATTR = "litforge_search_space"  # the study's user attribute that records its space


class Search:
    def __init__(
        self,
        config: DictConfig,
        launcher: Any,
        validate_batch: Callable[[Any], None],
        *,
        sampler: Any,
        pruner: Any,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
    ) -> None:
        if str(direction) not in ("minimize", "maximize"):
            raise UserError(
                f"hydra.sweeper.direction={direction}: use minimize or maximize (litforge jobs "
                "return one value, the best monitored one)."
            )
        self.config, self.launcher, self.validate_batch = config, launcher, validate_batch
        self.sampler, self.pruner, self.direction = sampler, pruner, str(direction)
        self.storage_url, self.study_name = storage, study_name
        self.n_trials, self.n_jobs = int(n_trials), max(int(n_jobs), 1)
        self.params = dict(params or {})
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def run(self, arguments: list[str]) -> None:
        import optuna

        space, fixed = search_space([f"{k}={v}" for k, v in self.params.items()] + arguments)
        if not space:
            raise UserError(
                "hparams_search=optuna has nothing to search: give hydra.sweeper.params or "
                "sweep overrides such as 'optimizer.lr=tag(log, interval(1e-4, 0.1))'."
            )
        if callable(self.sampler) and not isinstance(self.sampler, optuna.samplers.BaseSampler):
            points = grid(space)
            self.sampler = self.sampler(points)  # the grid sampler, given its grid now
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in points.values()))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)  # the SQLite file lives in it
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # litforge says what happens
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(self.storage_url),
            sampler=self.sampler,
            pruner=self.pruner,
            direction=self.direction,
            load_if_exists=True,
        )
        check_same_space(study, space, self.storage_url)
        finished = [t for t in study.trials if t.state.is_finished()]
        left_running = [t for t in study.trials if t.state.name == "RUNNING"]
        todo = max(self.n_trials - len(finished), 0)
        if study.trials:
            log.info(
                "Study %s has %d trials, %d finished: running %d more%s",
                study.study_name,
                len(study.trials),
                len(finished),
                todo,
                f" ({len(left_running)} interrupted, resumed first)" if left_running else "",
            )
            if hasattr(self.sampler, "reseed_rng"):
                # a seeded sampler would otherwise suggest the first run's trials again
                self.sampler.reseed_rng()
        for trial in left_running[:todo]:  # an earlier run's, stopped: resume each in its folder
            self.launch(study, [trial.number], [overrides_of(trial.params, space, fixed)])
            todo -= 1
        while todo > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, todo))]
            numbers = [trial.number for trial in trials]
            self.launch(study, numbers, [overrides_of(t.params, space, fixed) for t in trials])
            todo -= len(trials)
        self.finish(study)

    def launch(self, study, numbers: list[int], overrides: list[list[str]]) -> None:
        """Run trials as jobs numbered as the trials (they are consecutive) and tell the study."""
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        batch = [tuple(o) for o in overrides]
        try:
            self.validate_batch(batch)
        except Exception as err:  # Hydra's composition error: a key that is not in the config
            for number in numbers:  # asked, never run: not left running for a rerun to resume
                study.tell(number, state=trial_state("FAIL"), skip_if_finished=True)
            raise UserError(
                f"a trial's overrides {' '.join(batch[0])} do not compose: {err}"
            ) from err
        returns = self.launcher.launch(batch, initial_job_idx=numbers[0])
        for number, ret in zip(numbers, returns, strict=True):
            state, value = outcome(ret)
            try:
                study.tell(number, value if state == "COMPLETE" else None, state=trial_state(state))
            except RuntimeError:
                # the grid sampler stops the study once its grid is visited, which Optuna
                # allows only inside study.optimize(); the trial is recorded by then
                if not study.trials[number].state.is_finished():
                    raise

    def finish(self, study) -> None:
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if not complete:
            log.error(
                "No trial of study %s completed: the jobs' metrics.json say why", study.study_name
            )
            return
        best = study.best_trial
        log.info("Best trial: %d, value %s, params %s", best.number, best.value, best.params)
        results = {
            "name": "optuna",
            "best_trial": best.number,
            "best_params": best.params,
            "best_value": best.value,
        }
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
        write_plots(study, self.sweep_dir)


def search_space(overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Optuna distributions for the swept keys; the other overrides as they were given. A key
    the command sets to one value is not searched (`optimizer=adam` fixes the optimizer)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(overrides):
        # the later of a key's overrides wins: the command's over hydra.sweeper.params
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return space, fixed


def distribution(override) -> Any:
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key, value = override.get_key_element(), override.value()
    if override.is_interval_sweep():
        if "int" in value.tags:
            return IntDistribution(int(value.start), int(value.end), log="log" in value.tags)
        return FloatDistribution(value.start, value.end, log="log" in value.tags)
    if override.is_range_sweep() and not value.shuffle:
        values = list(override.sweep_iterator())
        if not values:
            raise UserError(f"{key}: {override.input_line} holds no value.")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(value.step))
        return FloatDistribution(values[0], values[-1], step=value.step)
    if override.is_discrete_sweep():
        # lists and other values Optuna cannot store go in as the text of the override
        choices = [
            v if isinstance(v, str | int | float | bool) or v is None else text
            for v, text in zip(
                override.sweep_iterator(),
                override.sweep_iterator(transformer=Transformer.encode),
                strict=True,
            )
        ]
        return CategoricalDistribution(choices)
    raise UserError(f"{override.input_line}: Optuna searches choice, range and interval sweeps.")


def grid(space: dict[str, Any]) -> dict[str, list]:
    """The values the grid sampler visits, for spaces of choices and ranges."""
    from optuna.distributions import CategoricalDistribution

    values = {}
    for key, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            values[key] = list(dist.choices)
        elif getattr(dist, "step", None) is not None and not dist.log:
            count = round((dist.high - dist.low) / dist.step) + 1
            values[key] = [dist.low + i * dist.step for i in range(count)]
        else:
            raise UserError(
                f"hydra/sweeper/sampler=grid cannot visit {key}'s interval: give it as "
                "choice(...) or range(...), or use hydra/sweeper/sampler=tpe."
            )
    return values


def overrides_of(params: dict[str, Any], space: dict[str, Any], fixed: dict[str, str]) -> list[str]:
    """The job's overrides: the trial's values, then the fixed ones."""
    swept = [f"{key}={format_value(params[key])}" for key in space]
    return swept + [f"{key}={value}" for key, value in fixed.items()]


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(value)


def check_same_space(study, space: dict[str, Any], storage: str | None) -> None:
    """Refuse to go on with a study that searched another space; record the space of a new one."""
    from optuna.distributions import distribution_to_json

    wanted = {key: json.loads(distribution_to_json(dist)) for key, dist in space.items()}
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None and study.trials:  # a study made elsewhere: its trials tell its space
        stored = {
            key: json.loads(distribution_to_json(dist))
            for trial in study.trials
            for key, dist in trial.distributions.items()
        }
    if stored is None:
        study.set_user_attr(SPACE_ATTR, wanted)
        return
    if stored != wanted:
        changed = sorted(k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k))
        raise UserError(
            f"the study {study.study_name} in {storage} searched another space (it differs in "
            f"{', '.join(changed)}): search the space it had, or start a new study with "
            "hydra.sweeper.study_name=<new name> (or a new hydra.sweep.dir)."
        )


def outcome(ret) -> tuple[str, float | None]:
    """COMPLETE with the job's value, PRUNED, or FAIL, from the job's return and metrics.json."""
    from hydra.core.utils import JobStatus

    if ret.status != JobStatus.COMPLETED:
        return "FAIL", None
    job_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    status = read_metrics(job_dir / "metrics.json").get("status", "missing")
    if status == "pruned":
        return "PRUNED", None
    value = ret.return_value
    if status != "completed" or not isinstance(value, int | float) or not math.isfinite(value):
        return "FAIL", None
    return "COMPLETE", float(value)


def trial_state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]


def write_plots(study, sweep_dir: Path) -> list[Path]:
    """The optimization history and the parameter importances, as PNGs in the sweep folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = []
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    history, importances = STUDY_PLOTS
    drawings = {history: plots.plot_optimization_history}
    if len(complete) >= 2:
        drawings[importances] = plots.plot_param_importances
    for name, draw in drawings.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                ax = draw(study)
            except (ValueError, RuntimeError) as err:  # e.g. importances of a constant space
                log.warning("no %s: %s", name, err)
                continue
        figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        figure.set_size_inches(7, 4)
        figure.tight_layout()
        figure.savefig(sweep_dir / name, dpi=100)
        plt.close(figure)
        written.append(sweep_dir / name)
    return written
