"""The rules a value must follow: pure functions of the values, each raising one UserError that
names the key, the bad value and the fix. No torch, no litforge module but errors: the config's
values are checked with these before anything heavy is imported (checks.py), and the engine
checks sizes with them once the data is loaded."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litforge.errors import UserError


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Rows of the train, val and test splits of n rows."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return n - n_val - n_test, n_val, n_test


# whole-number knobs: (smallest allowed, what the number counts, an example)
WHOLE_NUMBERS = {
    "seed": (0, "the seed of model initialisation and batch order", "seed=0"),
    "max_epochs": (1, "the number of training epochs", "max_epochs=50"),
    "accumulate_grad_batches": (1, "batches per optimizer step", "accumulate_grad_batches=1"),
    "threads": (1, "the number of CPU threads torch uses", "threads=1"),
    "steps_per_call": (1, "optimizer steps per Lightning training step", "steps_per_call=32"),
}


def shown(value: Any) -> str:
    """A value as a user would type it, strings quoted so `'abc'` reads as text."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return repr(value) if isinstance(value, str) else str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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

    A batch_size larger than the training split is allowed:
    the batch is the whole split (full-batch descent) and `TabularDataModule.setup` warns.
    """
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


def check_monitor(monitor: str, mode: str, task: str | None, modes: dict[str, str]) -> None:
    """`monitor` is a metric the task logs (`modes`: its metrics and their better direction)."""
    if mode not in ("min", "max"):
        raise UserError(
            f"monitor_mode={shown(mode)} is not allowed; use monitor_mode=min for a loss or error, "
            "monitor_mode=max for val/acc, val/f1 or val/r2."
        )
    if task is None:  # a model of your own logs what it logs
        return
    modes = {**modes, "train/loss": "min"}
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
