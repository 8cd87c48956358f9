"""Sweeps: their configs, and (slow) through the real command line: summaries, TensorBoard,
launchers, a failing job (Optuna searches: test_search.py)."""

import csv
import json
import math
import shlex
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, cli, make_cfg, read_metrics
from litforge import summary

PNG = b"\x89PNG\r\n\x1a\n"


def sweep(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return cli("-m", "litforge.train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}")


def readme(part: str) -> list[str]:
    """The arguments of the README command that contains `part` (tests/test_readme.py skips it)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    (command,) = [
        line.split("#")[0] for line in lines if line.startswith("python -m") and part in line
    ]
    return shlex.split(command)[1:]


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p.parent for p in sweep_dir.glob("*/metrics.json")), key=job_num)


def job_num(job_dir: Path) -> int:
    return int(job_dir.name.split("_")[0])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def overrides_of(job_dir: Path) -> dict[str, str]:
    return dict(o.split("=", 1) for o in read_metrics(job_dir)["overrides"])


def test_slurm_launcher_has_the_documented_keys(tmp_path):
    cfg = make_cfg(
        tmp_path,
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=2",
        "hydra.launcher.tasks_per_node=2",
        "hydra.launcher.nodes=2",
        "hydra.launcher.timeout_min=240",
    )
    launcher = cfg.hydra.launcher
    assert (
        launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    )
    assert (launcher.partition, launcher.gpus_per_node, launcher.nodes) == ("gpu", 2, 2)
    assert (launcher.tasks_per_node, launcher.timeout_min) == (2, 240)
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory):
    """optimizer=sgd,adam seed=0,1 on wine: four jobs, the summary written when it ends."""
    sweep_dir = tmp_path_factory.mktemp("sweeps") / "seeds"
    result = cli(
        *readme("optimizer=sgd,adam seed=0,1"), "max_epochs=4", f"hydra.sweep.dir={sweep_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


@pytest.mark.slow
def test_the_summary_has_a_row_per_job_read_back_from_its_metrics_json(seed_sweep):
    rows = read_csv(seed_sweep / "summary.csv")
    assert len(rows) == 4
    assert {(r["optimizer"], r["seed"]) for r in rows} == {
        ("sgd", "0"),
        ("sgd", "1"),
        ("adam", "0"),
        ("adam", "1"),
    }
    for row in rows:
        job = seed_sweep / row["job_dir"]
        metrics = read_metrics(job)
        assert overrides_of(job) == {
            "data": "wine",
            "optimizer": row["optimizer"],
            "seed": row["seed"],
            "max_epochs": "4",
        }
        # the job folder, TensorBoard's run name: its number and the keys that vary
        assert job.name == f"{row['job']}_optimizer={row['optimizer']},seed={row['seed']}"
        assert row["status"] == metrics["status"] == "completed"
        assert int(row["epochs"]) == metrics["epochs"] == 4
        assert row["stopped_by"] == "max_epochs"
        assert float(row["best val/loss"]) == metrics["best"]["value"]
        for name in ("test/loss", "test/acc", "test/f1"):
            assert float(row[name]) == metrics["test"][name]
        assert float(row["wall_time_s"]) == metrics["wall_time_s"]
        assert (seed_sweep / row["checkpoint"]).is_file()
        assert row["checkpoint"] == f"{row['job_dir']}/checkpoints/best.ckpt"
    best = [float(r["best val/loss"]) for r in rows]
    assert best == sorted(best)  # sorted by the monitored metric


@pytest.mark.slow
def test_the_summary_aggregates_each_configuration_over_seeds(seed_sweep):
    rows = read_csv(seed_sweep / "summary_seeds.csv")
    assert sorted(r["optimizer"] for r in rows) == ["adam", "sgd"]
    for row in rows:
        jobs = [j for j in job_dirs(seed_sweep) if overrides_of(j)["optimizer"] == row["optimizer"]]
        assert row["seeds"] == "2/2" and len(jobs) == 2
        for name in ("best val/loss", "test/acc"):
            values = [
                read_metrics(j)["best"]["value"]
                if name.startswith("best")
                else read_metrics(j)["test"][name]
                for j in jobs
            ]
            assert float(row[f"{name} mean"]) == pytest.approx(statistics.fmean(values))
            assert float(row[f"{name} std"]) == pytest.approx(statistics.stdev(values))


@pytest.mark.slow
def test_summary_md_holds_both_tables_and_the_plots(seed_sweep):
    text = (seed_sweep / "summary.md").read_text()
    assert "4 jobs: 4 completed. Sorted by best val/loss (lower is better)." in text
    assert "Every job: `data=wine` `max_epochs=4`" in text
    job_rows = [line for line in text.splitlines() if line.startswith("| ") and "completed" in line]
    assert len(job_rows) == 4
    seeds = text.split("## Over seeds (mean ± sample std)")[1].split("##")[0]
    assert seeds.count("| 2/2 |") == 2 and " ± " in seeds
    for png in ("val_loss.png", "val_loss_by_key.png"):
        assert f"![{png[:-4]}]({png})" in text
        data = (seed_sweep / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000


@pytest.mark.slow
def test_the_summary_command_rewrites_the_same_summary(seed_sweep):
    before = (seed_sweep / "summary.csv").read_text()
    (seed_sweep / "summary.csv").unlink()
    args = [
        a.replace("outputs/multiruns/<...>", str(seed_sweep)) for a in readme("litforge.summary")
    ]
    result = cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (seed_sweep / "summary.csv").read_text() == before
    assert "| job | optimizer | seed | status |" in result.stdout  # summary.md, printed


def test_the_summary_command_says_when_a_folder_is_no_sweep(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        summary.main([str(tmp_path)])
    assert exit_.value.code == 2
    assert "holds no sweep jobs" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tensorboard_serves_a_sweep_that_compares_at_first_glance(seed_sweep):
    """Through TensorBoard's own HTTP data API, as its web pages read it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tensorboard = Path(sys.executable).parent / "tensorboard"
    server = subprocess.Popen(
        [tensorboard, "--logdir", seed_sweep, "--host", "127.0.0.1", "--port", str(port)]
        + ["--load_fast=false", "--reload_interval=1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def get(path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    jobs = {job.name: read_metrics(job) for job in job_dirs(seed_sweep)}
    try:
        deadline = time.monotonic() + 120
        runs = []
        while time.monotonic() < deadline and sorted(runs) != sorted(jobs):
            time.sleep(0.5)
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                runs = get("/data/runs")
                if sorted(runs) == sorted(jobs):  # every run's events are read once tags appear
                    tags = get("/data/plugin/scalars/tags")
                    runs = [run for run in runs if "val/loss_best" in tags.get(run, {})]
            except (urllib.error.URLError, ConnectionError):
                continue
        # one run per job, named by its number and the keys that vary: none every job shares
        assert (
            sorted(runs)
            == sorted(jobs)
            == [
                "0_optimizer=sgd,seed=0",
                "1_optimizer=sgd,seed=1",
                "2_optimizer=adam,seed=0",
                "3_optimizer=adam,seed=1",
            ]
        )

        scalars = get("/data/plugin/scalars/tags")
        images = get("/data/plugin/images/tags")
        for run in jobs:
            tags = set(scalars[run])
            assert {"train/loss", "val/loss", "val/acc", "test/acc", "test/f1"} <= tags
            assert "epoch" not in tags and not [t for t in tags if t.startswith("hp/")]
            assert [t for t in tags if "lr" in t] == ["train/lr"]  # one tag, sgd's or adam's
            assert "test/confusion_matrix" in images[run]

        # the sweep's experiment: the swept keys first, then what else differs, then metrics
        experiment = get("/data/plugin/hparams/experiment", {"experimentName": ""})
        hparam_names = [h["name"] for h in experiment["hparamInfos"]]
        assert hparam_names == ["optimizer", "seed", "optimizer.lr"]  # not data, max_epochs
        seeds = next(h for h in experiment["hparamInfos"] if h["name"] == "seed")
        assert seeds["domainDiscrete"] == [0, 1]
        metric_infos = [(m["name"]["tag"], m["displayName"]) for m in experiment["metricInfos"]]
        assert metric_infos == [
            ("val/loss_best", "best val/loss"),
            ("test/loss", "test/loss"),
            ("test/acc", "test/acc"),
            ("test/f1", "test/f1"),
        ]

        groups = get(
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 100,
            },
        )["sessionGroups"]
        assert sorted(g["name"] for g in groups) == sorted(jobs)
        for group in groups:
            metrics = jobs[group["name"]]
            overrides = dict(o.split("=", 1) for o in metrics["overrides"])
            assert group["hparams"]["optimizer"] == overrides["optimizer"]
            assert group["hparams"]["seed"] == int(overrides["seed"])
            assert group["hparams"]["max_epochs"] == 4  # in hparams.yaml, not a column
            values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            assert values["val/loss_best"] == pytest.approx(metrics["best"]["value"])
            assert values["test/acc"] == pytest.approx(metrics["test"]["test/acc"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


@pytest.mark.slow
def test_a_failing_job_is_reported_and_the_other_jobs_are_intact(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # torch refuses alpha=-1 when training starts; no check before the sweep knows RMSprop's alpha
    alphas = "optimizer.alpha=0.99,-1,0.9"
    result = sweep(sweep_dir, "data=wine", "max_epochs=2", "optimizer=rmsprop", alphas)
    assert result.returncode == 1  # scripts notice
    names = [f"{n}_optimizer.alpha={a}" for n, a in ((0, 0.99), (1, -1), (2, 0.9))]
    error = "ValueError: Invalid alpha value: -1"
    assert "litforge: error: 1 of 3 jobs failed:" in result.stderr
    assert f"{names[1]}: {error}" in result.stderr

    failed = read_metrics(sweep_dir / names[1])
    assert failed["status"] == "failed" and failed["stopped_by"] == "error"
    assert failed["error"] == error
    for name in (names[0], names[2]):
        job = sweep_dir / name
        metrics = read_metrics(job)  # the job after the failure ran too
        assert metrics["status"] == "completed" and math.isfinite(metrics["best"]["value"])
        assert (job / "checkpoints" / "best.ckpt").is_file()
        assert list(job.glob("events.out.tfevents.*"))

    rows = read_csv(sweep_dir / "summary.csv")
    assert [r["status"] for r in rows] == ["completed", "completed", "failed"]
    assert rows[-1]["job"] == "1" and rows[-1]["error"] == error
    text = (sweep_dir / "summary.md").read_text()
    assert "3 jobs: 2 completed, 1 failed." in text
    assert f"## Failed jobs\n\n- `{names[1]}`: {error}" in text


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_processes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = cli(*readme("hydra/launcher=joblib"), "max_epochs=2", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout
    jobs = job_dirs(sweep_dir)
    assert [job.name for job in jobs] == ["0_optimizer=sgd", "1_optimizer=adam"]
    assert all(read_metrics(job)["status"] == "completed" for job in jobs)
    # each job ran from its start (Hydra writes .hydra/ first) to its metrics.json: they overlap
    starts = [(job / ".hydra" / "overrides.yaml").stat().st_mtime for job in jobs]
    ends = [(job / "metrics.json").stat().st_mtime for job in jobs]
    assert max(starts) < min(ends)
    assert len(read_csv(sweep_dir / "summary.csv")) == 2


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = cli(*readme("submitit_local"), "max_epochs=2", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(sweep_dir)
    assert [overrides_of(job)["seed"] for job in jobs] == ["0", "1"]
    assert all(read_metrics(job)["status"] == "completed" for job in jobs)
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 2  # submitit ran them
    rows = read_csv(sweep_dir / "summary.csv")
    assert sorted(r["seed"] for r in rows) == ["0", "1"]
