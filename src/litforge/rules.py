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

MIN_ROWS = {"regression": 2}  # rows a held-out split needs for the task's metrics (R²)


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
    high = SEED_MAX if key.endswith("seed") else math.inf
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        bound = f"≥ {low}" if high == math.inf else f"from {low} to {high}"
        raise UserError(
            f"{key}={shown(value)} is not allowed: {key} is {meaning}, a whole number "
            f"{bound}; use e.g. {example}."
        )


SEED_MAX = 2**32 - 1  # numpy's largest seed, and so Lightning's seed_everything's
# other knobs, where a config has them: key -> (whole number?, low, high, low and high allowed?,
# an example); null means "not set" and is not checked
RANGES = {
    "data.seed": (True, 0, SEED_MAX, (True, True), "data.seed=0"),
    "data.num_workers": (True, 0, math.inf, (True, True), "data.num_workers=0"),
    "early_stopping.patience": (True, 1, math.inf, (True, True), "early_stopping.patience=10"),
    "early_stopping.min_delta": (False, 0, math.inf, (True, True), "early_stopping.min_delta=0"),
    "early_stopping.stopping_threshold": (
        False, -math.inf, math.inf, (False, False), "early_stopping.stopping_threshold=0.1"
    ),
    "trainer.log_every_n_steps": (True, 0, math.inf, (True, True), "trainer.log_every_n_steps=10"),
    "trainer.gradient_clip_val": (False, 0, math.inf, (True, True), "trainer.gradient_clip_val=1"),
    "trainer.num_nodes": (True, 1, math.inf, (True, True), "trainer.num_nodes=1"),
    "scheduler.step_size": (True, 1, math.inf, (True, True), "scheduler.step_size=10"),
    "scheduler.gamma": (False, 0, math.inf, (False, True), "scheduler.gamma=0.5"),
    "scheduler.T_max": (True, 1, math.inf, (True, True), "scheduler.T_max=50"),
    "scheduler.eta_min": (False, 0, math.inf, (True, True), "scheduler.eta_min=0"),
    "scheduler.factor": (False, 0, 1, (False, False), "scheduler.factor=0.5"),
    "scheduler.patience": (True, 0, math.inf, (True, True), "scheduler.patience=5"),
}  # fmt: skip


def check_ranges(cfg: DictConfig) -> None:
    """Each knob of RANGES the config sets lies in its range (the types Hydra parsed included)."""
    for key, (whole, low, high, (low_in, high_in), example) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if value is None or OmegaConf.is_config(value):
            continue
        kind_ok = not isinstance(value, bool) and (
            isinstance(value, int) if whole else is_number(value)
        )
        inside = kind_ok and (value >= low if low_in else value > low)
        inside = inside and (value <= high if high_in else value < high)
        if not inside:
            raise UserError(
                f"{key}={shown(value)} is not allowed: it must be "
                f"{'a whole number' if whole else 'a number'} {span(low, high, low_in, high_in)}; "
                f"use e.g. {example}."
            )


def span(low: float, high: float, low_in: bool, high_in: bool) -> str:
    if high == math.inf:
        return f"{'≥' if low_in else '>'} {low}" if low > -math.inf else "(finite)"
    if low_in and high_in:
        return f"from {low} to {high}"
    return f"between {low} and {high} ({'inclusive' if low_in else 'exclusive'})"


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


def check_split(n: int, val_fraction: float, test_fraction: float, min_rows: int = 1) -> int:
    """Every split gets rows, and the held-out splits at least `min_rows` (2 for regression:
    R² is undefined on one row); returns the training split's row count.

    A batch_size larger than the training split is allowed:
    the batch is the whole split (full-batch descent) and `TabularDataModule.setup` warns.
    """
    n_train, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    for key, fraction, rows, split in (
        ("data.val_fraction", val_fraction, n_val, "validation"),
        ("data.test_fraction", test_fraction, n_test, "test"),
    ):
        smallest = math.ceil(1000 * max(min_rows, 1) / n) / 1000
        if rows == 0:
            raise UserError(
                f"{key}={fraction} leaves the {split} split empty (round({n} × {fraction}) = 0 of "
                f"{n} rows); use {key} ≥ {smallest:g}."
            )
        if rows < min_rows:
            raise UserError(
                f"{key}={fraction} leaves {rows} row in the {split} split of {n} rows, and its "
                f"metrics need at least {min_rows} (R² is undefined on one row); use "
                f"{key} ≥ {smallest:g}, or more data."
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
