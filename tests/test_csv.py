"""data=csv: a user's table is read exactly as written, or refused with one message and its fix."""

from __future__ import annotations

import bz2
import gzip
import importlib.resources
import lzma
import shlex
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import make_cfg, read_metrics, run_train
from litforge import build, checks
from litforge.data import CSVDataModule
from litforge.errors import UserError
from litforge.eval import evaluate
from litforge.tables import read_csv

# 40 rows: a, b features and y = 2a + 1
PLAIN = "a,b,y\n" + "".join(f"{i},{i % 7},{2 * i + 1}\n" for i in range(40))
A = np.arange(40.0)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def refusal(path: Path, target="y", task="regression", **options) -> str:
    with pytest.raises(UserError) as raised:
        read_csv(path, target, task, **options)
    return str(raised.value)


def cfg_datamodule(tmp_path: Path, *overrides: str) -> CSVDataModule:
    """The data module `python -m litforge.train data=csv OVERRIDES` builds."""
    cfg = make_cfg(tmp_path / "run", "data=csv", *overrides)
    return build.datamodule(cfg)


# a misplaced separator


@pytest.mark.parametrize("bad_line", [2, 30])  # line 2: pandas alone would take a=1 as the index
def test_an_unquoted_thousands_separator_is_refused_with_its_line(tmp_path, bad_line):
    rows = [f"{i},{100 + i},{i % 5}" for i in range(120)]
    rows[bad_line - 2] = "1,921.3,5,3"  # size 1,921.3 written with a thousands comma
    path = write(tmp_path, "flats.csv", "rooms,size,price\n" + "\n".join(rows) + "\n")
    message = refusal(path, target="price")
    assert message.startswith(f"line {bad_line} of {path} has 4 fields where the header has 3")
    assert "'1,921.3,5,3'" in message and 'must be quoted, e.g. "1,921.3"' in message
    assert "The separator is ','" in message

    rows[bad_line - 2] = '1,"1,921.3",5'  # quoted, the cell is one field again
    path.write_text("rooms,size,price\n" + "\n".join(rows) + "\n")
    assert "column 'size'" in refusal(path, target="price")  # and text: not silently shifted


def test_a_short_row_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "short.csv", PLAIN + "40,5\n41,6,83\n")
    message = refusal(path)
    assert message.startswith(f"line 42 of {path} has 2 fields where the header has 3 ('40,5')")
    assert "give the row its missing fields" in message


def test_blank_lines_and_rows_of_separators_are_skipped_and_lines_still_count(tmp_path):
    text = "\n\na,b,y\r\n1,2,3\r\n\r\n,,\r\n4,5,9\r\n6,7\r\n"
    message = refusal(write(tmp_path, "gaps.csv", text))
    assert message.startswith(f"line 8 of {tmp_path / 'gaps.csv'} has 2 fields")


def test_duplicate_and_unnamed_columns_are_refused_with_their_names(tmp_path):
    rows = "".join(f"{i},{i},{i},{i}\n" for i in range(10))
    message = refusal(write(tmp_path, "dup.csv", "a,a,c,y\n" + rows))
    assert "names two columns the same: 'a' is columns 1 and 2" in message
    message = refusal(write(tmp_path, "trailing.csv", "a,b,y,\n" + rows))
    assert "column 4 of" in message and "has no name in the header" in message


def test_a_file_read_as_one_column_names_the_separator(tmp_path):
    path = write(tmp_path, "semi.csv", PLAIN.replace(",", ";"))
    message = refusal(path, sep=",")
    assert message.startswith(f"{path} has a single column ('a;b;y'), so no feature")
    assert "something else than ',' (data.sep)" in message and "'data.sep=\";\"'" in message


# labels


def test_labels_01_and_1_are_two_classes_with_a_warning(tmp_path, caplog):
    labels = ["01", "1", "2"]
    rows = "".join(f"{i},{labels[i % 3]}\n" for i in range(60))
    path = write(tmp_path, "l.csv", "a,y\n" + rows)
    dm = CSVDataModule(str(path), "y", "classification", batch_size=8)
    dm.setup()
    assert list(dm.classes) == ["01", "1", "2"] and dm.num_classes == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "differ only in how a number is written ('01' and '1')" in warnings[0]


def test_whole_number_labels_keep_their_order_and_text_labels_their_text(tmp_path):
    rows = "".join(f"{i},{[2, 10, 1][i % 3]}\n" for i in range(30))
    table = read_csv(write(tmp_path, "n.csv", "a,y\n" + rows), "y", "classification")
    assert table.y.dtype == np.int64 and sorted(set(table.y.tolist())) == [1, 2, 10]
    rows = "".join(f"{i},{['1.0', '2.0'][i % 2]}\n" for i in range(30))
    table = read_csv(write(tmp_path, "f.csv", "a,y\n" + rows), "y", "classification")
    assert sorted(set(table.y.tolist())) == ["1.0", "2.0"]  # whole, kept as written


# bytes, encodings, compression


def test_a_utf8_bom_does_not_hide_the_first_column(tmp_path):
    path = write(tmp_path, "excel.csv", "\ufeffy,a,b\n" + "".join(f"{i},{i},1\n" for i in range(9)))
    table = read_csv(path, "y", "regression")
    assert table.features == ["a", "b"] and table.y.tolist() == list(range(9))


LATIN = "größe,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(40))


@pytest.mark.parametrize(
    ("name", "content", "options"),
    [
        ("t.csv.gz", gzip.compress(PLAIN.encode()), {}),
        ("t.csv.bz2", bz2.compress(PLAIN.encode()), {}),
        ("t.csv.xz", lzma.compress(PLAIN.encode()), {}),
        ("t.CSV.GZ", gzip.compress(PLAIN.encode()), {}),
        ("t.csv", PLAIN.encode("utf-16"), {}),  # Excel's "Unicode text": UTF-16 with a BOM
        ("t.csv", PLAIN.encode("utf-16-le"), {"encoding": "utf-16-le"}),
        ("t.csv", PLAIN.replace(",", ";"), {}),
        ("t.tsv", PLAIN.replace(",", "\t"), {}),
        ("t.csv", PLAIN.replace(",", "|"), {}),
        ("t.csv", PLAIN.replace(",", ";"), {"sep": ";"}),
        ("t.csv", PLAIN.replace(",", ", "), {}),
        ("t.csv", PLAIN.replace("\n", "\r\n"), {}),
    ],
)
def test_compressed_encoded_and_separated_files_read_like_the_plain_one(
    tmp_path, name, content, options
):
    table = read_csv(write(tmp_path, name, content), "y", "regression", **options)
    assert table.features == ["a", "b"]
    assert np.array_equal(table.x[:, 0], A) and np.array_equal(table.y, 2 * A + 1)


def test_a_zip_with_one_csv_is_read_and_one_with_two_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "one.zip", "w") as archive:
        archive.writestr("t.csv", PLAIN)
    assert np.array_equal(read_csv(tmp_path / "one.zip", "y", "regression").y, 2 * A + 1)
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as archive:
        archive.writestr("t.csv", PLAIN)
        archive.writestr("u.csv", PLAIN)
    assert "holds 2 files (t.csv, u.csv)" in refusal(tmp_path / "two.zip")


def test_latin1_reads_with_its_encoding_and_is_named_without_it(tmp_path):
    path = write(tmp_path, "l.csv", LATIN.encode("latin-1"))
    table = read_csv(path, "y", "regression", encoding="latin-1")
    assert table.features == ["größe"] and np.array_equal(table.x[:, 0], A)
    assert refusal(path) == (
        f"{path} is not UTF-8 text: line 1 has the byte 0xf6 (invalid start byte); give the "
        "file's encoding, e.g. data.encoding=latin-1 (or data.encoding=cp1252 for a file Excel "
        "saved on Windows)."
    )
    dm = cfg_datamodule(tmp_path, f"data.path={path}", "data.target=y", "data.encoding=latin-1")
    assert dm.feature_names == ["größe"]


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("u.csv", PLAIN.encode("utf-16-le"), "probably UTF-16 without a byte-order mark"),
        ("g.csv", gzip.compress(PLAIN.encode()), "is gzip-compressed; name it .csv.gz"),
        ("x.csv", b"PK\x03\x04" + bytes(60), "Excel .xlsx workbook"),
        ("z.csv.gz", PLAIN.encode(), "is not a readable gzip file"),
        ("t.csv.zst", b"\x28\xb5\x2f\xfd" + bytes(20), "zstd-compressed"),
    ],
)
def test_a_file_that_is_not_what_its_name_says_is_one_message(tmp_path, name, content, words):
    assert words in refusal(write(tmp_path, name, content))


# missing values


# a: 'NA', 'N/A', '?' on rows 3, 9, 15; b: empty on row 20
A_CELLS = {3: "NA", 9: "N/A", 15: "?"}
MISSING_TEXT = "a,b,y\n" + "".join(
    f"{A_CELLS.get(i, i)},{'' if i == 20 else i % 7},{2 * i + 1}\n" for i in range(40)
)


def test_missing_values_are_named_with_column_count_and_line(tmp_path):
    path = write(tmp_path, "m.csv", MISSING_TEXT)
    assert refusal(path) == (
        f"{path}: column 'a' has 3 missing value(s) in 40 rows (written 'NA', 'N/A', '?', first "
        "on line 5); column 'b' has 1 (written '', first on line 22); fill them, or add "
        "data.missing=drop to leave out the 4 row(s) that have one."
    )


def test_missing_drop_leaves_out_exactly_those_rows(tmp_path, caplog):
    caplog.set_level("INFO", logger="litforge")
    table = read_csv(write(tmp_path, "m.csv", MISSING_TEXT), "y", "regression", missing="drop")
    kept = [i for i in range(40) if i not in (3, 9, 15, 20)]
    assert np.array_equal(table.x[:, 0], kept) and np.array_equal(table.y, 2 * np.array(kept) + 1)
    assert "data.missing=drop: left out 4 of 40 rows" in caplog.text
    assert "('a' 3, 'b' 1)" in caplog.text


# text columns


COLOURS = "a,colour,y\n" + "".join(f"{i},{['red', 'blue'][i % 2]},{i}\n" for i in range(40))


@pytest.mark.parametrize("categorical", [["colour"], "colour", "auto"])
def test_text_columns_are_one_hot_encoded_when_listed_or_auto(tmp_path, categorical):
    path = write(tmp_path, "c.csv", COLOURS)
    table = read_csv(path, "y", "regression", categorical=categorical)
    assert table.features == ["a", "colour=blue", "colour=red"]
    assert table.x[:4, 1:].tolist() == [[0, 1], [1, 0], [0, 1], [1, 0]]


def test_a_listed_numeric_column_is_encoded_by_its_text(tmp_path):
    table = read_csv(write(tmp_path, "c.csv", PLAIN), "y", "regression", categorical=["b"])
    assert table.features == ["a", *(f"b={k}" for k in range(7))]
    assert table.x[:, 1:].sum(axis=1).tolist() == [1.0] * 40  # one hot per row


def test_an_unlisted_text_column_names_the_key_that_encodes_it(tmp_path):
    message = refusal(write(tmp_path, "c.csv", COLOURS))
    assert message == (
        f"column 'colour' of {tmp_path / 'c.csv'} is not numeric (e.g. 'red' on line 2); one-hot "
        "encode it with 'data.categorical=[colour]' (or data.categorical=auto for every text "
        "column), or remove it."
    )


# numeric-looking column names and Hydra


NAMED = "2020,null,true,1.50,y\n" + "".join(f"{i},{i},{i},{i},{i % 2}\n" for i in range(40))


def test_a_number_that_is_a_column_name_is_accepted(tmp_path):
    path = write(tmp_path, "n.csv", NAMED)
    dm = cfg_datamodule(tmp_path, f"data.path={path}", "data.target=2020")
    assert dm.feature_names == ["null", "true", "1.50", "y"]


@pytest.mark.parametrize(
    ("typed", "name", "read_as"),
    [
        ("null", "null", "null (no value)"),
        ("true", "true", "a boolean"),
        ("1.50", "1.50", "a number"),
    ],
)
def test_a_name_hydra_reads_as_another_type_is_answered_with_quoting_that_works(
    tmp_path, typed, name, read_as
):
    path = write(tmp_path, "n.csv", NAMED)
    with pytest.raises(UserError) as raised:
        cfg_datamodule(tmp_path, f"data.path={path}", f"data.target={typed}")
    message = str(raised.value)
    assert f"is read by Hydra as {read_as}, not as the column name {name!r}" in message
    fix = message.split("quote it: ")[1].rstrip(".")
    (argument,) = shlex.split(fix)  # what the shell hands to Python
    cfg = make_cfg(tmp_path / "run", "data=csv", f"data.path={path}", argument)
    assert cfg.data.target == name
    assert name not in build.datamodule(cfg).feature_names


def test_a_categorical_list_naming_a_column_true_gets_the_quoting_that_works(tmp_path):
    path = write(tmp_path, "n.csv", NAMED)
    with pytest.raises(UserError) as raised:
        cfg_datamodule(tmp_path, f"data.path={path}", "data.target=y", "data.categorical=[true]")
    (argument,) = shlex.split(str(raised.value).split("quote it: ")[1].rstrip("."))
    assert argument == 'data.categorical=["true"]'
    dm = cfg_datamodule(tmp_path, f"data.path={path}", "data.target=y", argument)
    assert "true=0" in dm.feature_names and "true" not in dm.feature_names


def test_a_tab_separator_given_on_the_command_line(tmp_path):
    path = write(tmp_path, "t.txt", PLAIN.replace(",", "\t"))
    (argument,) = shlex.split("'data.sep=\"\\t\"'")  # as the README shows it
    dm = cfg_datamodule(tmp_path, f"data.path={path}", "data.target=y", argument)
    assert dm.feature_names == ["a", "b"]


# whole runs


def penguins(tmp_path: Path) -> Path:
    """The real palmerpenguins table (344 rows; text columns; NA values) as the package ships it."""
    source = importlib.resources.files("palmerpenguins") / "data" / "penguins.csv"
    with importlib.resources.as_file(source) as found:
        return Path(shutil.copy(found, tmp_path / "penguins.csv"))


def test_palmer_penguins_trains_with_auto_categories_and_dropped_missing_values(tmp_path):
    path = penguins(tmp_path)
    overrides = ["data=csv", f"data.path={path}", "data.target=species"]
    overrides += ["data.task=classification", "model=classification"]
    overrides += ["data.categorical=auto", "data.missing=drop", "max_epochs=30", "logger=none"]
    record = run_train(tmp_path / "run", *overrides)
    metrics = read_metrics(tmp_path / "run")
    assert record.data["status"] == "completed"
    assert metrics["test"]["test/acc"] > 0.9  # species from bill, flipper, mass, island, sex
    dm = cfg_datamodule(tmp_path, *overrides[1:])
    assert sum(len(dm.splits[s][0]) for s in ("train", "val", "test")) == 344 - 11
    assert dm.feature_names[:3] == ["island=Biscoe", "island=Dream", "island=Torgersen"]
    assert "sex=female" in dm.feature_names and list(dm.classes) == [
        "Adelie",
        "Chinstrap",
        "Gentoo",
    ]


def test_eval_reproduces_a_csv_runs_test_metrics(tmp_path):
    colours = ["red", "blue", "NA"]
    text = "größe;colour;2020\n" + "".join(f"{i};{colours[i % 3]};{2 * i + 1}\n" for i in range(60))
    path = write(tmp_path, "t.csv.gz", gzip.compress(text.encode("latin-1")))
    run = tmp_path / "run"
    overrides = ["data=csv", f"data.path={path}", "data.target=2020", "model=regression"]
    overrides += ["data.encoding=latin-1", "data.categorical=[colour]", "data.missing=drop"]
    overrides += ["data.sep=';'", "max_epochs=3", "logger=none"]
    record = run_train(run, *overrides)
    assert record.data["status"] == "completed"
    test = evaluate(run / "checkpoints" / "best.ckpt", tmp_path / "eval")
    assert test == read_metrics(run)["test"]


def test_an_undecodable_file_is_one_line_from_the_check_command(tmp_path, capsys):
    path = write(tmp_path, "l.csv", LATIN.encode("latin-1"))
    code = checks.main(["data=csv", f"data.path={path}", "data.target=y", "model=regression"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "is not UTF-8 text: line 1 has the byte 0xf6" in err and "data.encoding=latin-1" in err
