"""Resuming a run: where it writes and what it loads; then a real `python -m litforge.train`
stopped by SIGKILL, SIGTERM or Ctrl-C and resumed (slow)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, cli, make_cfg, read_metrics, run_train
from litforge.errors import UserError
from litforge.run import folders, resume

folders.register_resolvers()  # as importing litforge.train does


def test_a_resumed_run_writes_into_the_folder_of_its_run(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- data=wine\n")
    by_checkpoint = make_cfg(tmp_path, f"ckpt_path={run}/checkpoints/last.ckpt").hydra
    assert (by_checkpoint.run.dir, by_checkpoint.output_subdir) == (str(run), None)  # .hydra kept
    by_folder = make_cfg(tmp_path, f"resume={run}").hydra
    assert (by_folder.run.dir, by_folder.output_subdir) == (str(run), None)  # .hydra kept
    assert make_cfg(tmp_path).hydra.run.dir.startswith("outputs/runs/")


def test_resume_reapplies_the_runs_overrides_then_the_new_ones(tmp_path):
    (tmp_path / ".hydra").mkdir()
    saved = "- data=wine\n- max_epochs=5\n- ckpt_path=old.ckpt\n"
    (tmp_path / ".hydra" / "overrides.yaml").write_text(saved)
    new = ["max_epochs=9", f"resume={tmp_path}"]
    assert resume.overrides(tmp_path, new) == ["data=wine", "max_epochs=9", f"resume={tmp_path}"]


def test_resume_picks_the_newest_last_ckpt_or_says_there_is_none(tmp_path):
    with pytest.raises(UserError, match="is not a run folder"):
        resume.overrides(tmp_path, [])
    with pytest.raises(UserError, match="has no checkpoints/last.ckpt"):
        resume.last_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    for name, mtime in (("last-v1.ckpt", 200), ("last.ckpt", 100)):
        (tmp_path / "checkpoints" / name).touch()
        os.utime(tmp_path / "checkpoints" / name, (mtime, mtime))
    assert resume.last_checkpoint(tmp_path).name == "last-v1.ckpt"


# 10500 training samples in 165 batches of 64: half a second an epoch, time to stop it mid-way.
# Dropout and shuffling on: resuming must reproduce both.
RUN = (
    "data=synthetic",
    "model=regression",
    "data.n=15000",
    "model.dropout=0.1",
    "max_epochs=4",
    "early_stopping=none",
)
STEPS_PER_EPOCH = 165


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run, never stopped (in-process: the same train() as the command line)."""
    run_dir = tmp_path_factory.mktemp("reference")
    run_train(run_dir, *RUN)
    return run_dir


def start(run_dir: Path, *args: str) -> subprocess.Popen:
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    command = [sys.executable, "-m", "litforge.train", *args, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def checkpoint_step(run_dir: Path) -> int:
    """global_step of last.ckpt (written atomically), -1 before there is one."""
    path = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(path, weights_only=True)["global_step"] if path.exists() else -1


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the run: (step, value) per tag, wall times left out."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_ends_like(run_dir: Path, reference: Path) -> None:
    """Same final weights, bit for bit; same metrics.json; same TensorBoard scalars, once each."""
    mine, theirs = final_weights(run_dir), final_weights(reference)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[name], theirs[name]) for name in mine)
    ignored = ("wall_time_s", "overrides")
    metrics = {k: v for k, v in read_metrics(run_dir).items() if k not in ignored}
    assert metrics == {k: v for k, v in read_metrics(reference).items() if k not in ignored}
    assert scalars(run_dir) == scalars(reference)


@pytest.mark.slow
def test_a_killed_run_restarted_from_its_last_ckpt_ends_as_if_never_killed(tmp_path, reference):
    run = tmp_path / "run"
    # events reach the disk within 50 ms, so the killed run leaves steps on disk that its
    # checkpoint does not have, which the resumed run logs again. (flush_secs=0 would make
    # TensorBoard's writer thread spin and starve training of the GIL: minutes, not seconds.)
    flush = "logger.tensorboard.flush_secs=0.05"

    def past_first_checkpoint() -> bool:
        saved = checkpoint_step(run)
        return saved >= STEPS_PER_EPOCH and max(steps_logged(run), default=-1) > saved

    killed = start(run, *RUN, flush)
    wait_for(past_first_checkpoint, killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert not (run / "metrics.json").exists()  # nothing ran after the kill
    assert max(steps_logged(run)) > checkpoint_step(run)

    # the same command with ckpt_path=, and no hydra.run.dir: it continues in the run's folder
    result = cli("-m", "litforge.train", *RUN, flush, f"ckpt_path={run}/checkpoints/last.ckpt")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_ends_like(run, reference)


def steps_logged(run_dir: Path) -> list[int]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    if "train/loss_step" not in events.Tags()["scalars"]:
        return []
    return [e.step for e in events.Scalars("train/loss_step")]


@pytest.mark.slow
def test_signal_ctrl_c_saves_last_ckpt_and_metrics_json_and_exits_130(tmp_path):
    run = tmp_path / "run"
    stopped = start(run, *RUN)
    wait_for(lambda: checkpoint_step(run) >= STEPS_PER_EPOCH, stopped)  # an epoch done
    stopped.send_signal(signal.SIGINT)
    assert stopped.wait(timeout=60) == 130  # 128 + SIGINT, as a shell reports it
    metrics = read_metrics(run)
    assert (metrics["status"], metrics["stopped_by"]) == ("interrupted", "interrupt")
    assert checkpoint_step(run) == metrics["global_step"] >= STEPS_PER_EPOCH  # saved as it stopped
    assert "Traceback" not in (tmp_path / "run.log").read_text()


@pytest.mark.slow
def test_signal_sigterm_saves_last_ckpt_and_resume_continues_the_run_exactly(tmp_path, reference):
    run = tmp_path / "run"
    stopped = start(run, *RUN)
    wait_for(lambda: checkpoint_step(run) >= STEPS_PER_EPOCH, stopped)
    stopped.send_signal(signal.SIGTERM)  # what SLURM sends before it preempts a job
    assert stopped.wait(timeout=60) == 143  # 128 + SIGTERM
    metrics = read_metrics(run)
    assert (metrics["status"], metrics["stopped_by"]) == ("interrupted", "interrupt")
    assert checkpoint_step(run) == metrics["global_step"] >= STEPS_PER_EPOCH
    overrides = (run / ".hydra" / "overrides.yaml").read_text()

    # resume= alone: the run's folder, its newest last.ckpt, its own overrides
    result = cli("-m", "litforge.train", f"resume={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / ".hydra" / "overrides.yaml").read_text() == overrides
    assert read_metrics(run)["overrides"] == [*RUN, f"resume={run}"]
    assert_ends_like(run, reference)
