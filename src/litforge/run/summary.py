"""A sweep's results for people: summary.csv, summary.md and plots in the multirun folder.

Written by `SweepSummary` (a Hydra callback, see conf/train.yaml) when a multirun ends, and by
`python -m litforge.summary outputs/multiruns/<...>` (litforge/summary.py) for any multirun folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from litforge.run import hparams

# "missing": the job left no metrics.json (killed, or crashed); "unreadable": it is not JSON
FAILED = ("failed", "missing", "unreadable")
STUDY_PLOTS = ("study_history.png", "study_importances.png")  # run/study.py writes them


@dataclass
class Job:
    """One job of a sweep, read back from its folder."""

    dir: Path  # relative to the sweep folder
    num: int
    overrides: dict[str, str]  # key -> value, as typed on the command line
    metrics: dict[str, Any]  # its metrics.json; {} when it left none
    monitor_mode: str  # min or max

    @property
    def status(self) -> str:
        return self.metrics.get("status", "missing")

    @property
    def best(self) -> float:
        best = self.metrics.get("best") or {}
        value = best.get("value")
        return math.nan if value is None else float(value)

    @property
    def checkpoint(self) -> str:
        best = self.metrics.get("best") or {}
        return str(self.dir / best["checkpoint"]) if best.get("checkpoint") else ""

    def label(self, keys: list[str]) -> str:
        text = " ".join(f"{key}={self.overrides.get(key, '')}" for key in keys)
        return text if len(text) <= 60 else text[:57] + "..."  # a legend entry, not a page


def read_jobs(sweep_dir: Path) -> list[Job]:
    """Every job folder under sweep_dir (any folder Hydra gave a .hydra/), by job number, and a
    `not started` row for each job of the sweep's plan (sweep.yaml) that has no folder."""
    from litforge.run.sweep import planned_jobs

    jobs = []
    for hydra_dir in sweep_dir.glob("*/.hydra"):
        job_dir = hydra_dir.parent
        metrics = read_metrics(job_dir / "metrics.json")
        overrides = metrics.get("overrides") or _load_yaml(hydra_dir / "overrides.yaml") or []
        config = _load_yaml(hydra_dir / "config.yaml") or {}
        hydra = (_load_yaml(hydra_dir / "hydra.yaml") or {}).get("hydra", {})
        jobs.append(
            Job(
                dir=job_dir.relative_to(sweep_dir),
                num=_job_number(hydra, len(jobs)),
                overrides=dict(_split(override) for override in overrides),
                metrics=metrics,
                monitor_mode=str(config.get("monitor_mode", "min")),
            )
        )
    started = {job.num for job in jobs}
    for num, overrides in enumerate(planned_jobs(sweep_dir) or []):
        if num not in started:
            not_started = {"status": "not started", "overrides": overrides}
            mode = jobs[0].monitor_mode if jobs else "min"
            jobs.append(Job(Path(), num, dict(map(_split, overrides)), not_started, mode))
    return sorted(jobs, key=lambda job: job.num)


def read_metrics(path: Path) -> dict[str, Any]:
    """A job's metrics.json; {} if there is none; `unreadable` if it is not what a run writes."""
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict) or "status" not in metrics:
            raise ValueError("not a metrics.json written by litforge.train")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return {"status": "unreadable", "error": f"{path.name} is unreadable ({err})"}
    return metrics


class Summary:
    """The tables and plots of one sweep folder."""

    def __init__(self, sweep_dir: Path, jobs: list[Job]) -> None:
        self.sweep_dir, self.jobs = sweep_dir, jobs
        keys = list(dict.fromkeys(key for job in jobs for key in job.overrides))
        # a swept key changes between jobs; with one job, every override is shown
        self.swept = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1] or keys
        self.fixed = {k: jobs[0].overrides[k] for k in keys if k not in self.swept}
        self.monitor = next((j.metrics["monitor"] for j in jobs if j.metrics), "val/loss")
        self.mode = jobs[0].monitor_mode if jobs else "min"
        self.tests = list(dict.fromkeys(n for j in jobs for n in j.metrics.get("test") or {}))
        self.best_name = f"best {self.monitor}"

    def ranked(self) -> list[Job]:
        """Jobs with a best value first, best first; then the rest by job number."""
        sign = 1 if self.mode == "min" else -1
        scored = [j for j in self.jobs if math.isfinite(j.best)]
        rest = [j for j in self.jobs if not math.isfinite(j.best)]
        return sorted(scored, key=lambda j: sign * j.best) + rest

    def rows(self) -> list[dict[str, Any]]:
        """One row per job: overrides, outcome, best value, test metrics, time, checkpoint."""
        rows = []
        for job in self.ranked():
            m = job.metrics
            row = {"job": job.num, **{k: job.overrides.get(k, "") for k in self.swept}}
            row |= {"status": job.status, "epochs": m.get("epochs")}
            row |= {"stopped_by": m.get("stopped_by"), self.best_name: job.best}
            row |= {name: (m.get("test") or {}).get(name) for name in self.tests}
            row |= {"wall_time_s": m.get("wall_time_s"), "checkpoint": job.checkpoint}
            row |= {
                "job_dir": str(job.dir) if job.dir.parts else "",
                "error": m.get("error") or _missing(job),
            }
            rows.append(row)
        return rows

    def over_seeds(self) -> list[dict[str, Any]]:
        """Each configuration (the swept keys but seed) over its seeds: n, mean and std."""
        if "seed" not in self.swept:
            return []
        keys = [k for k in self.swept if k != "seed"]
        groups: dict[tuple, list[Job]] = {}
        for job in self.jobs:
            groups.setdefault(tuple(job.overrides.get(k, "") for k in keys), []).append(job)
        names = [self.best_name, *self.tests, "epochs", "wall_time_s"]
        table = []
        for config, jobs in groups.items():
            done = [j for j in jobs if j.status == "completed"]
            row: dict[str, Any] = dict(zip(keys, config, strict=True))
            row["seeds"] = f"{len(done)}/{len(jobs)}"
            for name in names:
                values = [_value(j, name, self.best_name) for j in done]
                values = [v for v in values if v is not None and math.isfinite(v)]
                row[name] = (
                    statistics.fmean(values) if values else math.nan,
                    statistics.stdev(values) if len(values) > 1 else math.nan,
                )
            table.append(row)
        sign = 1 if self.mode == "min" else -1
        return sorted(table, key=lambda r: _nan_last(sign * r[self.best_name][0]))

    def write(self) -> None:
        """summary.csv, summary_seeds.csv (when seed is swept), the plots and summary.md."""
        rows, seeds = self.rows(), self.over_seeds()
        _write_csv(self.sweep_dir / "summary.csv", rows)
        if seeds:
            _write_csv(self.sweep_dir / "summary_seeds.csv", [_flatten(row) for row in seeds])
        # an Optuna search's history and parameter importances, drawn by its sweeper
        plots = self.plot() + [p for p in map(self.sweep_dir.joinpath, STUDY_PLOTS) if p.is_file()]
        (self.sweep_dir / "summary.md").write_text(self.markdown(rows, seeds, plots))
        hparams.write_experiment(  # TensorBoard's HParams columns for the sweep
            self.sweep_dir, [self.sweep_dir / j.dir for j in self.jobs], self.swept, self.monitor,
            self.tests,
        )  # fmt: skip

    def markdown(self, rows: list[dict], seeds: list[dict], plots: list[Path]) -> str:
        failed = [j for j in self.jobs if j.status in FAILED]
        better = "lower" if self.mode == "min" else "higher"
        lines = [
            f"# Sweep {self.sweep_dir.name}",
            "",
            f"{len(self.jobs)} job{'s' * (len(self.jobs) != 1)}: {_counts(self.jobs)}. "
            f"Sorted by {self.best_name} ({better} is better).",
        ]
        if self.fixed:
            lines.append("Every job: " + " ".join(f"`{k}={v}`" for k, v in self.fixed.items()))
        shown = [c for c in rows[0] if c not in ("job_dir", "error")] if rows else []
        linked = [row | {"checkpoint": _md_link(row["checkpoint"])} for row in rows]
        lines += ["", *_md_table(shown, linked)]
        if seeds:
            lines += ["", "## Over seeds (mean ± sample std)", ""]
            lines += _md_table(list(seeds[0]), seeds)
        if failed:
            lines += ["", "## Failed jobs", ""]
            lines += [f"- `{j.dir}`: {j.metrics.get('error') or _missing(j)}" for j in failed]
        if plots:
            lines += ["", "## Plots", ""]
            lines += [f"![{p.stem}]({p.name})" for p in plots]
        return "\n".join(lines) + "\n"

    def plot(self) -> list[Path]:
        """The monitored metric per epoch of every job, and its best value against each key."""
        if not self.jobs:
            return []
        from matplotlib.figure import Figure  # the object API: no GUI backend, no global state
        from matplotlib.ticker import MaxNLocator

        stem = self.monitor.replace("/", "_")
        curves = self.sweep_dir / f"{stem}.png"
        fig = Figure(figsize=(10, 5), layout="constrained")
        ax = fig.subplots()
        for job in self.jobs:
            history = job.metrics.get("history") or {}
            values = [math.nan if v is None else v for v in history.get(self.monitor, [])]
            epochs = history.get("epoch", range(len(values)))
            style = "--" if job.status in FAILED else "-"
            ax.plot(epochs, values, style, marker=".", label=job.label(self.swept))
        values = [v for line in ax.get_lines() for v in line.get_ydata() if math.isfinite(v)]
        if values and min(values) > 0 and max(values) > 10 * min(values):  # spans a decade
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel=self.monitor, title=f"{self.monitor} per epoch, every job")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
        fig.savefig(curves, dpi=100)
        if not self.swept:  # a multirun of one job without overrides
            return [curves]

        by_key = self.sweep_dir / f"{stem}_by_key.png"
        fig = Figure(figsize=(4 * len(self.swept) + 1, 4), layout="constrained")
        axes = fig.subplots(1, len(self.swept), squeeze=False)[0]
        for ax, key in zip(axes, self.swept, strict=True):
            _scatter_by(ax, key, [(j.overrides.get(key, ""), j.best) for j in self.jobs])
            ax.set(xlabel=key, ylabel=self.best_name)
        fig.suptitle(f"{self.best_name} against each swept key")
        fig.savefig(by_key, dpi=100)
        return [curves, by_key]


class SweepSummary(Callback):
    """Writes the summary when a multirun ends; exits 1 if a job of this multirun failed. If the
    sweep stops before its end (Ctrl-C, SIGTERM), every worker is stopped and the summary of what
    finished is written with the command that continues it (run/sweep.py)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.stop = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from litforge.run.sweep import SweepStop

        self.started = time.time()
        self.stop = SweepStop(config, write_summary)
        self.stop.install()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.stop is not None:
            self.stop.uninstall()
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = read_jobs(sweep_dir)
        if not jobs:
            return
        table = Summary(sweep_dir, jobs)
        table.write()
        best = table.ranked()[0]
        if math.isfinite(best.best):
            tests = ", ".join(
                f"{k} {v:#.4g}" for k, v in sorted(best.metrics.get("test", {}).items())
            )
            print(
                f"litforge: best job: {best.dir}: {table.best_name} {best.best:#.4g}"
                + (f"; {tests}" if tests else "")
            )
        print(f"litforge: sweep summary: {sweep_dir / 'summary.md'}")
        # an Optuna study's folder, or a sweep continued in its folder, holds earlier runs' jobs;
        # only those this run started (Hydra wrote their .hydra/ anew) decide the exit code
        failed = [j for j in jobs if j.status in FAILED and self.ran_now(sweep_dir / j.dir)]
        if failed:
            print(f"litforge: error: {len(failed)} of {len(jobs)} jobs failed:", file=sys.stderr)
            for job in failed:
                print(f"  {job.dir}: {job.metrics.get('error') or _missing(job)}", file=sys.stderr)
            sys.exit(1)

    def ran_now(self, job_dir: Path) -> bool:
        overrides = job_dir / ".hydra" / "overrides.yaml"
        return overrides.is_file() and overrides.stat().st_mtime >= self.started - 1


def write_summary(sweep_dir: Path) -> Path | None:
    """The summary of what a sweep folder holds; its summary.md, or None if it holds no job."""
    jobs = read_jobs(sweep_dir)
    if not jobs:
        return None
    Summary(sweep_dir, jobs).write()
    return sweep_dir / "summary.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m litforge.summary",
        description="Write summary.csv, summary.md and plots for a multirun folder.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a folder under outputs/multiruns/")
    sweep_dir = parser.parse_args(argv).sweep_dir
    problem = not_a_sweep(sweep_dir)
    if problem:
        print(f"litforge: error: {problem}", file=sys.stderr)
        sys.exit(2)
    Summary(sweep_dir, read_jobs(sweep_dir)).write()
    print((sweep_dir / "summary.md").read_text(), end="")


def not_a_sweep(folder: Path) -> str | None:
    """Why `folder` is not one sweep's folder, in words with the fix; None if it is one."""
    if not folder.is_dir():
        return f"{folder} is not a folder; give a sweep's folder, e.g. outputs/multiruns/<time>."
    if (folder / ".hydra").is_dir() and not list(folder.glob("*/.hydra")):
        return (
            f"{folder} is a single run, not a sweep: its results are in {folder / 'metrics.json'}; "
            "give the folder of a sweep (python -m litforge.train -m ...)."
        )
    sweeps = sorted(p for p in folder.iterdir() if (p / "multirun.yaml").is_file())
    if sweeps and not (folder / "multirun.yaml").is_file():
        return f"{folder} holds {len(sweeps)} sweeps, not one; give one of them, e.g. {sweeps[-1]}."
    if not read_jobs(folder):
        return (
            f"{folder} holds no sweep jobs (folders with a .hydra/ inside); give a folder under "
            "outputs/multiruns/."
        )
    return None


def _job_number(hydra: dict, default: int) -> int:
    try:
        return int(hydra.get("job", {}).get("num", default))
    except (TypeError, ValueError):  # a single run's `???`
        return default


def _scatter_by(ax, key: str, points: list[tuple[str, float]]) -> None:
    """Many numbers on a number axis (log when they span 100x); few values, or words, as ticks."""
    numbers = [_number(value) for value, _ in points]
    distinct = set(numbers)
    if None not in distinct and (len(distinct) > 5 or any(n != int(n) for n in distinct)):
        ax.scatter(numbers, [best for _, best in points])
        if min(numbers) > 0 and max(numbers) >= 100 * min(numbers):
            ax.set_xscale("log")
        return
    categories = list(dict.fromkeys(value for value, _ in points))
    if None not in distinct:
        categories.sort(key=float)
    ax.scatter([categories.index(v) for v, _ in points], [best for _, best in points])
    shown = [c if len(c) <= 24 else c[:21] + "..." for c in categories]  # a tick, not a page
    ax.set_xticks(range(len(categories)), shown, rotation=30 if len(categories) > 4 else 0)
    ax.set_xlim(-0.5, len(categories) - 0.5)


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _value(job: Job, name: str, best_name: str) -> float | None:
    if name == best_name:
        return job.best
    if name in ("epochs", "wall_time_s"):
        return job.metrics.get(name)
    return (job.metrics.get("test") or {}).get(name)


def _missing(job: Job) -> str | None:
    return "no metrics.json: the job was killed or crashed" if job.status == "missing" else None


def _counts(jobs: list[Job]) -> str:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    """(mean, std) cells as two columns, for the CSV."""
    flat = {}
    for key, value in row.items():
        if isinstance(value, tuple):
            flat[f"{key} mean"], flat[f"{key} std"] = value
        else:
            flat[key] = value
    return flat


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows([{k: _csv_cell(v) for k, v in row.items()} for row in rows])


def _csv_cell(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _md_table(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(row.get(c)) for c in columns) + " |")
    return lines


def _md_cell(value: Any) -> str:
    if isinstance(value, tuple):  # (mean, std) over seeds
        mean, std = value
        if math.isnan(mean):
            return ""
        return _md_cell(mean) + ("" if math.isnan(std) else f" ± {std:.2g}")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and len(value) > 8 and _number(value) is not None:
        return f"{float(value):.4g}"  # a sampled 0.017613763016070656 reads as 0.01761
    return str(value).replace("|", "\\|")


def _md_link(path: str) -> str:
    return f"[{Path(path).name}](<{path}>)" if path else ""


if __name__ == "__main__":
    main()
