"""Your own CSV table as arrays: features and a target column, every problem one clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from litforge.errors import UserError


def read_csv(path: Path, target: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a numeric CSV with a header row; every problem is a UserError that says the fix."""
    import csv

    if not path.is_file():
        raise UserError(f"data.path={str(path)!r} does not exist; give the path of a CSV file.")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise UserError(f"{path} is empty; it needs a header row and at least one data row.")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    if not body:
        raise UserError(f"{path} has a header but no data rows.")
    if target not in header:
        raise UserError(
            f"data.target={target!r} is not a column of {path}; its columns are {header}."
        )
    columns = list(zip(*[row + [""] * (len(header) - len(row)) for row in body], strict=False))
    values = {}
    for name, cells in zip(header, columns, strict=False):
        missing = sum(1 for cell in cells if cell.strip() == "")
        if missing:
            raise UserError(
                f"column {name!r} of {path} has {missing} missing value(s) in {len(cells)} rows; "
                "fill or drop them before training."
            )
        if name == target and task == "classification":
            values[name] = np.array([cell.strip() for cell in cells])
            continue
        try:
            values[name] = np.array([float(cell) for cell in cells])
        except ValueError:
            bad = next(cell for cell in cells if not _is_float(cell))
            raise UserError(
                f"column {name!r} of {path} is not numeric (e.g. {bad!r}); encode it as numbers "
                "or remove it."
            ) from None
        not_finite = int(np.sum(~np.isfinite(values[name])))
        if not_finite:  # float() reads "nan" and "inf": they would turn the loss into NaN
            raise UserError(
                f"column {name!r} of {path} has {not_finite} value(s) that are nan or inf in "
                f"{len(cells)} rows; replace or drop them before training."
            )
    y = values.pop(target)
    if task == "classification":
        y = _class_labels(y, target, path)
    x = np.stack(list(values.values()), axis=1) if values else np.empty((len(y), 0))
    if x.shape[1] == 0:
        raise UserError(f"{path} has no feature columns besides the target {target!r}.")
    return x, y


def _class_labels(y: np.ndarray, target: str, path: Path) -> np.ndarray:
    if all(_is_float(v) for v in y):
        numbers = np.array([float(v) for v in y])
        if not np.all(numbers == np.round(numbers)):
            raise UserError(
                f"data.task=classification but target {target!r} of {path} holds non-integer "
                "numbers; use data.task=regression, or integer class labels."
            )
        y = numbers.astype(np.int64)
    if len(np.unique(y)) < 2:
        raise UserError(
            f"target {target!r} of {path} has a single class ({y[0].item()!r}); classification "
            "needs at least two."
        )
    return y


def _is_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
