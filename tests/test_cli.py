"""The real command line, as a user types it: slow, so few (run by `make test` and .ci/run)."""

import json
import subprocess
import sys
import time

import pytest

from conftest import ROOT, cli

pytestmark = pytest.mark.slow


def test_a_run_writes_the_documented_folder_and_eval_reproduces_it(tmp_path):
    run = tmp_path / "run"
    result = cli("-m", "litforge.train", "data=wine", "max_epochs=3", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        ".hydra/hydra.yaml",
        "train.log",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "hparams.yaml",
        "metrics.json",
    ):
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs"] == 3

    evaluated = tmp_path / "eval"
    result = cli(
        "-m",
        "litforge.eval",
        f"ckpt_path={run}/checkpoints/best.ckpt",
        f"hydra.run.dir={evaluated}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((evaluated / "metrics.json").read_text())["test"] == metrics["test"]


def test_the_readme_sweep_writes_eight_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    result = cli(
        "-m",
        "litforge.train",
        "-m",
        "optimizer=sgd,adam",
        "accumulate_grad_batches=1,4",
        "precision=32,64",
        "device=cpu",
        "max_epochs=2",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 8
    seen = set()
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        assert list(job.glob("events.out.tfevents.*"))
        seen.add(tuple(metrics["overrides"]))
    assert len(seen) == 8  # every combination ran once


def test_two_runs_started_together_get_their_own_folders(tmp_path):
    command = [sys.executable, "-m", "litforge.train", "debug=fast", "logger=none"]
    processes = [
        subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    runs = list((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 2
    assert all((run / "metrics.json").is_file() for run in runs)


def test_a_user_error_is_one_line_and_a_nonzero_exit(tmp_path):
    started = time.perf_counter()
    result = cli("-m", "litforge.train", "data=diabetes", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith("litforge: error: model=classification")
    )
    assert time.perf_counter() - started < 120


def test_cli_runs_from_any_folder(tmp_path):
    result = cli("-m", "litforge.train", "--cfg", "job", cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and "_target_: litforge.data.SklearnDataModule" in result.stdout
    assert ROOT.is_dir()
