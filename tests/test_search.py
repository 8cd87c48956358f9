"""Optuna searches (hparams_search=optuna): the search space, the sweeper's config, pruning, and
(slow) searches through the real command line: pruned trials, list choices, a resumed study,
failed trials, a changed space."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import ROOT, cli, make_cfg, read_metrics, run_train
from litforge.engine.pruning import TrialPruning
from litforge.errors import UserError
from litforge.run import study as search
from test_sweeps import job_dirs, job_num, overrides_of, read_csv, readme


def test_the_search_space_reads_hydra_sweep_syntax():
    space, fixed = search.search_space(
        [
            "optimizer=choice(sgd, adam)",
            "optimizer.lr=tag(log, interval(1e-4, 0.3))",
            "model.dropout=interval(0.0, 0.5)",
            "data.batch_size=tag(int, log, interval(8, 256))",
            "accumulate_grad_batches=choice(1, 2, 4)",
            "seed=range(0, 6, 2)",
            "model.hidden_dims=choice([64],[64,64],[128,64])",
            "max_epochs=5",
        ]
    )
    assert space == {
        "optimizer": CategoricalDistribution(["sgd", "adam"]),
        "optimizer.lr": FloatDistribution(1e-4, 0.3, log=True),
        "model.dropout": FloatDistribution(0.0, 0.5),
        "data.batch_size": IntDistribution(8, 256, log=True),
        "accumulate_grad_batches": CategoricalDistribution([1, 2, 4]),  # ints stay ints
        "seed": IntDistribution(0, 4, step=2),  # range's end is left out, as Hydra's grid does
        "model.hidden_dims": CategoricalDistribution(["[64]", "[64,64]", "[128,64]"]),
    }
    assert fixed == {"max_epochs": "5"}


def test_the_command_line_fixes_or_replaces_a_searched_key():
    configured = ["optimizer=choice(sgd, adam)", "optimizer.lr=tag(log, interval(1e-4, 0.3))"]
    space, fixed = search.search_space([*configured, "optimizer=adam", "optimizer.lr=choice(0.1)"])
    assert space == {"optimizer.lr": CategoricalDistribution([0.1])}
    assert fixed == {"optimizer": "adam"}


def test_a_list_choice_becomes_an_override_that_composes_to_the_list(tmp_path):
    space, fixed = search.search_space(["model.hidden_dims=choice([64],[128,64])", "data=wine"])
    overrides = search.overrides_of({"model.hidden_dims": "[128,64]"}, space, fixed)
    assert overrides == ["model.hidden_dims=[128,64]", "data=wine"]
    assert list(make_cfg(tmp_path, *overrides).model.hidden_dims) == [128, 64]


def test_the_grid_sampler_visits_choices_and_ranges_and_refuses_an_interval():
    space, _ = search.search_space(["optimizer=choice(sgd, adam)", "seed=range(0, 3)"])
    assert search.grid(space) == {"optimizer": ["sgd", "adam"], "seed": [0, 1, 2]}
    space, _ = search.search_space(["optimizer.lr=interval(0.01, 0.1)"])
    with pytest.raises(UserError, match="sampler=grid cannot visit optimizer.lr's interval"):
        search.grid(space)


def test_a_study_refuses_a_changed_search_space():
    study = optuna.create_study(study_name="optuna_wine")
    first, _ = search.search_space(["optimizer.lr=tag(log, interval(1e-4, 0.3))"])
    search.check_same_space(study, first, "sqlite:///outputs/multiruns/optuna_wine/optuna.db")
    search.check_same_space(study, first, "sqlite:///...")  # the same space goes on
    changed, _ = search.search_space(["optimizer.lr=tag(log, interval(1e-5, 1e-2))"])
    with pytest.raises(UserError) as refused:
        search.check_same_space(study, changed, "sqlite:///outputs/multiruns/optuna_wine/optuna.db")
    message = str(refused.value)
    assert "optuna_wine" in message and "differs in optimizer.lr" in message
    assert "hydra.sweeper.study_name=<new name>" in message


def job_return(job_dir: Path, value, status: str = "completed") -> JobReturn:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "metrics.json").write_text(json.dumps({"status": status}))
    ret = JobReturn(status=JobStatus.COMPLETED, _return_value=value)
    ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(job_dir)}}})
    return ret


def test_a_job_becomes_a_complete_pruned_or_failed_trial(tmp_path):
    assert search.outcome(job_return(tmp_path / "0", 0.25)) == ("COMPLETE", 0.25)
    assert search.outcome(job_return(tmp_path / "1", 1.1, "pruned")) == ("PRUNED", None)
    assert search.outcome(job_return(tmp_path / "2", None, "failed")) == ("FAIL", None)
    assert search.outcome(job_return(tmp_path / "3", math.nan)) == ("FAIL", None)


def test_the_sweeper_config_keeps_hydra_optuna_sweeper_keys_and_adds_a_pruner(tmp_path):
    cfg = make_cfg(tmp_path, "hparams_search=optuna", "data=wine")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.litforge_sweeper.OptunaSweeper"
    assert cfg.hydra.sweep.dir == "outputs/multiruns/optuna_wine"
    assert sweeper.storage == "sqlite:///outputs/multiruns/optuna_wine/optuna.db"
    assert (sweeper.direction, sweeper.n_trials, sweeper.study_name) == (
        "minimize",
        20,
        "optuna_wine",
    )
    assert set(sweeper.params) == {"optimizer", "optimizer.lr", "accumulate_grad_batches"}
    assert "log" in sweeper.params["optimizer.lr"]
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.pruner._target_ == "optuna.pruners.MedianPruner"
    assert sweeper.pruner.n_warmup_steps == 3
    maximize = make_cfg(tmp_path, "hparams_search=optuna", "monitor=val/acc", "monitor_mode=max")
    assert maximize.hydra.sweeper.direction == "maximize"
    hyperband = make_cfg(tmp_path, "hparams_search=optuna", "hydra/sweeper/pruner=hyperband")
    assert hyperband.hydra.sweeper.pruner._target_ == "optuna.pruners.HyperbandPruner"
    grid = make_cfg(tmp_path, "hparams_search=optuna", "hydra/sweeper/sampler=grid")
    assert grid.hydra.sweeper.sampler._target_ == "optuna.samplers.GridSampler"


def test_a_trial_worse_than_the_median_is_pruned_after_its_warm_up(tmp_path, monkeypatch):
    # two finished trials reached val/loss 0.1 at every epoch; this one learns at lr=1e-6
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3)
    study = optuna.create_study(pruner=pruner)
    for _ in range(2):
        study.add_trial(
            optuna.trial.create_trial(
                value=0.1,
                intermediate_values={epoch: 0.1 for epoch in range(10)},
                distributions={},
                params={},
            )
        )
    trial = study.ask()
    pruning = TrialPruning(trial, set(), "val/loss", "MedianPruner")
    monkeypatch.setattr("litforge.engine.pruning.trial_pruning", lambda cfg: pruning)
    record = run_train(
        tmp_path, "data=wine", "optimizer=adam", "optimizer.lr=1e-6", "max_epochs=10"
    )
    metrics = read_metrics(tmp_path)
    assert (metrics["status"], metrics["stopped_by"]) == ("pruned", "pruning")
    assert metrics["epochs"] == 4  # epochs 0-3 are the warm-up; pruned at the first after it
    assert pruning.pruned_epoch == 3 and record.data["status"] == "pruned"
    reported = study.trials[2].intermediate_values
    assert sorted(reported) == [0, 1, 2, 3]
    assert reported[3] == pytest.approx(metrics["history"]["val/loss"][3])
    assert metrics["test"], "a pruned run's best.ckpt is still tested"


def grid_search(sweep_dir: Path, *overrides: str) -> list[str]:
    return [
        "-m",
        "litforge.train",
        "-m",
        "hparams_search=optuna",
        "data=wine",
        "optimizer=adam",
        "accumulate_grad_batches=1",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.sampler.seed=0",
        f"hydra.sweep.dir={sweep_dir}",
        *overrides,
    ]


@pytest.mark.slow
def test_a_search_prunes_bad_learning_rates_and_finishes_good_ones(tmp_path):
    sweep_dir = tmp_path / "search"
    # the grid's order for seed 0: 0.01, 0.05, 0.02, then the two that barely learn
    result = cli(
        *grid_search(sweep_dir, "optimizer.lr=choice(0.05, 0.02, 0.01, 1e-6, 2e-6)"),
        "max_epochs=10",
        "hydra.sweeper.n_trials=5",
    )
    assert result.returncode == 0, result.stderr[-3000:]  # pruned is a normal outcome
    storage = f"sqlite:///{sweep_dir}/optuna.db"
    trials = optuna.load_study(study_name="optuna_wine", storage=storage).trials
    states = {t.params["optimizer.lr"]: t.state.name for t in trials}
    assert states == {
        0.01: "COMPLETE",
        0.05: "COMPLETE",
        0.02: "COMPLETE",
        1e-6: "PRUNED",
        2e-6: "PRUNED",
    }
    jobs = {job_num(job): read_metrics(job) for job in job_dirs(sweep_dir)}
    for trial in trials:  # job n is trial n; a pruned job stopped after the warm-up
        metrics = jobs[trial.number]
        if trial.state.name == "PRUNED":
            assert (metrics["status"], metrics["stopped_by"], metrics["epochs"]) == (
                "pruned",
                "pruning",
                4,
            )
            assert sorted(trial.intermediate_values) == [0, 1, 2, 3]
        else:
            assert (metrics["status"], metrics["epochs"]) == ("completed", 10)
            assert metrics["best"]["value"] == pytest.approx(trial.value)
    rows = read_csv(sweep_dir / "summary.csv")
    assert sorted(r["status"] for r in rows) == ["completed"] * 3 + ["pruned"] * 2
    summary_md = (sweep_dir / "summary.md").read_text()
    assert "5 jobs: 3 completed, 2 pruned" in summary_md
    for plot in ("study_history.png", "study_importances.png"):
        assert f"]({plot})" in summary_md
        assert (sweep_dir / plot).read_bytes().startswith(b"\x89PNG")
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.best_params["optimizer.lr"] in (0.01, 0.05, 0.02)


@pytest.mark.slow
def test_jobs_on_joblib_workers_report_every_epoch_to_the_study(tmp_path):
    sweep_dir = tmp_path / "search"
    result = cli(
        *grid_search(sweep_dir, "optimizer.lr=choice(0.01, 0.02)", "hydra/launcher=joblib"),
        "hydra.sweeper.n_jobs=2",
        "max_epochs=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(" in result.stdout
    storage = f"sqlite:///{sweep_dir}/optuna.db"
    trials = optuna.load_study(study_name="optuna_wine", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:  # each worker wrote its epochs into the study's SQLite file
        job = next(sweep_dir.glob(f"{trial.number}_*"))
        history = read_metrics(job)["history"]["val/loss"]
        assert trial.intermediate_values == pytest.approx(dict(enumerate(history)))


@pytest.mark.slow
def test_a_search_over_lists_trains_each_list_of_layers(tmp_path):
    sweep_dir = tmp_path / "search"
    result = cli(
        *grid_search(sweep_dir, "model.hidden_dims=choice([8],[16,8])", "optimizer.lr=0.01"),
        "max_epochs=2",
        "hydra.sweeper.n_trials=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dims = set()
    for job in job_dirs(sweep_dir):
        assert read_metrics(job)["status"] == "completed"
        dims.add(tuple(OmegaConf.load(job / ".hydra" / "config.yaml").model.hidden_dims))
    assert dims == {(8,), (16, 8)}


@pytest.mark.slow
def test_a_changed_search_space_is_refused_with_one_message(tmp_path):
    sweep_dir = tmp_path / "search"
    first = cli(*grid_search(sweep_dir, "optimizer.lr=choice(0.01)"), "max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    before = sorted(p.name for p in sweep_dir.iterdir())
    changed = cli(*grid_search(sweep_dir, "optimizer.lr=choice(0.01, 0.02)"), "max_epochs=1")
    assert changed.returncode == 2
    assert "litforge: error: the study optuna_wine" in changed.stderr
    assert "differs in optimizer.lr" in changed.stderr and "Traceback" not in changed.stderr
    assert sorted(p.name for p in sweep_dir.iterdir()) == before  # no job ran


@pytest.mark.slow
@pytest.mark.parametrize(
    "mistake, message",
    [
        (  # a searched key the config lacks, in the sweeper's params or on the command line
            '++hydra.sweeper.params={optimizer.lrr: "choice(0.1)"}',
            "do not compose: Could not override 'optimizer.lrr'",
        ),
        ("optimizer.lrr=choice(0.1)", "in the sweep job hparams_search=optuna data=wine"),
        ("hydra.sweeper.direction=up", "hydra.sweeper.direction=up: use minimize or maximize"),
        ("hydra/sweeper/sampler=grid", "sampler=grid cannot visit optimizer.lr's interval"),
    ],
)
def test_a_search_mistake_is_one_message_and_no_continue_command(tmp_path, mistake, message):
    sweep_dir = tmp_path / "search"
    result = cli(
        "-m", "litforge.train", "-m", "hparams_search=optuna", "data=wine", mistake,
        f"hydra.sweep.dir={sweep_dir}",
    )  # fmt: skip
    assert result.returncode == 2
    assert "litforge: error: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr and "Continue it with" not in result.stderr
    assert not list(sweep_dir.glob("*/metrics.json"))  # no job ran


@pytest.mark.slow
def test_an_interrupted_optuna_search_continues_where_it_stopped(tmp_path):
    sweep_dir = tmp_path / "search"
    command = [
        sys.executable,
        *readme("hparams_search=optuna"),  # data=wine
        "hydra.sweeper.n_trials=4",
        "max_epochs=15",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    first = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        # the sweeper records trials 0 and 1 in the study before it starts job 2
        if list(sweep_dir.glob("2_*/.hydra/overrides.yaml")):
            first.send_signal(signal.SIGINT)  # Ctrl-C during the third trial
            break
        time.sleep(0.2)
    assert first.wait(timeout=120) != 0, "the search ended before it was interrupted"
    before = {job.name: read_metrics(job) for job in job_dirs(sweep_dir)}

    storage = f"sqlite:///{sweep_dir}/optuna.db"
    study = optuna.load_study(study_name="optuna_wine", storage=storage)
    assert [t.state.name for t in study.trials[:2]] != ["RUNNING", "RUNNING"]
    assert study.trials[2].state.name == "RUNNING"  # the interrupted trial
    interrupted = study.trials[2].params

    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    study = optuna.load_study(study_name="optuna_wine", storage=storage)
    assert len(study.trials) == 4 and all(t.state.is_finished() for t in study.trials)
    assert study.trials[2].params == interrupted  # resumed, not asked again
    jobs = {job_num(job): job for job in job_dirs(sweep_dir)}
    assert sorted(jobs) == [0, 1, 2, 3]
    for trial in study.trials:  # job n is trial n, and reports the value Optuna recorded
        metrics = read_metrics(jobs[trial.number])
        assert metrics["status"] == trial.state.name.lower().replace("complete", "completed")
        assert overrides_of(jobs[trial.number])["optimizer"] == trial.params["optimizer"]
        if trial.state.name == "COMPLETE":
            assert metrics["best"]["value"] == pytest.approx(trial.value)
    for name, metrics in before.items():  # the first run's finished jobs were not rerun
        if metrics["status"] != "interrupted":
            assert read_metrics(sweep_dir / name) == metrics
    # in its own folder: from its last.ckpt, or from the start if Ctrl-C came before one
    log = (jobs[2] / "train.log").read_text()
    assert "resuming this job from" in log or "running this job again" in log
    rows = read_csv(sweep_dir / "summary.csv")
    assert sorted(int(row["job"]) for row in rows) == [0, 1, 2, 3]


@pytest.mark.slow
def test_failed_optuna_trials_are_recorded_and_the_search_goes_on(tmp_path):
    sweep_dir = tmp_path / "search"
    search_args = ["-m", "litforge.train", "-m", "hparams_search=optuna", "data=wine"]
    search_args += ["debug=fast", f"hydra.sweep.dir={sweep_dir}", "optimizer=rmsprop"]
    # every trial fails: torch refuses RMSprop's alpha=-1 when training starts
    failing = cli(*search_args, "hydra.sweeper.n_trials=2", "optimizer.alpha=-1")
    assert failing.returncode == 1
    assert "2 of 2 jobs failed" in failing.stderr and "Invalid alpha value: -1" in failing.stderr
    storage = f"sqlite:///{sweep_dir}/optuna.db"
    trials = optuna.load_study(study_name="optuna_wine", storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]  # recorded, and the second ran

    fixed = cli(*search_args, "hydra.sweeper.n_trials=3")  # the same study, RMSprop's own alpha
    assert fixed.returncode == 0, fixed.stderr[-3000:]  # the first run's failures are not its own
    trials = optuna.load_study(study_name="optuna_wine", storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "COMPLETE"]
    statuses = [read_metrics(job)["status"] for job in job_dirs(sweep_dir)]
    assert statuses == ["failed", "failed", "completed"]
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["job"], r["status"]) for r in rows] == [
        ("2", "completed"),
        ("0", "failed"),
        ("1", "failed"),
    ]
