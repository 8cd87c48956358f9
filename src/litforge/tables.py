"""Your own CSV table as arrays: pandas reads it; every problem is one message that says the fix.

Why pandas (not pyarrow): its Python parser pads a row that is too short with NaN where an empty
cell reads as '', so a ragged row is found whichever way it is wrong, and it refuses a row that is
too long with its line number; it also does the quoting, and `get_dummies` the one-hot encoding.
pyarrow is a second large dependency that cannot sniff a separator. The file's bytes come through
fsspec, which infers the compression from its name; decoding them here gives the line of a byte
the encoding cannot read.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import logging
import math
import re
import shlex
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from omegaconf import OmegaConf

from litforge.errors import UserError

log = logging.getLogger(__name__)

# cells that mean "no value here": counted per column, then refused or their rows dropped
MISSING = ("", "NA", "N/A", "n/a", "?", "NaN", "nan", "null", "NULL", "None", "#N/A")
SEPARATORS = ",;\t|"  # what a sniffed data.sep can be
READ_KEYS = ("sep", "encoding", "missing", "categorical")  # read_csv's keyword arguments
# the first bytes of a file that is compressed, or is not text at all
MAGIC = {
    b"\x1f\x8b": "gzip-compressed; name it .csv.gz",
    b"BZh": "bzip2-compressed; name it .csv.bz2",
    b"\xfd7zXZ": "xz-compressed; name it .csv.xz",
    b"\x28\xb5\x2f\xfd": "zstd-compressed, which this install cannot read; decompress it "
    "(zstd -d) or save it as .csv.gz",
    b"PK\x03\x04": "a zip archive (an Excel .xlsx workbook is one); save the sheet as CSV, or "
    "name a zip archive .zip",
}


class Table(NamedTuple):
    x: np.ndarray  # (rows, features) float64
    y: np.ndarray  # (rows,) float64 for regression; int64 or str labels for classification
    features: list[str]  # x's columns: a one-hot column is named 'island=Dream'


def read_csv(
    path: Path,
    target: Any,
    task: str,
    sep: str | None = None,
    encoding: str = "utf-8",
    missing: str = "error",
    categorical: Any = (),
) -> Table:
    """A CSV with a header row as (x, y): every column but `target` is a feature.

    `sep=None` sniffs the separator; `encoding` utf-8 also reads a file with a byte-order mark
    (UTF-8's, or UTF-16's); `missing` is error or drop (the rows with a missing cell);
    `categorical` names the text columns to one-hot encode, or is "auto" for every text feature.
    """
    sep, encoding, categorical = check_options(task, sep, encoding, missing, categorical)
    header, columns = read_rows(path, sep, encoding)
    target = column_name("data.target", target, header, path)
    text_columns = [name for name in header if columns.not_numeric(name).any()]
    encode = categorical_names(categorical, header, target, text_columns, path)
    labels = target if task == "classification" else None
    unencoded = [name for name in text_columns if name not in (*encode, labels)]
    if unencoded:
        first = target if target in unencoded else unencoded[0]
        raise columns.not_numeric_error(first, target, unencoded, encode)
    columns.drop_missing(missing, header)
    features, names = [], []
    for name in header:
        if name in encode:
            onehot = columns.one_hot(name)
            features.append(onehot.to_numpy())
            names += list(onehot.columns)
        elif name != target:
            features.append(columns.finite(name)[:, None])
            names.append(name)
    if task == "classification":
        y = class_labels(columns.cells(target), target, path)
    else:
        y = columns.finite(target)
    return Table(np.concatenate(features, axis=1), y, names)


def read_rows(path: Path, sep: str | None, encoding: str) -> tuple[list[str], Columns]:
    """The header's names and the data rows' cells; a file that is not a table is refused."""
    if not path.is_file():
        where = "is a folder" if path.is_dir() else "does not exist"
        raise UserError(f"data.path={str(path)!r} {where}; give the path of a CSV file.")
    text, offset = decode(read_bytes(path), encoding, path)
    sniffed = sep is None
    sep = sep or sniff(text)
    rows = parse(text, sep, path, offset, sniffed)
    header = [str(name).strip() for name in rows.iloc[0]]
    lines = np.arange(2, len(rows) + 1) + offset  # row i of `rows` is line i + 1 of the text
    body = rows.iloc[1:]
    check_header(header, path)
    # a blank line, or one of separators only (a spreadsheet's empty row)
    empty = body.iloc[:, 1:].isna() | (body.iloc[:, 1:] == "")
    blank = (empty.all(axis=1) & body[0].fillna("").str.strip().eq("")).to_numpy()
    body, lines = body[~blank], lines[~blank]
    if body.empty:
        raise UserError(f"{path} has a header but no data rows.")
    short = body.isna().any(axis=1).to_numpy()  # pandas pads a short row with NaN
    if short.any():
        line, fields = lines[short][0], int(body[short].iloc[0].notna().sum())
        raise ragged(path, line, fields, len(header), text, offset, sep, sniffed)
    if len(header) == 1:
        how = "sniffed from the first lines" if sniffed else "data.sep"
        raise UserError(
            f"{path} has a single column ({header[0]!r}), so no feature besides a target; if "
            f"its columns are separated by something else than {sep!r} ({how}), give it, e.g. "
            f"{override('data.sep', ';' if sep != ';' else ',')}."
        )
    body.columns = header
    return header, Columns(body, lines, path)


def check_options(
    task: Any,
    sep: Any = None,
    encoding: Any = "utf-8",
    missing: Any = "error",
    categorical: Any = (),
) -> tuple[str | None, str, list | str]:
    """The reading keys' values, before any file is read: (separator, encoding, categorical)."""
    if task not in ("regression", "classification"):
        raise UserError(
            f"data.task={shown(task)} is not a task; use data.task=regression or "
            "data.task=classification."
        )
    if isinstance(sep, str):
        sep = {"\\t": "\t", "tab": "\t"}.get(sep, sep)  # what a shell can pass for a tab
    if sep is not None and (not isinstance(sep, str) or len(sep) != 1 or sep in '"\r\n'):
        tab = override("data.sep", "\\t")
        raise UserError(
            f"data.sep={shown(sep)} is not a separator: it is one character, or null to sniff "
            f"it from the first lines; use e.g. {override('data.sep', ';')}, or {tab} for a tab."
        )
    try:
        b"\0\0\0\0".decode(str(encoding))  # a text encoding Python knows (not e.g. base64)
    except UnicodeDecodeError:
        pass
    except LookupError:
        raise UserError(
            f"data.encoding={shown(encoding)} is not a text encoding Python knows; use e.g. "
            "data.encoding=utf-8, data.encoding=latin-1 or data.encoding=cp1252."
        ) from None
    if missing not in ("error", "drop"):
        raise UserError(
            f"data.missing={shown(missing)} is not allowed: use data.missing=error to be told "
            "about missing values, or data.missing=drop to leave out the rows that have one."
        )
    if OmegaConf.is_config(categorical):
        categorical = OmegaConf.to_container(categorical)
    if categorical is None or categorical == "auto":
        return sep, str(encoding), categorical or []
    names = categorical if isinstance(categorical, list | tuple) else [categorical]
    if not all(isinstance(name, str | int | float | bool | None) for name in names):
        raise UserError(
            f"data.categorical={shown(categorical)} is not allowed: it lists column names, e.g. "
            "data.categorical=[island,sex], or is data.categorical=auto for every text column."
        )
    return sep, str(encoding), list(names)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed as its name says (.gz, .bz2, .xz, .zip)."""
    import fsspec
    from fsspec.utils import infer_compression

    compression = infer_compression(str(path))
    try:
        if compression == "zip":  # fsspec would read the first file of several without a word
            import zipfile

            with zipfile.ZipFile(path) as archive:
                inside = [name for name in archive.namelist() if not name.endswith("/")]
            if len(inside) != 1:
                raise UserError(
                    f"{path} holds {len(inside)} files ({', '.join(inside[:5])}); a zipped CSV "
                    "must be the only file in its archive."
                )
        with fsspec.open(str(path), "rb", compression=compression) as handle:
            raw = handle.read()
    except PermissionError as err:
        raise UserError(f"{path} cannot be read ({err.strerror}); check its permissions.") from None
    except Exception as err:  # gzip, bz2, lzma and zipfile each raise their own
        if isinstance(err, UserError) or not compression:
            raise
        raise UserError(
            f"{path} is not a readable {compression} file ({err}), as its name says it is; "
            "check the file, or rename it to what it holds."
        ) from None
    for magic, problem in MAGIC.items():
        if not compression and raw.startswith(magic):
            raise UserError(f"{path} is {problem}.")
    return raw


def decode(raw: bytes, encoding: str, path: Path) -> tuple[str, int]:
    """The text (from its header row on) and the number of blank lines before the header."""
    if codecs.lookup(encoding).name == "utf-8":
        # Excel's "CSV UTF-8" starts with a byte-order mark, its "Unicode text" is UTF-16 with one
        utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        encoding = "utf-16" if utf16 else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        named = "UTF-8 text" if encoding == "utf-8-sig" else f"{encoding} text"
        raise UserError(
            f"{path} is not {named}: line {line} has the byte 0x{raw[err.start]:02x} "
            f"({err.reason}); give the file's encoding, e.g. data.encoding=latin-1 (or "
            "data.encoding=cp1252 for a file Excel saved on Windows)."
        ) from None
    if "\x00" in text[:65536]:
        raise UserError(
            f"{path} holds NUL characters: it is probably UTF-16 without a byte-order mark; use "
            "data.encoding=utf-16-le (or utf-16-be)."
        )
    header = text.lstrip("\r\n")
    return header, text[: len(text) - len(header)].count("\n")


def sniff(text: str) -> str:
    """The separator of the first lines (csv.Sniffer): the one found equally often on each."""
    lines = text[:65536].split("\n")
    sample = "\n".join(lines[:50] if len(text) <= 65536 else lines[:-1][:50])  # whole lines
    try:
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
    except csv.Error:  # one line, or lines that disagree: the header's most frequent one
        header = sample.partition("\n")[0]
        best = max(SEPARATORS, key=header.count)
        return best if best in header else ","


def parse(text: str, sep: str, path: Path, offset: int, sniffed: bool):
    """Every row's cells as text (NaN where a short row ends): a pandas DataFrame, header first."""
    import pandas as pd

    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None,
            dtype=str,
            keep_default_na=False,  # missing values are counted later, per column
            skip_blank_lines=False,  # so that row i is line i + 1
            skipinitialspace=True,  # "1, 2, 3"
            index_col=False,
            engine="python",
        )
    except pd.errors.EmptyDataError:
        raise UserError(
            f"{path} is empty; it needs a header row and at least one data row."
        ) from None
    except (pd.errors.ParserError, csv.Error) as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if found:
            expected, line, fields = (int(n) for n in found.groups())
            raise ragged(
                path, line + offset, fields, expected, text, offset, sep, sniffed
            ) from None
        raise UserError(f"{path} cannot be read as CSV ({err}); check its quoting.") from None


def ragged(
    path: Path, line: int, fields: int, expected: int, text: str, offset: int, sep: str, sniffed
) -> UserError:
    """A row with more or fewer fields than the header (a separator inside a cell, unquoted)."""
    lines = text.split("\n")
    i = line - 1 - offset
    shown_line = lines[i].rstrip("\r")[:80] if 0 <= i < len(lines) else ""
    if fields > expected:
        fix = f'a cell that holds the separator {sep!r} must be quoted, e.g. "1,921.3"'
    else:
        fix = "give the row its missing fields (an empty one is nothing between two separators)"
    how = "sniffed from the first lines" if sniffed else "data.sep"
    return UserError(
        f"line {line} of {path} has {fields} fields where the header has {expected} "
        f"({shown_line!r}); {fix}. The separator is {sep!r} ({how}); if that is wrong, give the "
        f"file's, e.g. {override('data.sep', ';' if sep != ';' else ',')}."
    )


def check_header(header: list[str], path: Path) -> None:
    unnamed = [i + 1 for i, name in enumerate(header) if not name]
    if unnamed:
        raise UserError(
            f"column {unnamed[0]} of {path} has no name in the header; name it, or remove the "
            "column (a separator at the end of every line makes one)."
        )
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        seen.setdefault(name, []).append(i + 1)
    twice = {name: where for name, where in seen.items() if len(where) > 1}
    if twice:
        listed = "; ".join(
            f"{n!r} is columns {' and '.join(map(str, w))}" for n, w in twice.items()
        )
        raise UserError(
            f"{path} names two columns the same: {listed}; rename them so each column has its "
            "own name."
        )


class Columns:
    """A table's cells by column, as text, with which are missing and which are numbers."""

    def __init__(self, body, lines, path: Path) -> None:
        import pandas as pd

        self.lines, self.path = np.asarray(lines), path
        self.numbers = body.apply(pd.to_numeric, errors="coerce")  # a number may have spaces
        # only a column with a cell that is no number can hold text or a missing value: its
        # cells are stripped of spaces (a whole table's cells would take ~0.1 s per MB)
        text = self.numbers.columns[self.numbers.isna().any()]
        self.body = body.assign(**{name: body[name].str.strip() for name in text})
        self.missing = self.body.isin(MISSING)

    def not_numeric(self, name: str):
        return (self.numbers[name].isna() & ~self.missing[name]).to_numpy()

    def cells(self, name: str):
        return self.body[name]

    def one_hot(self, name: str):
        """A 0/1 column per value of the text column `name` (sorted), named 'name=value'."""
        import pandas as pd

        return pd.get_dummies(self.body[name], prefix=name, prefix_sep="=", dtype=float)

    def not_numeric_error(self, name: str, target: str, unencoded: list, encode: list):
        bad = self.not_numeric(name)
        example = f"{self.body[name][bad].iloc[0]!r} on line {self.lines[bad][0]}"
        if name == target:
            return UserError(
                f"target {name!r} of {self.path} is not numeric (e.g. {example}); for labels use "
                "data.task=classification model=classification."
            )
        others = [n for n in unencoded if n != name]
        verb = "is" if len(others) == 1 else "are"
        also = f" (nor {verb} {', '.join(map(repr, others))})" if others else ""
        return UserError(
            f"column {name!r} of {self.path} is not numeric (e.g. {example}){also}; one-hot "
            f"encode it with {override('data.categorical', [*encode, *unencoded])} (or "
            "data.categorical=auto for every text column), or remove it."
        )

    def drop_missing(self, missing: str, header: list[str]) -> None:
        """Refuse the missing cells (`error`), or leave out the rows that have one (`drop`)."""
        where = self.missing.to_numpy()
        if not where.any():
            return
        rows = where.any(axis=1)
        counts = {name: int(n) for name, n in zip(header, where.sum(axis=0), strict=True) if n}
        if missing == "error":
            described = []
            for name in counts:
                cells = self.body[name][self.missing[name]]
                tokens = ", ".join(repr(t) for t in dict.fromkeys(cells.tolist()))
                first = self.lines[self.missing[name].to_numpy()][0]
                how = f"(written {tokens}, first on line {first})"
                described.append(
                    f"column {name!r} has {counts[name]} missing value(s) in {len(rows)} rows {how}"
                    if not described
                    else f"column {name!r} has {counts[name]} {how}"
                )
            raise UserError(
                f"{self.path}: {'; '.join(described)}; fill them, or add data.missing=drop to "
                f"leave out the {int(rows.sum())} row(s) that have one."
            )
        if rows.all():
            raise UserError(
                f"every row of {self.path} has a missing value (data.missing=drop would leave "
                f"none): {', '.join(f'{n!r} {c}' for n, c in counts.items())}; fill them, or "
                "remove the columns that are mostly missing."
            )
        log.info(
            "data.missing=drop: left out %d of %d rows of %s with a missing value (%s).",
            rows.sum(),
            len(rows),
            self.path,
            ", ".join(f"{name!r} {count}" for name, count in counts.items()),
        )
        keep = ~rows
        self.body, self.lines = self.body[keep], self.lines[keep]
        self.missing, self.numbers = self.missing[keep], self.numbers[keep]

    def finite(self, name: str) -> np.ndarray:
        values = self.numbers[name].to_numpy(dtype=np.float64)
        infinite = np.isinf(values)
        if infinite.any():
            raise UserError(
                f"column {name!r} of {self.path} has {int(infinite.sum())} infinite value(s) "
                f"in {len(values)} rows (e.g. {self.body[name][infinite].iloc[0]!r} on line "
                f"{self.lines[infinite][0]}); replace or drop them before training."
            )
        return values


def class_labels(cells, target: str, path: Path) -> np.ndarray:
    """Labels as the text they are; whole numbers written plainly ('0', '12') as int64."""
    import pandas as pd

    numbers = pd.to_numeric(cells, errors="coerce")
    if numbers.notna().all():
        if not (np.isfinite(numbers) & (numbers == np.round(numbers))).all():
            raise UserError(
                f"data.task=classification but target {target!r} of {path} holds non-integer "
                "numbers; use data.task=regression, or integer class labels."
            )
        plain = numbers.astype(np.int64)
        if (plain.astype(str).to_numpy() == cells.to_numpy(dtype=str)).all():
            y = plain.to_numpy()
            return check_classes(y, target, path)
    written = {}  # number -> the different ways it is written
    for cell, number in zip(cells, numbers, strict=True):
        if not math.isnan(number):
            written.setdefault(number, set()).add(cell)
    alike = [sorted(texts) for texts in written.values() if len(texts) > 1]
    if alike:
        log.warning(
            "target %r of %s has labels that differ only in how a number is written (%s): they "
            "are kept as different classes; write them alike if they are one class.",
            target,
            path,
            "; ".join(" and ".join(map(repr, texts)) for texts in alike[:3]),
        )
    return check_classes(cells.to_numpy(dtype=str), target, path)


def check_classes(y: np.ndarray, target: str, path: Path) -> np.ndarray:
    if len(np.unique(y)) < 2:
        raise UserError(
            f"target {target!r} of {path} has a single class ({y[0].item()!r}); classification "
            "needs at least two."
        )
    return y


def categorical_names(
    categorical: list | str, header: list[str], target: str, text_columns: list[str], path
) -> list[str]:
    """The columns to one-hot encode: those listed, or with `auto` every text feature column."""
    if categorical == "auto":
        return [name for name in text_columns if name != target]
    names = [column_name("data.categorical", v, header, path, categorical) for v in categorical]
    if target in names:
        fix = override("data.categorical", [name for name in names if name != target])
        raise UserError(
            f"data.categorical lists the target {target!r}; the target is what is learned, not "
            f"a feature: leave it out ({fix})."
        )
    return names


def column_name(
    key: str, value: Any, header: list[str], path: Path, listed: list | None = None
) -> str:
    """The header name a config value means: Hydra reads `2020` as an int and `null` as None.

    `listed` is the list `value` came from (data.categorical), for a fix that keeps the others.
    """
    if isinstance(value, str) and value in header:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and str(value) in header:
        return str(value)  # data.target=2020 for a column named 2020
    said = f"{key}={typed(value)}" if listed is None else f"{key} lists {typed(value)}, which"
    same = [name for name in header if not isinstance(value, str) and same_value(name, value)]
    if same:
        kind = {type(None): "null (no value)", bool: "a boolean", int: "a number"}
        if listed is None:
            fix = override(key, same[0])
        else:
            fix = override(key, [same[0] if v is value else str(v) for v in listed])
        raise UserError(
            f"{said} is read by Hydra as {kind.get(type(value), 'a number')}, not as the column "
            f"name {same[0]!r}; quote it: {fix}."
        )
    lower = {name.lower(): name for name in header}
    close = [lower[n] for n in difflib.get_close_matches(str(value).lower(), lower, n=1)]
    hint = f"; did you mean {close[0]!r}?" if close else "."
    raise UserError(f"{said} is not a column of {path}; its columns are {header}{hint}")


def hydra_reads(text: str) -> Any:
    """What Hydra makes of `key=text` on a command line: a str, int, float, bool or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(f"key={text}").value()
    except Exception:  # not a value Hydra can parse unquoted (e.g. a bracket)
        return ...


def same_value(name: str, value: Any) -> bool:
    """Whether Hydra reads the text `name` as `value`, of the same type."""
    parsed = hydra_reads(name)
    if type(parsed) is not type(value):
        return False
    both_nan = isinstance(value, float) and math.isnan(value) and math.isnan(parsed)
    return both_nan or parsed == value


def override(key: str, names: str | list[str]) -> str:
    """`key=names` as a shell argument that Hydra reads as those strings."""

    def hydra_text(name: str) -> str:
        if re.fullmatch(r"[A-Za-z_][\w\-]*", name) and hydra_reads(name) == name:
            return name  # e.g. island: no quotes needed
        return f"'{name}'" if '"' in name else f'"{name}"'

    if isinstance(names, str):
        return shlex.quote(f"{key}={hydra_text(names)}")
    return shlex.quote(f"{key}=[{','.join(hydra_text(name) for name in names)}]")


def typed(value: Any) -> str:
    """A config value as it is written on a command line: null, true, 2020, 'price'."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value) if isinstance(value, str) else str(value)


def shown(value: Any) -> str:
    """A config value, a list or dict as Python writes it."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return str(value) if isinstance(value, list | dict) else typed(value)
