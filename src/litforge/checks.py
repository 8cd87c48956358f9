"""Turn a user's mistake into one message that names the key, the bad value and the fix.

`check_config(cfg)` runs right after Hydra composes the config, before any data is loaded;
`check_split` and `check_accumulation` once the data's size is known (a CSV's only after reading
it); `check_resume` once the model is built. `python -m litforge.checks [overrides]`
(`make check-config ARGS="..."`) runs all of them, and builds data, model and trainer, without
training or writing anything.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

from litforge.errors import UserError

# what each task's module logs for validation (models.py) and which way is better;
# tests/test_errors.py checks this table against the modules' own torchmetrics
METRIC_MODES = {
    "regression": {"val/loss": "min", "val/mse": "min", "val/mae": "min", "val/r2": "max"},
    "classification": {"val/loss": "min", "val/acc": "max", "val/f1": "max"},
}
# whole-number knobs: (smallest allowed, what the number counts, an example)
WHOLE_NUMBERS = {
    "seed": (0, "the seed of model initialisation and batch order", "seed=0"),
    "max_epochs": (1, "the number of training epochs", "max_epochs=50"),
    "accumulate_grad_batches": (1, "batches per optimizer step", "accumulate_grad_batches=1"),
    "threads": (1, "the number of CPU threads torch uses", "threads=1"),
    "steps_per_call": (1, "optimizer steps per Lightning training step", "steps_per_call=32"),
}


def check_config(cfg: DictConfig, here: bool = True, code: bool = True) -> None:
    """Everything that can be checked from the composed config alone, in the order users err.

    The values first: they need no import, so a mistaken value answers before torch loads
    (~0.5 s, not ~4 s). `here=False` when the run will start on another machine (a Slurm job):
    its devices are checked there, when it starts. `code=False` checks the values only, for a
    process that will not run the job itself (it never loads torch); the job checks the rest.
    """
    check_no_missing_values(cfg)
    for name in WHOLE_NUMBERS:
        for key, value in knob(cfg, name):
            check_whole_number(key, value, *WHOLE_NUMBERS[name])
    check_optimizer(cfg.optimizer)
    check_model_values(cfg.model)
    check_data_values(cfg.data)
    if not code:
        return
    # then what the code the config names must agree with (this imports torch and lightning)
    check_targets_import(cfg)
    check_activation(cfg.model)
    data_task, rows = check_data(cfg.data)
    check_task(model_task(cfg.model), data_task)
    check_monitor(str(cfg.monitor), str(cfg.monitor_mode), model_task(cfg.model) or data_task)
    if here:
        accelerator = check_device(cfg.trainer)
        for key, value in knob(cfg, "precision"):
            check_precision(key, value, accelerator)
    if rows is not None:  # a bundled or synthetic set: its size is known without loading it
        n_train = check_split(rows, cfg.data.val_fraction, cfg.data.test_fraction)
        for _, k in knob(cfg, "accumulate_grad_batches"):
            check_accumulation(n_train, cfg.data.batch_size, k)
    if cfg.get("ckpt_path") is not None:
        load_checkpoint(Path(str(cfg.ckpt_path)))


def knob(cfg: DictConfig, name: str) -> list[tuple[str, Any]]:
    """The top-level knob, and `trainer.<name>` too if it was set apart from the knob."""
    found = [(name, cfg.get(name))] if name in cfg else []
    trainer = cfg.get("trainer")
    if trainer is not None and name in trainer and not OmegaConf.is_interpolation(trainer, name):
        found.append((f"trainer.{name}", trainer[name]))
    return found


def shown(value: Any) -> str:
    """A value as a user would type it, strings quoted so `'abc'` reads as text."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return repr(value) if isinstance(value, str) else str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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


def check_targets_import(cfg: DictConfig) -> None:
    """Every `_target_` names something importable (a typo there is a Python traceback later)."""
    from hydra._internal.utils import _locate  # get_object's lookup, without its error log

    for path, target in targets(cfg):
        try:
            _locate(target)
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


def check_whole_number(key: str, value: Any, low: int, meaning: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(
            f"{key}={shown(value)} is not allowed: {key} is {meaning}, a whole number "
            f"≥ {low}; use e.g. {example}."
        )


def check_optimizer(optimizer: DictConfig) -> None:
    lr = optimizer.get("lr")
    if lr is not None and (not is_number(lr) or lr <= 0):
        raise UserError(
            f"optimizer.lr={shown(lr)} is not allowed: the learning rate must be a number > 0; "
            "use e.g. optimizer.lr=0.001 (Adam) or optimizer.lr=0.05 (SGD)."
        )
    for key, low, high in (("weight_decay", 0.0, math.inf), ("momentum", 0.0, 1.0)):
        value = optimizer.get(key)
        if value is not None and (not is_number(value) or not low <= value <= high):
            bound = f"in [{low}, {high}]" if high < math.inf else f"≥ {low}"
            raise UserError(
                f"optimizer.{key}={shown(value)} is not allowed: it must be a number {bound}; "
                f"use e.g. optimizer.{key}={low}."
            )


def check_model_values(model: DictConfig) -> None:
    dims = model.get("hidden_dims")
    if dims is not None and (
        not OmegaConf.is_list(dims)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims)
    ):
        raise UserError(
            f"model.hidden_dims={shown(dims)} is not allowed: it is a list of layer widths, "
            "whole numbers ≥ 1; use e.g. model.hidden_dims=[64,64], or model.hidden_dims=[] "
            "for a linear model."
        )
    dropout = model.get("dropout")
    if dropout is not None and (not is_number(dropout) or not 0 <= dropout < 1):
        raise UserError(
            f"model.dropout={shown(dropout)} is not allowed: it is a probability in [0, 1); "
            "use e.g. model.dropout=0.2, or 0 for none."
        )


def check_activation(model: DictConfig) -> None:
    from litforge.models import ACTIVATIONS

    activation = model.get("activation")
    if activation is not None and activation not in ACTIVATIONS:
        raise UserError(
            f"model.activation={shown(activation)} is not one of {', '.join(ACTIVATIONS)}; "
            "use e.g. model.activation=relu."
        )


def model_task(model: DictConfig) -> str | None:
    """regression or classification for litforge's modules; None for a module of your own."""
    from hydra.utils import get_class

    from litforge.models import ClassificationModule, RegressionModule

    cls = get_class(model._target_)
    return {RegressionModule: "regression", ClassificationModule: "classification"}.get(cls)


def check_data_values(data: DictConfig) -> None:
    """The keys every data config has: batch size and split fractions."""
    check_batch_size(data.get("batch_size", 1))
    val, test = data.get("val_fraction", 0.15), data.get("test_fraction", 0.15)
    for key, value in (("data.val_fraction", val), ("data.test_fraction", test)):
        if not is_number(value) or not 0 < value < 1:
            raise UserError(
                f"{key}={shown(value)} is not allowed: it is the share of rows held out, a number "
                f"between 0 and 1 (both excluded); use e.g. {key}=0.15."
            )
    if val + test >= 1:
        raise UserError(
            f"data.val_fraction={val} and data.test_fraction={test} add up to {val + test:g}, "
            "which leaves no rows for training; make their sum < 1, e.g. 0.15 each."
        )


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
        return task, None
    return None, None


def check_batch_size(batch_size: Any) -> None:
    if batch_size == "full":
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(
            f"data.batch_size={shown(batch_size)} is not allowed: it is the number of rows per "
            "training step, a whole number ≥ 1, or `full` for the whole training split; use e.g. "
            "data.batch_size=64, descent=batch or descent=stochastic."
        )


def check_split(n: int, val_fraction: float, test_fraction: float) -> int:
    """Every split gets rows; returns the training split's row count.

    Rounds as `data.split_sizes` does. A batch_size larger than the training split is allowed:
    the batch is the whole split (full-batch descent) and `TabularDataModule.setup` warns.
    """
    from litforge.data import split_sizes

    n_train, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    for key, fraction, rows, split in (
        ("data.val_fraction", val_fraction, n_val, "validation"),
        ("data.test_fraction", test_fraction, n_test, "test"),
    ):
        if rows == 0:
            raise UserError(
                f"{key}={fraction} leaves the {split} split empty (round({n} × {fraction}) = 0 of "
                f"{n} rows); use {key} ≥ {math.ceil(1000 / n) / 1000:g}."
            )
    if n_train == 0:
        raise UserError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} leave no "
            f"training rows of {n}; make them smaller."
        )
    return n_train


def check_accumulation(n_train: int, batch_size: Any, k: Any) -> None:
    """Accumulating more batches than an epoch has changes nothing: Lightning steps at its end."""
    batches = 1 if batch_size == "full" else math.ceil(n_train / batch_size)
    if not isinstance(k, int) or k <= batches:
        return
    if batch_size == "full":
        raise UserError(
            f"descent=batch with accumulate_grad_batches={k} has nothing to accumulate: "
            "full-batch descent makes one batch per epoch and Lightning steps at the end of every "
            "epoch, so the run would equal accumulate_grad_batches=1. Use accumulate_grad_batches="
            f"1, or descent=minibatch data.batch_size=B to step on groups of {k} mini-batches."
        )
    raise UserError(
        f"accumulate_grad_batches={k} is more than the {batches} batch(es) of an epoch "
        f"({n_train} training rows / data.batch_size={batch_size}); Lightning steps at the end of "
        f"every epoch, so it would act as accumulate_grad_batches={batches}. Use "
        f"accumulate_grad_batches ≤ {batches}, or a smaller data.batch_size."
    )


def check_task(model: str | None, data: str | None) -> None:
    if model is None or data is None or model == data:
        return
    raise UserError(
        f"model={model} does not fit the data, which is a {data} task; "
        f"use model={data} (or an experiment=... that sets both)."
    )


def check_monitor(monitor: str, mode: str, task: str | None) -> None:
    if mode not in ("min", "max"):
        raise UserError(
            f"monitor_mode={shown(mode)} is not allowed; use monitor_mode=min for a loss or error, "
            "monitor_mode=max for val/acc, val/f1 or val/r2."
        )
    if task is None:  # a model of your own logs what it logs
        return
    modes = {**METRIC_MODES[task], "train/loss": "min"}
    if monitor not in modes:
        raise UserError(
            f"monitor={shown(monitor)} is not a metric a {task} run logs; choose one of "
            f"{', '.join(modes)}."
        )
    if modes[monitor] != mode:
        better = "higher" if modes[monitor] == "max" else "lower"
        raise UserError(
            f"monitor={monitor} is better when {better} but monitor_mode={mode}: best.ckpt and "
            f"early stopping would keep the worst epoch; add monitor_mode={modes[monitor]}."
        )


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


def check_accelerator(accelerator: str) -> None:
    """Say which device= to use instead, before Lightning's deeper error."""
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} needs a CUDA GPU and torch sees none "
            "(torch.cuda.is_available() is False); use device=cpu, or device=auto to take a GPU "
            "only where there is one."
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            "device=mps needs Apple silicon with Metal (torch.backends.mps.is_available() is "
            "False); use device=cpu or device=auto."
        )


def check_precision(key: str, value: Any, accelerator: str) -> None:
    """A precision Lightning knows, and one the device can run (Lightning would silently
    swap 16-mixed for bf16-mixed on a CPU)."""
    import torch
    from lightning.fabric.plugins.precision.precision import (
        _PRECISION_INPUT_INT,
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
        _PRECISION_INPUT_STR_ALIAS_CONVERSION,
    )

    allowed = [*get_args(_PRECISION_INPUT_INT), *get_args(_PRECISION_INPUT_STR_ALIAS)]
    allowed += get_args(_PRECISION_INPUT_STR)
    if isinstance(value, bool) or value not in allowed:
        names = dict.fromkeys(["32", "64", *sorted(get_args(_PRECISION_INPUT_STR)), "16", "bf16"])
        raise UserError(
            f"{key}={shown(value)} is not a precision Lightning knows; choose one of "
            f"{', '.join(names)} (e.g. {key}=32, or {key}=bf16-mixed)."
        )
    unified = _PRECISION_INPUT_STR_ALIAS_CONVERSION.get(str(value), str(value))
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


def get_args(literal: Any) -> tuple:
    import typing

    return typing.get_args(literal)


def load_checkpoint(path: Path, key: str = "ckpt_path") -> dict:
    """A checkpoint's contents, read as data only (`weights_only=True`: no code runs)."""
    import torch

    if not path.is_file():
        raise UserError(
            f"{key}={str(path)!r} does not exist; pass a .ckpt file from a run's checkpoints/ "
            "folder, e.g. outputs/runs/<run>/checkpoints/best.ckpt."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:  # a pickled object: loading it would run its code
            raise UserError(
                f"{key}={str(path)!r} holds a Python object ({found.group(1)}), not only tensors "
                "and plain data; litforge reads checkpoints with torch.load(weights_only=True) and "
                "will not run code from a file. Pass a .ckpt written by litforge.train."
            ) from err
        raise UserError(
            f"{key}={str(path)!r} is not a readable checkpoint: the file is corrupt or not a "
            f"torch file ({type(err).__name__}); pass a .ckpt written by litforge.train."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(
            f"{key}={str(path)!r} has no model weights (no state_dict); pass a .ckpt written by "
            "litforge.train."
        )
    return checkpoint


# what a checkpoint's stored config may name for litforge.eval to instantiate: anything else in a
# checkpoint from an untrusted source could be any Python callable (`_target_: os.system`)
TRUSTED_TARGETS = ("litforge.", "torch.optim.", "lightning.pytorch.")


def check_stored_targets(stored: dict, path: Path) -> None:
    """A checkpoint's config is data: refuse `_target_`s outside TRUSTED_TARGETS, anywhere."""
    for where, target in plain_targets(stored):
        if not str(target).startswith(TRUSTED_TARGETS):
            raise UserError(
                f"{path} asks eval to build {where}._target_={target!r}, which is outside "
                f"{', '.join(TRUSTED_TARGETS)}; litforge.eval refuses it, as a checkpoint "
                "could name any Python function there. If you wrote that class and trust "
                "this file, add its package to TRUSTED_TARGETS in litforge/checks.py."
            )


def plain_targets(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(where, `_target_`) in plain dicts and lists, however deep (instantiate recurses too)."""
    found = []
    if isinstance(value, dict):
        if "_target_" in value:
            found.append((path.rstrip("."), value["_target_"]))
        for key, item in value.items():
            found += plain_targets(item, f"{path}{key}.")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += plain_targets(item, f"{path}{index}.")
    return found


def check_resume(path: Path, module: Any, cfg: DictConfig) -> None:
    """Resuming restores weights and optimizer state: both must fit what this config builds."""
    from litforge.build import resolved
    from litforge.history import ConfigInCheckpoint

    checkpoint = load_checkpoint(path)
    stored = checkpoint.get(ConfigInCheckpoint.KEY) or {}
    now = resolved(cfg)
    theirs, ours = checkpoint["state_dict"], module.state_dict()
    shapes = [
        f"{name} is {list(theirs[name].shape)} in the checkpoint and {list(ours[name].shape)} now"
        for name in ours
        if name in theirs and theirs[name].shape != ours[name].shape
    ]
    shapes += [f"{name} is missing from the checkpoint" for name in ours if name not in theirs]
    shapes += [f"{name} is not in this model" for name in theirs if name not in ours]
    if shapes:
        more = f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else ""
        raise UserError(
            f"ckpt_path={str(path)!r} holds a different model than this config builds: "
            f"{shapes[0]}{more}.{settings_of(stored, now, ('model', 'data'))} Resume with the "
            "model and data settings of that run, or leave out ckpt_path to start afresh."
        )
    before = (stored.get("optimizer") or {}).get("_target_")
    after = (now.get("optimizer") or {}).get("_target_")
    if before and before != after:  # Lightning would fail at the first step (e.g. KeyError)
        raise UserError(
            f"ckpt_path={str(path)!r} was trained with optimizer {before} and this run builds "
            f"{after}; resuming restores the optimizer's state, which only the same optimizer "
            "can use. Resume with the optimizer of that run, or leave out ckpt_path to start "
            "afresh."
        )


def settings_of(stored: dict, now: dict, groups: tuple[str, ...]) -> str:
    """' The checkpoint was written with model.hidden_dims=[8] (now [64, 64]).' or ''."""
    changed = [
        f"{group}.{key}={shown(value)} (now {shown((now.get(group) or {}).get(key))})"
        for group in groups
        for key, value in (stored.get(group) or {}).items()
        if (now.get(group) or {}).get(key) != value
    ]
    return f" The checkpoint was written with {', '.join(changed)}." if changed else ""


def check_output_dir(path: Path, key: str) -> None:
    """The run folder can be created: every part that exists is a writable folder.

    Checked without creating anything. As root, a folder's mode bits do not stop writes
    (only a read-only file system or a file in the way does), so os.access decides.
    """
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"{key}={str(path)!r} cannot be created: {existing} is a file, not a folder; "
            f"choose another folder, e.g. {key}=outputs/runs/<name>."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"{key}={str(path)!r} cannot be created: {existing} is not writable by this user; "
            f"run from a folder you can write to, or choose {key}=<a writable folder>."
        )


class PreflightCheck(HydraCallback):
    """A Hydra callback: refuse an unwritable run folder before Hydra tries to create it, and
    a sweep with a mistake in any job before its first job starts."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_error(check_output_dir, Path(str(config.hydra.run.dir)), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_error(check_output_dir, Path(str(config.hydra.sweep.dir)), "hydra.sweep.dir")
        exit_on_error(check_sweep, config)


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

    loader = GlobalHydra.instance().config_loader()
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
    here = not launcher.endswith(REMOTE_LAUNCHERS)
    in_process = launcher.endswith(IN_PROCESS_LAUNCHERS)
    sweep_jobs = jobs(list(config.hydra.overrides.task))
    if in_process and sweep_jobs:
        loader.load_sweep_config = ComposedOnce(loader, config, sweep_jobs)
    for job in sweep_jobs:
        cfg = loader.load_sweep_config(config, job)
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
        self.compose = type(loader).load_sweep_config.__get__(loader)  # the loader's own
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


def exit_on_error(check, *args) -> None:
    """Hydra would print a traceback for an exception here; print the message and exit 2."""
    try:
        check(*args)
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"litforge: error: {err}", file=sys.stderr)
        sys.exit(2)


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
        check_resume(Path(str(cfg.ckpt_path)), module, cfg)
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
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if not any(o.is_sweep_override() for o in parsed):
        return [overrides]
    return BasicSweeper.split_arguments(parsed, None)[0]


def main(argv: list[str] | None = None) -> int:
    """python -m litforge.checks [overrides]: validate every job, train none; exit 0 if all fit."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from litforge import resume

    resume.register_resolvers()  # conf/train.yaml's run folder uses them
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("-m", "--multirun")]
    conf = Path(__file__).resolve().parents[2] / "conf"
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
