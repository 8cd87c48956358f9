"""A sweep's life in its main process: its plan, job folders named by what varies, a clean stop,
and continuing it where it stopped.

- `sweep.yaml` in the sweep folder holds the command and every job of a grid sweep (job number,
  overrides), so the summary has a row for jobs that never started, and a rerun into the same
  folder (`hydra.sweep.dir=...`) can be checked to be the same sweep.
- Job folders (TensorBoard's run names) carry only the keys that vary between jobs.
- Ctrl-C or SIGTERM stops every worker process (jobs on joblib or submitit save last.ckpt and
  metrics.json first), writes the summary of what finished and prints the command that continues
  the sweep; the exit status is 130 or 143.
- Rerunning that command keeps the jobs that completed, resumes interrupted ones from their
  last.ckpt and runs the rest (train.py asks `earlier_job()`).

No torch here: a sweep whose jobs run in other processes never loads it in this one.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from litforge.errors import Interrupted, UserError

PLAN = "sweep.yaml"
SWEEP_PID = "LITFORGE_SWEEP_PID"  # set in the sweep's main process, inherited by its workers
GRACE_S = 6.0  # what a stopped worker gets to save last.ckpt and metrics.json before SIGKILL


def parsed(overrides: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def fixed_keys(task_overrides: list[str]) -> list[str]:
    """Keys the command sets to one value for every job (the others are swept)."""
    return [o.key_or_group for o in parsed(task_overrides) if not o.is_sweep_override()]


def name_jobs_by_what_varies(config: DictConfig) -> None:
    """Leave the keys every job shares out of job folder names: `3_optimizer=adam,seed=1`.

    Each job's config is composed anew from the master config's Hydra overrides and the job's
    own, so one more Hydra override reaches every job, in this process or a worker.
    """
    excluded = list(config.hydra.job.config.override_dirname.exclude_keys)
    excluded += [
        key for key in fixed_keys(list(config.hydra.overrides.task)) if key not in excluded
    ]
    config.hydra.overrides.hydra.append(
        f"hydra.job.config.override_dirname.exclude_keys=[{','.join(excluded)}]"
    )


def grid_jobs(config: DictConfig) -> list[list[str]] | None:
    """Every job's overrides, in Hydra's order, for a grid sweep (the basic sweeper); None for a
    sweeper that decides its jobs as it goes (Optuna)."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    if not target.endswith("BasicSweeper"):
        return None
    from litforge.engine import compat

    overrides = parsed(list(config.hydra.overrides.task))
    if not any(o.is_sweep_override() for o in overrides):
        return [list(config.hydra.overrides.task)]
    return compat.sweep_jobs(overrides)


def command() -> str:
    """This process's command line as a user types it."""
    from litforge.run.console import program

    return f"{program()} {shlex.join(sys.argv[1:])}".strip()


def continue_command(sweep_dir: Path) -> str:
    """The command again, into the same sweep folder: what continues it."""
    args = [a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")]
    saved = sys.argv[1:]
    try:
        sys.argv[1:] = [*args, f"hydra.sweep.dir={sweep_dir}"]
        return command()
    finally:
        sys.argv[1:] = saved


def write_plan(config: DictConfig) -> list[list[str]] | None:
    """sweep.yaml: the command and every job of a grid sweep. A rerun into the same folder must be
    the same sweep (the same jobs), or it would mix two sweeps' results under one summary."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    jobs = grid_jobs(config)
    plan = {"command": command(), "jobs": jobs}
    path = sweep_dir / PLAN
    if path.is_file():
        earlier = yaml.safe_load(path.read_text()) or {}
        if jobs is not None and earlier.get("jobs") not in (None, jobs):
            raise UserError(
                f"hydra.sweep.dir={sweep_dir} holds another sweep ({earlier.get('command')}); "
                "continue it with that command, or choose a new hydra.sweep.dir for this one."
            )
        return jobs
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return jobs


def planned_jobs(sweep_dir: Path) -> list[list[str]] | None:
    path = sweep_dir / PLAN
    try:
        return (yaml.safe_load(path.read_text()) or {}).get("jobs") if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def descendants(pid: int) -> list[int]:
    """Processes started by `pid`, and by those, that are still running (not zombies)."""
    ps = subprocess.Popen(["ps", "-A", "-o", "pid=,ppid=,stat="], stdout=subprocess.PIPE, text=True)
    out, _ = ps.communicate()
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not fields[2].startswith("Z") and int(fields[0]) != ps.pid:
            children.setdefault(int(fields[1]), []).append(int(fields[0]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def workers() -> list[int]:
    """This process's Python descendants, but joblib's resource tracker.

    The tracker cleans up the workers' shared memory and exits by itself when this process does;
    stopped before them, it is relaunched by a worker and prints a traceback for every name it
    no longer knows. Programs the worker pool runs for a moment (loky's `pgrep` as it cleans up
    after its workers) are left alone too: killed, they end that clean-up in a traceback.
    """
    return [pid for pid in descendants(os.getpid()) if is_worker(pid)]


def is_worker(pid: int) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # ended meanwhile, or no /proc (macOS): treat it as a worker
        return True
    return b"python" in Path(args[0].decode(errors="replace")).name.encode() and not any(
        b"resource_tracker" in arg for arg in args
    )


def stop_workers(signum: int, grace_s: float = GRACE_S) -> None:
    """Pass the signal on to every worker, give them `grace_s` to save, then kill what is left."""
    for pid in workers():
        signal_process(pid, signum)
    deadline = time.monotonic() + grace_s
    while workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in workers():
        signal_process(pid, signal.SIGKILL)


def signal_process(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # it ended meanwhile
        pass


class SweepStop:
    """Ctrl-C and SIGTERM in a sweep's main process: stop the workers, then exit 128 + signal;
    at exit, if the sweep did not end, the summary of what finished and how to continue."""

    def __init__(self, config: DictConfig, write_summary) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.write_summary = write_summary  # (sweep_dir) -> summary path, or None without jobs
        self.ended = False
        self.signum: int | None = None
        self.handlers: dict[int, object] = {}

    current: SweepStop | None = None  # the one installed in this process

    def install(self) -> None:
        SweepStop.current = self
        os.environ[SWEEP_PID] = str(os.getpid())
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.handlers[signum] = signal.signal(signum, self.handle)
        atexit.register(self.at_exit)

    def uninstall(self) -> None:
        """The sweep ended: this process is as it was before it (tests run sweeps in-process)."""
        self.ended = True
        for signum, handler in self.handlers.items():
            signal.signal(signum, handler)
        if os.environ.get(SWEEP_PID) == str(os.getpid()):
            del os.environ[SWEEP_PID]
        atexit.unregister(self.at_exit)
        SweepStop.current = None

    @classmethod
    def refused(cls) -> None:
        """The sweep ends on a mistake its message names: no summary, nothing to continue."""
        if cls.current is not None:
            cls.current.uninstall()

    def handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise Interrupted(128 + signum)
        self.signum = signum
        print(file=sys.stderr)  # below the ^C
        print(
            f"litforge: {signal.Signals(signum).name}: stopping the sweep: each running job saves "
            "last.ckpt and metrics.json ...",
            file=sys.stderr,
            flush=True,
        )
        stop_workers(signum)
        raise Interrupted(128 + signum)

    def at_exit(self) -> None:
        if self.ended:
            return
        try:
            summary = self.write_summary(self.sweep_dir)
        except Exception as err:  # exiting anyway: say what is missing, do not hide why it stopped
            print(f"litforge: the sweep summary could not be written: {err}", file=sys.stderr)
            summary = None
        counts = outcome_counts(self.sweep_dir)
        said = ", ".join(f"{n} {status}" for status, n in counts.items())
        print(
            f"litforge: the sweep stopped before its end ({said or 'no job ran'})."
            + (f" Summary: {summary}." if summary else "")
            + f"\nContinue it with:\n  {continue_command(self.sweep_dir)}",
            file=sys.stderr,
            flush=True,
        )


def outcome_counts(sweep_dir: Path) -> dict[str, int]:
    """How many jobs of the sweep's summary.csv had each outcome."""
    import csv

    path = sweep_dir / "summary.csv"
    if not path.is_file():
        return {}
    counts: dict[str, int] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def in_worker() -> bool:
    """This process runs a sweep's job for a main process elsewhere (joblib, submitit)."""
    pid = os.environ.get(SWEEP_PID)
    return pid is not None and int(pid) != os.getpid()


@dataclass
class EarlierJob:
    """What an earlier run of the same sweep left in a job's folder."""

    status: str  # completed, interrupted, failed, ... or "" (no metrics.json)
    best: float | None
    last_checkpoint: Path | None


def earlier_job(job_dir: Path, overrides: list[str]) -> EarlierJob | None:
    """The job's outcome in an earlier run of this sweep, if its folder holds one for the same
    overrides; None for a job never started."""
    metrics_path = job_dir / "metrics.json"
    found = sorted(job_dir.glob("checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
    last = found[-1] if found else None
    try:
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    except (OSError, ValueError):
        metrics = {}
    if metrics and list(metrics.get("overrides") or []) != list(overrides):
        raise UserError(
            f"{job_dir} holds a job trained with other overrides ({metrics.get('overrides')}); "
            "continue a sweep with its own command, or choose a new hydra.sweep.dir."
        )
    if not metrics and last is None:
        return None
    best = (metrics.get("best") or {}).get("value")
    return EarlierJob(str(metrics.get("status", "")), best, last)
