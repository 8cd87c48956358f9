"""A sweep's TensorBoard HParams experiment: one set of columns for all its jobs.

Each job's run holds its HParams entry (its params and final metrics, engine/loggers.py) but
not the experiment summary, which says what the HParams tab shows as columns. The sweep writes
it when it ends (with summary.md), into its first job's folder, which keeps TensorBoard's run
list to the jobs: the swept keys first, then the other knobs whose values differ between jobs,
then the best monitored value and the test metrics. Keys every job shares and the structural
choices (callbacks, debug, logger, ...) stay in each job's hparams.yaml, not in the table.
TensorBoard shows one experiment per `--logdir`: point it at a sweep's folder to compare that
sweep.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

# group choices that say how a job ran, not what it trained: never columns unless swept
STRUCTURAL = ("callbacks", "debug", "logger", "device", "hparams_search", "trainer")
SUFFIX = ".litforge-hparams"  # the experiment's event file, replaced when the sweep writes anew
MAX_CHOICES = 10  # more distinct numbers than this: a range filter, not a box per value


def write_experiment(
    sweep_dir: Path, job_dirs: list[Path], swept: list[str], monitor: str, tests: list[str]
) -> Path | None:
    """Write the experiment summary; its path, or None where no job wrote hparams.yaml
    (logger=none)."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    loaded = {job: _load(job / "hparams.yaml") for job in job_dirs}
    params = [p for p in loaded.values() if isinstance(p, dict)]
    if not params:
        return None
    # into the first job's run: a run of its own would list an empty run beside the jobs
    home = next(job for job, p in loaded.items() if isinstance(p, dict))
    keys = hparam_columns(params, swept)
    columns = [hp.HParam(key, filter_domain(hp, [p.get(key) for p in params])) for key in keys]
    metrics = [hp.Metric(f"{monitor}_best", display_name=f"best {monitor}")]
    metrics += [hp.Metric(name, display_name=name) for name in tests]
    summary = mark_swept(hp.hparams_config_pb(hparams=columns, metrics=metrics), swept)
    # TensorBoard keeps the first summary it reads of a tag in a run: replace, never add
    for earlier in sweep_dir.glob(f"*/events.out.tfevents.*{SUFFIX}"):
        earlier.unlink()
    writer = EventFileWriter(str(home), filename_suffix=SUFFIX)
    writer.add_event(Event(wall_time=time.time(), summary=summary))
    writer.close()
    return next(home.glob(f"events.out.tfevents.*{SUFFIX}"))


def mark_swept(summary, swept: list[str]):
    """Mark the swept columns as the ones that differ: TensorBoard orders its columns by that
    mark, then by name, whatever the experiment's order, and shows marked ones by default."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    plugin_data = summary.value[0].metadata.plugin_data
    data = plugin_data_pb2.HParamsPluginData.FromString(plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in swept
    plugin_data.content = data.SerializeToString()
    return summary


def hparam_columns(params: list[dict[str, Any]], swept: list[str]) -> list[str]:
    """The swept keys, then the other keys whose values differ between jobs."""
    keys = list(dict.fromkeys(key for p in params for key in p))
    first = [key for key in swept if key in keys]
    differ = [
        key
        for key in keys
        if key not in first
        and key not in STRUCTURAL
        and len({repr(p.get(key)) for p in params}) > 1
    ]
    return first + differ


def filter_domain(hp, values: list):
    """The column's values as TensorBoard filters them: a box per value, or for many numbers
    (an Optuna search's sampled learning rates) a range."""
    values = domain(values)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numbers and len(values) > MAX_CHOICES:
        if all(isinstance(v, int) for v in values):
            return hp.IntInterval(min(values), max(values))
        return hp.RealInterval(float(min(values)), float(max(values)))
    return hp.Discrete(values)


def domain(values) -> list:
    """A column's values as one type, which TensorBoard's discrete domain needs: numbers as
    they are (ints stay ints), bools, or else text."""
    values = list(dict.fromkeys(values))
    if all(isinstance(v, bool) for v in values):
        return values
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return values
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return [str(v) for v in values]


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):  # a job that never started, or a file cut short
        return None
