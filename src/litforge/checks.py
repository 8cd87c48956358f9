"""The pre-flight check: a user's mistake in a composed config becomes one message that names the
key, the bad value and the fix, before any data is loaded.

`check_config(cfg)` runs right after Hydra composes the config: the values first (rules.py, no
torch), then what the code the config names must agree with (imports, tasks, devices,
precision). `PreflightCheck` (a Hydra callback) does it for every job of a sweep before the first
starts; `python -m litforge.checks [overrides]` (`make check-config ARGS="..."`) also builds data,
model and trainer, without training or writing anything. Sizes are checked once the data is
loaded (engine), a resumed checkpoint once the model is built (run/resume.py).
"""

from __future__ import annotations

import copy
import difflib
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

from litforge.engine import compat
from litforge.errors import UserError, exit_on_error
from litforge.rules import (
    MIN_ROWS,
    WHOLE_NUMBERS,
    check_accumulation,
    check_data_values,
    check_model_values,
    check_monitor,
    check_optimizer,
    check_output_dir,
    check_ranges,
    check_split,
    check_task,
    check_whole_number,
    is_number,
    shown,
)

# what each task's module logs for validation (models.py) and which way is better;
# tests/test_errors.py checks this table against the modules' own torchmetrics
METRIC_MODES = {
    "regression": {"val/loss": "min", "val/mse": "min", "val/mae": "min", "val/r2": "max"},
    "classification": {"val/loss": "min", "val/acc": "max", "val/f1": "max"},
}


def check_config(cfg: DictConfig, here: bool = True, code: bool = True) -> None:
    """Everything that can be checked from the composed config alone, in the order users err.

    The values first: they need no import, so a mistaken value answers before torch loads
    (~0.5 s, not ~4 s). `here=False` when the run will start on another machine (a Slurm job):
    its devices are checked there, when it starts. `code=False` checks the values only, for a
    process that will not run the job itself (it never loads torch); the job checks the rest.
    """
    check_no_missing_values(cfg)
    one_value_per_knob(cfg)
    for name in WHOLE_NUMBERS:
        for key, value in knob(cfg, name):
            check_whole_number(key, value, *WHOLE_NUMBERS[name])
    check_ranges(cfg)
    check_optimizer(cfg.optimizer)
    check_model_values(cfg.model)
    check_data_values(cfg.data)
    check_logger_packages(cfg.get("logger") or {})
    if not code:
        return
    # then what the code the config names must agree with (this imports torch and lightning)
    check_targets_import(cfg)
    for group in ("optimizer", "scheduler", "model", "data"):
        check_arguments(cfg.get(group), group)
    check_activation(cfg.model)
    data_task, rows = check_data(cfg.data)
    check_task(model_task(cfg.model), data_task)
    task = model_task(cfg.model) or data_task
    check_monitor(str(cfg.monitor), str(cfg.monitor_mode), task, METRIC_MODES.get(task, {}))
    if here:
        accelerator = check_device(cfg.trainer)
        for key, value in knob(cfg, "precision"):
            check_precision(key, value, accelerator)
    if rows is not None:  # a bundled or synthetic set: its size is known without loading it
        split = cfg.data.val_fraction, cfg.data.test_fraction
        n_train = check_split(rows, *split, MIN_ROWS.get(data_task, 1))
        for _, k in knob(cfg, "accumulate_grad_batches"):
            check_accumulation(n_train, cfg.data.batch_size, k)
    if cfg.get("ckpt_path") is not None:
        from litforge.engine.checkpoints import load_checkpoint

        load_checkpoint(Path(str(cfg.ckpt_path)))


def knob(cfg: DictConfig, name: str) -> list[tuple[str, Any]]:
    """The top-level knob, and `trainer.<name>` too if it was set apart from the knob."""
    found = [(name, cfg.get(name))] if name in cfg else []
    trainer = cfg.get("trainer")
    if trainer is not None and name in trainer and not OmegaConf.is_interpolation(trainer, name):
        found.append((f"trainer.{name}", trainer[name]))
    return found


def check_no_missing_values(cfg: DictConfig) -> None:
    """`???` in a config file means "you must give this on the command line"."""
    missing = [key for key in keys_where(cfg, lambda node, key: OmegaConf.is_missing(node, key))]
    if missing:
        examples = {"data.path": "data.path=my.csv", "data.target": "data.target=price"}
        given = " ".join(examples.get(k, f"{k}=VALUE") for k in missing)
        raise UserError(
            f"{' and '.join(missing)} {'has' if len(missing) == 1 else 'have'} no value (??? in "
            f"the config file); add {given} to the command."
        )


def keys_where(node: DictConfig, test, path: str = "") -> list[str]:
    """Dotted keys of `node` (Hydra's own node left out) where test(parent, key) holds.

    Walks without resolving interpolations: `${hydra:...}` has no value outside a running job.
    """
    found = []
    for key, value in node.items_ex(resolve=False):
        if not path and key == "hydra":  # it holds ??? (hydra.job.num) until a job runs
            continue
        if test(node, key):
            found.append(f"{path}{key}")
        elif OmegaConf.is_dict(value):
            found += keys_where(value, test, f"{path}{key}.")
    return found


def targets(cfg: DictConfig) -> list[tuple[str, str]]:
    """(key of the node, its `_target_`) for every node that names one."""
    found = keys_where(cfg, lambda node, key: key == "_target_")
    return [(key.removesuffix("._target_"), str(OmegaConf.select(cfg, key))) for key in found]


# knobs that the Trainer's config repeats (trainer.max_epochs: ${max_epochs}): one knob each
PAIRED = ("max_epochs", "precision", "accumulate_grad_batches")


def one_value_per_knob(cfg: DictConfig) -> None:
    """`max_epochs` and `trainer.max_epochs` (and the precision and accumulation pairs) are one
    knob: the one the user set is what the run, HParams, schedules and patience all use.

    Set on the command line, the top-level key wins over a `trainer.` value from a config file;
    both set on the command line to different values is a mistake.
    """
    typed = {o.split("=", 1)[0].lstrip("+~") for o in command_overrides(cfg)}
    trainer = cfg.get("trainer")
    for name in PAIRED:
        if trainer is None or name not in trainer or OmegaConf.is_interpolation(trainer, name):
            continue
        top, inner = cfg.get(name), trainer[name]
        if name in typed and f"trainer.{name}" in typed and top != inner:
            raise UserError(
                f"{name}={shown(top)} and trainer.{name}={shown(inner)} set one knob to two "
                f"values; give one of them, e.g. {name}={shown(inner)}."
            )
        if name not in typed:
            cfg[name] = inner  # the trainer's value, for everything that reads ${name}
        trainer[name] = "${" + name + "}"


def command_overrides(cfg: DictConfig) -> list[str]:
    """The overrides of the command that made `cfg`: Hydra's record of them, in a job or in a
    config composed with its `hydra` node."""
    from hydra.core.hydra_config import HydraConfig

    if "hydra" in cfg:
        return list(OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or [])
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return []


def check_arguments(node: DictConfig | None, key: str) -> None:
    """Every key of a node names an argument of its `_target_` (a typo would be a TypeError
    deep inside instantiate)."""
    if not OmegaConf.is_dict(node) or "_target_" not in node:
        return
    target = compat.locate(str(node._target_))
    accepted = argument_names(target)
    if accepted is None:  # it takes **kwargs it passes on to something we cannot see
        return
    unknown = [k for k in node if not str(k).startswith("_") and k not in accepted]
    if not unknown:
        return
    shown_names = [n for n in accepted if n not in ("params", "optimizer", "self")]
    close = difflib.get_close_matches(str(unknown[0]), shown_names, n=1)
    hint = f" (did you mean {key}.{close[0]}?)" if close else ""
    raise UserError(
        f"{key}.{unknown[0]} is not an argument of {node._target_}{hint}; its arguments are "
        f"{', '.join(shown_names)}. Remove it or fix its spelling."
    )


def argument_names(target: Any) -> list[str] | None:
    """The keyword arguments `target` takes, following **kwargs up its base classes' __init__;
    None where they end in **kwargs nobody names."""
    import inspect

    names: list[str] = []
    classes = target.__mro__ if inspect.isclass(target) else [target]
    for owner in classes:
        function = owner.__init__ if inspect.isclass(owner) else owner
        if inspect.isclass(owner) and "__init__" not in vars(owner):
            continue
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return list(dict.fromkeys(n for n in names if n != "self"))
        if owner.__module__.startswith(("lightning", "torch")):
            return None  # their **kwargs go places we do not follow
    return None


# the Python package a logger needs, and the extra of pyproject.toml that installs it
LOGGER_PACKAGES = {"MLFlowLogger": ("mlflow", "mlflow"), "WandbLogger": ("wandb", "wandb")}


def check_logger_packages(loggers: DictConfig) -> None:
    """logger=mlflow or wandb where its package is not installed: one line saying how to get it
    (Lightning would say it at the first log call, after the data was loaded)."""
    for name, logger in loggers.items():
        target = str(OmegaConf.select(logger, "_target_", default="") or "")
        package = LOGGER_PACKAGES.get(target.rsplit(".", 1)[-1])
        if package is not None and importlib.util.find_spec(package[0]) is None:
            module, extra = package
            raise UserError(
                f"logger={name} needs the {module} package, which is not installed: "
                f"pip install -e '.[{extra}]' (make installs it with EXTRAS=dev,sweep,{extra})."
            )


def check_targets_import(cfg: DictConfig) -> None:
    """Every `_target_` names something importable (a typo there is a Python traceback later)."""
    for path, target in targets(cfg):
        try:
            compat.locate(target)
        except Exception as err:
            module_name, _, name = target.rpartition(".")
            try:
                names = dir(importlib.import_module(module_name))
            except Exception:  # the module itself is missing or broken: say what Python said
                cause = err.__cause__ or err
                problem = f"{type(cause).__name__}: {cause}"
            else:
                close = difflib.get_close_matches(name, names, n=1)
                problem = f"{module_name} has no {name}" + (
                    f"; did you mean {module_name}.{close[0]}?" if close else ""
                )
            raise UserError(
                f"{path}._target_={target!r} cannot be imported ({problem}); check its spelling "
                "and that its module is installed."
            ) from err


def check_activation(model: DictConfig) -> None:
    from litforge.models import ACTIVATIONS

    activation = model.get("activation")
    if activation is not None and activation not in ACTIVATIONS:
        raise UserError(
            f"model.activation={shown(activation)} is not one of {', '.join(ACTIVATIONS)}; "
            "use e.g. model.activation=relu."
        )


def model_task(model: DictConfig) -> str | None:
    """regression or classification for litforge's modules (their `task`); None for others."""
    from hydra.utils import get_class

    return getattr(get_class(model._target_), "task", None)


def check_data(data: DictConfig) -> tuple[str | None, int | None]:
    """The data class's own keys; returns its task and row count where the config tells them."""
    from hydra.utils import get_class

    from litforge.data import TASKS, CSVDataModule, SklearnDataModule, SyntheticDataModule

    cls = get_class(data._target_)
    if issubclass(cls, SklearnDataModule):
        name = data.get("name")
        if name not in cls.LOADERS:
            raise UserError(
                f"data.name={shown(name)} is not a bundled data set; choose one of "
                f"{', '.join(cls.LOADERS)} (or data=csv for your own file)."
            )
        return cls.LOADERS[name][1], cls.ROWS[name]
    if issubclass(cls, SyntheticDataModule):
        for key, low in (("n", 3), ("num_features", 1)):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(
                    f"data.{key}={shown(value)} is not allowed: it must be a whole number "
                    f"≥ {low}; use e.g. data.{key}={1000 if key == 'n' else 8}."
                )
        noise = data.get("noise")
        if not is_number(noise) or noise < 0:
            raise UserError(
                f"data.noise={shown(noise)} is not allowed: it is the noise's standard "
                "deviation, a number ≥ 0; use e.g. data.noise=0.1."
            )
        return cls.task, data.n
    if issubclass(cls, CSVDataModule):
        task = data.get("task")
        if task not in TASKS:
            raise UserError(
                f"data.task={shown(task)} is not a task; use data.task=regression or "
                "data.task=classification."
            )
        path = Path(str(data.path))
        if not path.is_file():
            where = "is a folder" if path.is_dir() else "does not exist"
            raise UserError(
                f"data.path={str(path)!r} {where}; give the path of a CSV file with a header row "
                f"(relative paths start from {Path.cwd()})."
            )
        from litforge.tables import READ_KEYS, check_options

        check_options(task, **{key: data[key] for key in READ_KEYS if key in data})
        return task, None
    task = getattr(cls, "task", None)  # a data module of your own: its class may say
    return (task if isinstance(task, str) else None), None


def check_device(trainer: DictConfig) -> str:
    """The accelerator exists here; returns the one the run will use: cpu, cuda or mps."""
    import torch
    from lightning.pytorch.accelerators import AcceleratorRegistry

    accelerator = str(trainer.get("accelerator", "auto"))
    known = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    if accelerator not in known:
        raise UserError(
            f"trainer.accelerator={accelerator!r} is not one Lightning knows ({', '.join(known)}); "
            "choose device=cpu, device=gpu, device=mps or device=auto."
        )
    from litforge.build import check_accelerator

    check_accelerator(accelerator)
    devices = trainer.get("devices", 1)
    if accelerator in ("gpu", "cuda") and isinstance(devices, int):
        if devices > torch.cuda.device_count():
            raise UserError(
                f"trainer.devices={devices} asks for more GPUs than torch sees "
                f"({torch.cuda.device_count()}); use trainer.devices=-1 for all of them."
            )
    if accelerator == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    return "cuda" if accelerator == "gpu" else accelerator


def check_precision(key: str, value: Any, accelerator: str) -> None:
    """A precision Lightning knows, and one the device can run (Lightning would silently
    swap 16-mixed for bf16-mixed on a CPU)."""
    import torch

    allowed, aliases = compat.precision_values()
    if isinstance(value, bool) or value not in allowed:
        full = sorted(v for v in allowed if isinstance(v, str) and "-" in v)
        names = dict.fromkeys(["32", "64", *full, "16", "bf16"])
        raise UserError(
            f"{key}={shown(value)} is not a precision Lightning knows; choose one of "
            f"{', '.join(names)} (e.g. {key}=32, or {key}=bf16-mixed)."
        )
    unified = aliases.get(str(value), str(value))
    problem = None
    if unified == "16-mixed" and accelerator == "cpu":
        problem = "float16 mixed precision needs a CUDA GPU; on the CPU use bf16-mixed or 32"
    elif (
        unified.startswith("bf16") and accelerator == "cuda" and not torch.cuda.is_bf16_supported()
    ):
        problem = "this GPU has no bfloat16; use 16-mixed or 32"
    elif unified == "64-true" and accelerator == "mps":
        problem = "Apple's MPS has no float64; use 32, or device=cpu for 64"
    elif unified.startswith("transformer-engine") and accelerator != "cuda":
        problem = "Transformer Engine needs an NVIDIA GPU; use 32 or bf16-mixed"
    if problem:
        raise UserError(
            f"{key}={value} cannot run on this run's device ({accelerator}): {problem}."
        )


class PreflightCheck(HydraCallback):
    """A Hydra callback: refuse an unwritable run folder before Hydra tries to create it, and
    a sweep with a mistake in any job before its first job starts. A sweep's jobs are named by
    the keys that vary between them, and its plan is written (run/sweep.py)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_error(check_output_dir, Path(str(config.hydra.run.dir)), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from litforge.run import sweep

        exit_on_error(check_output_dir, Path(str(config.hydra.sweep.dir)), "hydra.sweep.dir")
        sweep.name_jobs_by_what_varies(config)  # before any job's config is composed
        exit_on_error(check_sweep, config)
        exit_on_error(sweep.write_plan, config)


# launchers whose jobs start on other machines, with devices this one may not have
REMOTE_LAUNCHERS = ("SlurmLauncher", "RQLauncher", "RayAWSLauncher")
# launchers that run every job in this process
IN_PROCESS_LAUNCHERS = ("BasicLauncher",)


def check_sweep(config: DictConfig) -> None:
    """check_config for every job of a comma-list sweep, composed as Hydra's launcher will.

    Where the jobs run in this process (Hydra's basic launcher), everything is checked here, as
    the jobs load torch anyway. Where they run in other processes (joblib, submitit, Slurm),
    only the values are: loading torch here would cost each sweep ~4 s before its first job
    starts; each job checks the rest (imports, task, devices) as it starts, and a job that
    fails there fails alone (metrics.json, summary.md and the exit status say so).
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    loader = GlobalHydra.instance().config_loader()
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
    here = not launcher.endswith(REMOTE_LAUNCHERS)
    in_process = launcher.endswith(IN_PROCESS_LAUNCHERS)
    sweep_jobs = jobs(list(config.hydra.overrides.task))
    if in_process and sweep_jobs:
        compat.compose_sweep_job_with(loader, ComposedOnce(loader, config, sweep_jobs))
    for job in sweep_jobs:
        try:
            cfg = loader.load_sweep_config(config, job)
        except HydraException as err:  # a key that is not in the config, a group option typo
            raise UserError(f"in the sweep job {' '.join(job)}: {err}") from err
        cfg.output_dir = str(config.hydra.sweep.dir)  # the job's own folder is not known yet
        try:
            check_config(cfg, here, code=in_process)
        except UserError as err:
            raise UserError(f"in the sweep job {' '.join(job)}: {err}") from err


class ComposedOnce:
    """Stands in for the config loader's `load_sweep_config` while a sweep runs in this process:
    each job's config is composed once, not three times.

    Hydra composes a job's config for its own batch check (`Sweeper.validate_batch_is_legal`)
    and again for the launch, and the pre-flight check above composed it first: ~0.12 s each
    on this machine, ~0.25 s a job of waste. Here the jobs' first compositions are kept and each
    later request gets a deep copy (the launcher writes the job's number into it). Other
    requests compose as usual.
    """

    def __init__(self, loader, master_config: DictConfig, sweep_jobs: list[list[str]]) -> None:
        self.compose = compat.own_compose_sweep_job(loader)
        self.master_config = master_config
        self.wanted = {tuple(job) for job in sweep_jobs}
        self.composed: dict[tuple[str, ...], DictConfig] = {}

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = tuple(sweep_overrides)
        if master_config is not self.master_config or key not in self.wanted:
            return self.compose(master_config, sweep_overrides)
        if key not in self.composed:
            self.composed[key] = self.compose(master_config, sweep_overrides)
        return copy.deepcopy(self.composed[key])


def validate(cfg: DictConfig) -> str:
    """All a run checks before its first step, without training or writing; returns a summary."""
    from litforge import build

    run_dir = Path(str(cfg.hydra.run.dir))
    check_output_dir(run_dir, "hydra.run.dir")
    cfg.output_dir = str(run_dir)  # named for the callbacks; nothing is written there
    check_config(cfg)
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    if cfg.get("ckpt_path") is not None:
        from litforge.run.resume import check_resume

        check_resume(Path(str(cfg.ckpt_path)), module, build.resolved(cfg))
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # not "GPU available: ..." for every job
    try:
        trainer = build.trainer(cfg)
    finally:
        lightning_log.setLevel(level)
    sizes = "/".join(str(len(datamodule.splits[s][0])) for s in ("train", "val", "test"))
    choices = cfg.hydra.runtime.choices
    return (
        f"data={choices.data} ({sizes} rows train/val/test, {datamodule.num_features} features, "
        f"{len(datamodule.train_dataloader())} batches of {datamodule.train_batch_size()} per "
        f"epoch), model={choices.model} ({sum(p.numel() for p in module.parameters())} "
        f"parameters), {trainer.max_epochs} epochs on {type(trainer.accelerator).__name__} at "
        f"precision {trainer.precision}"
    )


def jobs(overrides: list[str]) -> list[list[str]]:
    """One override list per job: a sweep (`optimizer=sgd,adam`) expands as Hydra's would."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if not any(o.is_sweep_override() for o in parsed):
        return [overrides]
    return compat.sweep_jobs(parsed)


def main(argv: list[str] | None = None) -> int:
    """python -m litforge.checks [overrides]: validate every job, train none; exit 0 if all fit."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from litforge.run import folders

    folders.register_resolvers()  # conf/train.yaml names the run folder with them
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("-m", "--multirun")]
    from litforge import CONF as conf

    failed = 0
    try:
        todo = jobs(args)
    except HydraException as err:
        print(f"litforge: error: {err}", file=sys.stderr)
        return 2
    for job in todo:
        name = " ".join(job) or "(defaults)"
        try:
            with initialize_config_dir(str(conf), version_base="1.3", job_name="check"):
                cfg = compose("train", overrides=job, return_hydra_config=True)
            summary = validate(cfg)
        except (UserError, HydraException) as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"litforge: error: {name}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"ok: {name}: {summary}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
