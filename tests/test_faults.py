"""Faults a user's machine meets: untrusted checkpoints, refused resumes, a full disk, signals to
a sweep, names too long for the file system, an unreadable metrics.json. Each ends in one
message, harms nothing already written, and leaves no stray file or process."""

import errno
import hashlib
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from conftest import ROOT, read_metrics
from litforge.errors import UserError
from litforge.eval import evaluate
from litforge.run import summary
from litforge.run.folders import MAX_NAME_BYTES


@pytest.fixture(autouse=True)
def fresh_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def run_cli_in_process(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`python -m litforge.train ARGV` in this process; (exit code, stderr)."""
    from litforge.train import main

    monkeypatch.setattr(sys, "argv", ["litforge.train", *argv])
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")  # conf/ as under `python -m`
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def wine_run(tmp_path, monkeypatch, capsys) -> Path:
    """A completed run through the command line's code: 2 epochs of wine, lr 0.003."""
    run = tmp_path / "wine"
    argv = ["data=wine", "max_epochs=2", "optimizer.lr=0.003", f"hydra.run.dir={run}"]
    assert run_cli_in_process(argv, monkeypatch, capsys)[0] == 0
    GlobalHydra.instance().clear()
    assert read_metrics(run)["status"] == "completed"
    return run


# --- 1. a checkpoint is data -------------------------------------------------------------------


def planted(wine_run: Path, tmp_path: Path, where: str, node: dict) -> Path:
    """wine_run's best.ckpt with `node` put in its stored config at `where` (a dotted key)."""
    checkpoint = torch.load(wine_run / "checkpoints" / "best.ckpt", weights_only=True)
    config = checkpoint["litforge_config"]
    *parents, last = where.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[last] = node
    path = tmp_path / "planted.ckpt"
    torch.save(checkpoint, path)
    return path


ATTACKS = {
    # Hydra follows attributes through modules: this starts like an optimizer and is torch.save
    "attribute-walk-to-torch-save": (
        "optimizer",
        {"_target_": "torch.optim.sgd.torch.save", "_args_": [{"a": 1}, "{tmp}/pwned.pt"]},
    ),
    "numpy-inside-litforge-data": (
        "data",
        {"_target_": "litforge.data.np.savetxt", "_args_": ["{tmp}/x.pth", [1.0]]},
    ),
    "os-inside-litforge-checks": (
        "model",
        {"_target_": "litforge.checks.os.system", "_args_": ["touch {tmp}/pwned"]},
    ),
    "nested-in-a-list": ("trainer.plugins", [{"_target_": "builtins.exec", "_args_": ["1"]}]),
    "a-litforge-function-no-config-names": ("model", {"_target_": "litforge.models.mlp"}),
    "an-alias-of-an-allowed-class": ("optimizer", {"_target_": "torch.optim.adam.Adam"}),
    "not-text": ("model", {"_target_": {"_target_": "os.system"}}),
}


@pytest.mark.parametrize(("where", "node"), ATTACKS.values(), ids=ATTACKS.keys())
def test_eval_builds_only_what_conf_names(wine_run, tmp_path, where, node):
    node = json.loads(json.dumps(node).replace("{tmp}", str(tmp_path)))
    path = planted(wine_run, tmp_path, where, node)
    with pytest.raises(UserError, match=r"which is not one of the \d+ classes and functions"):
        evaluate(path, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
    assert not any(tmp_path.glob("pwned*")) and not (tmp_path / "x.pth").exists()


def test_eval_of_the_unplanted_checkpoint_still_works(wine_run, tmp_path):
    test = evaluate(wine_run / "checkpoints" / "best.ckpt", tmp_path / "eval")
    assert test == read_metrics(wine_run)["test"]


# --- 2. earlier results are never lost ------------------------------------------------------------


REFUSED = {
    "resume-with-a-refused-value": (["resume={run}", "optimizer.lr=-1"], "optimizer.lr=-1"),
    "ckpt-path-into-another-model": (
        ["ckpt_path={run}/checkpoints/last.ckpt", "data=wine", "model.hidden_dims=[8]"],
        "holds a different model",
    ),
    "ckpt-path-with-another-optimizer": (
        ["ckpt_path={run}/checkpoints/last.ckpt", "data=wine", "optimizer=sgd"],
        "was trained with optimizer torch.optim.Adam",
    ),
}


@pytest.mark.parametrize(("argv", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_resume_changes_no_file_of_the_run(wine_run, monkeypatch, capsys, argv, words):
    before = snapshot(wine_run)
    code, err = run_cli_in_process([a.format(run=wine_run) for a in argv], monkeypatch, capsys)
    assert code == 2 and words in err and err.count("litforge: error:") == 1, err
    assert snapshot(wine_run) == before  # metrics.json, .hydra/, events, checkpoints, train.log


def test_a_resume_refused_inside_lightnings_restore_changes_no_file(tmp_path, monkeypatch, capsys):
    # stopped by SIGTERM at batch 2 of epoch 1, inside a chunk of the fast path
    run = tmp_path / "stopped"
    signal_at = [
        "+callbacks.signal._target_=conftest.SignalAt",
        "+callbacks.signal.epoch=1",
        "+callbacks.signal.batch=2",
        f"+callbacks.signal.signum={int(signal.SIGTERM)}",
    ]
    argv = ["data=wine", "max_epochs=3", *signal_at, f"hydra.run.dir={run}"]  # fmt: skip
    assert run_cli_in_process(argv, monkeypatch, capsys)[0] == 128 + signal.SIGTERM
    GlobalHydra.instance().clear()
    assert read_metrics(run)["status"] == "interrupted"
    before = snapshot(run)
    # Lightning's own loop cannot continue a chunk: refused when the checkpoint is restored
    code, err = run_cli_in_process([f"resume={run}", "steps_per_call=1"], monkeypatch, capsys)
    assert code == 2 and "part-way through an epoch" in err, err
    assert snapshot(run) == before


def test_ckpt_path_with_an_override_forgotten_keeps_the_runs_own_config(
    wine_run, monkeypatch, capsys
):
    hydra_before = snapshot(wine_run / ".hydra")
    last = wine_run / "checkpoints" / "last.ckpt"
    # the run had optimizer.lr=0.003; this command forgets it and trains one epoch more
    argv = [f"ckpt_path={last}", "data=wine", "max_epochs=3"]
    assert run_cli_in_process(argv, monkeypatch, capsys)[0] == 0
    (warning,) = [line for line in (wine_run / "train.log").read_text().splitlines() if
                  "differ from the run's own" in line]  # fmt: skip
    assert "without max_epochs=2 optimizer.lr=0.003; with max_epochs=3" in warning
    assert snapshot(wine_run / ".hydra") == hydra_before
    GlobalHydra.instance().clear()
    # so resume= still composes the run's own config, and continues it
    assert run_cli_in_process([f"resume={wine_run}", "max_epochs=4"], monkeypatch, capsys)[0] == 0
    metrics = read_metrics(wine_run)
    assert metrics["status"] == "completed" and metrics["epochs"] == 4
    assert "optimizer.lr=0.003" in metrics["overrides"]


def test_a_single_run_that_fails_before_training_leaves_no_folder(tmp_path, monkeypatch, capsys):
    run = tmp_path / "typo"
    code, err = run_cli_in_process(
        ["model=regression", f"hydra.run.dir={run}"], monkeypatch, capsys
    )
    assert code == 2 and "model=regression does not fit the data" in err
    assert not run.exists()  # the message went to the console only


def test_a_killed_writers_partial_checkpoint_is_removed_when_the_run_resumes(
    wine_run, monkeypatch, capsys
):
    dead = wine_run / "checkpoints" / ".last.ckpt.4194303.partial"  # no such process
    dead.write_bytes(b"half a checkpoint")
    assert run_cli_in_process([f"resume={wine_run}", "max_epochs=3"], monkeypatch, capsys)[0] == 0
    assert not dead.exists()
    assert list((wine_run / "checkpoints").glob(".*")) == []


# --- 6. a full disk -------------------------------------------------------------------------


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_message_and_metrics_json_still_gets_written(
    tmp_path, monkeypatch, capsys
):
    # torch.save fails as on a full disk the first time a checkpoint is written
    monkeypatch.setattr("litforge.engine.checkpoints.torch.save", no_space)
    run = tmp_path / "run"
    code, err = run_cli_in_process(["data=wine", f"hydra.run.dir={run}"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"litforge: error: the disk holding {run / 'checkpoints'} is full: best.ckpt" in err
    assert "resume=" in err
    metrics = read_metrics(run)
    assert metrics["status"] == "failed" and "is full" in metrics["error"]
    leftovers = [p.name for p in run.rglob("*") if p.name.endswith((".tmp", ".partial", "reserve"))]
    assert leftovers == []


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KB file system (tmpfs); skipped where this user may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_real_full_disk_ends_in_one_message(small_disk):
    run = small_disk / "run"
    result = subprocess.run(
        [sys.executable, "-m", "litforge.train", "max_epochs=30", f"hydra.run.dir={run}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"litforge: error: the disk holding {run / 'checkpoints'} is full")
    assert read_metrics(run)["status"] == "failed"
    assert [p.name for p in run.rglob("*") if p.name.endswith((".tmp", ".partial"))] == []


# --- 5. sweeps ------------------------------------------------------------------------------


def test_job_folder_names_stay_under_255_bytes(tmp_path, monkeypatch, capsys):
    wide = [",".join(["8"] * 130), ",".join(["9"] * 130)]  # two 130-layer MLPs: 280 bytes each
    sweep = tmp_path / "sweep"
    argv = ["-m", "data=wine", "max_epochs=1", "logger=none", "callbacks=none",
            f"model.hidden_dims=[{wide[0]}],[{wide[1]}]", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    assert run_cli_in_process(argv, monkeypatch, capsys)[0] == 0
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 and all(len(j.name.encode()) <= MAX_NAME_BYTES for j in jobs)
    assert [j.name[:2] for j in jobs] == ["0_", "1_"] and all("~" in j.name for j in jobs)
    assert [read_metrics(j)["status"] for j in jobs] == ["completed", "completed"]
    assert f"model.hidden_dims=[{wide[1]}]" in read_metrics(jobs[1])["overrides"]  # kept whole


def test_the_summary_survives_an_unreadable_metrics_json(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sweep"
    argv = ["-m", "data=wine", "max_epochs=1", "logger=none", "callbacks=none", "seed=0,1",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    assert run_cli_in_process(argv, monkeypatch, capsys)[0] == 0
    (sweep / "1_seed=1" / "metrics.json").write_text('{"status": "comp')  # cut off
    summary.main([str(sweep)])
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and ",completed," in rows[1] and ",unreadable," in rows[2]
    assert "metrics.json is unreadable" in rows[2]


def descendants(pid: int) -> list[int]:
    from litforge.run.sweep import descendants as of

    return of(pid)


def start_sweep(tmp_path, *overrides: str) -> tuple[subprocess.Popen, Path]:
    sweep = tmp_path / "sweep"
    args = ["-m", "litforge.train", "-m", "data=synthetic", "model=regression", "data.n=20000",
            "early_stopping=none", "callbacks.progress_bar=null", *overrides,
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    return process, sweep


def wait_for_training(sweep: Path, jobs: int, process: subprocess.Popen) -> None:
    """Until `jobs` jobs have finished an epoch (their last.ckpt exists)."""
    deadline = time.monotonic() + 240
    while len(list(sweep.glob("*/checkpoints/last.ckpt"))) < jobs:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the jobs did not start training"
        time.sleep(0.3)


def stop_and_check(process, sweep, signum, statuses: dict[str, int]) -> str:
    workers = descendants(process.pid)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    deadline = time.monotonic() + 10  # every worker is gone within 10 s
    while [p for p in workers if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in workers if alive(p)] == []
    rows = (sweep / "summary.csv").read_text().splitlines()[1:]
    found = {s: sum(f",{s}," in row for row in rows) for s in statuses}
    assert found == statuses, rows
    assert "Continue it with:" in err
    command = err.strip().splitlines()[-1].strip()
    assert (
        command.startswith("python -m litforge.train -m ") and f"hydra.sweep.dir={sweep}" in command
    )
    return command


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


LONG = ("max_epochs=400",)  # ~20 s a job on this machine: time to stop them mid-way


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_joblib_sweep_stops_every_worker_and_writes_its_summary(tmp_path, signum):
    process, sweep = start_sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                 "seed=0,1,2,3", *LONG)  # fmt: skip
    wait_for_training(sweep, 2, process)
    stop_and_check(process, sweep, signum, {"interrupted": 2, "not started": 2})
    for job in ("0_seed=0", "1_seed=1"):
        metrics = read_metrics(sweep / job)
        assert (
            metrics["status"] == "interrupted" and (sweep / job / "checkpoints/last.ckpt").is_file()
        )


@pytest.mark.slow
def test_a_submitit_sweep_stops_every_worker_and_writes_its_summary(tmp_path):
    process, sweep = start_sweep(tmp_path, "hydra/launcher=submitit_local", "seed=0,1", *LONG)
    wait_for_training(sweep, 1, process)
    stop_and_check(process, sweep, signal.SIGTERM, {"interrupted": 2})


@pytest.mark.slow
def test_an_interrupted_grid_sweep_continues_where_it_stopped(tmp_path):
    # job 0 is short and completes; job 1 is stopped part-way; job 2 never starts
    process, sweep = start_sweep(tmp_path, "max_epochs=2,60,3")
    wait_for_training(sweep, 2, process)
    command = stop_and_check(
        process, sweep, signal.SIGTERM, {"completed": 1, "interrupted": 1, "not started": 1}
    )
    first = sweep / "0_max_epochs=2" / "metrics.json"
    kept = first.stat().st_mtime
    stopped_at = read_metrics(sweep / "1_max_epochs=60")["global_step"]
    result = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert first.stat().st_mtime == kept  # completed before: kept as it was
    resumed = read_metrics(sweep / "1_max_epochs=60")
    steps_per_epoch = 219  # 14,000 training rows in batches of 64 (the last one short)
    assert resumed["status"] == "completed" and resumed["global_step"] == 60 * steps_per_epoch
    assert resumed["global_step"] > stopped_at
    assert read_metrics(sweep / "2_max_epochs=3")["status"] == "completed"
    rows = (sweep / "summary.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(",completed," in row for row in rows)
