"""Every mistake a user can make ends in one message naming what is wrong and how to fix it.

The table runs each bad input through the real command line's code in-process (`main()` of
litforge.train with sys.argv, as `python -m litforge.train` runs it) and through the check-only
path (`python -m litforge.checks`); a few `slow` tests run real subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from conftest import ROOT, cli, make_cfg, read_metrics, run_train
from litforge import build, checks
from litforge.data import SklearnDataModule
from litforge.errors import Diverged, UserError
from litforge.eval import evaluate

# CSV files the table's cases point at ({tmp}/<name>)
CSV_FILES = {
    "good.csv": "a,b,y\n" + "".join(f"{i},{i % 7},{2 * i + 1}\n" for i in range(40)),
    "colours.csv": "a,colour,y\n"
    + "".join(f"{i},{'red' if i % 2 else 'blue'},{i}\n" for i in range(40)),
    "gaps.csv": "a,b,y\n" + "".join(f"{'' if i in (3, 9) else i},{i},{i}\n" for i in range(40)),
    "nan.csv": "a,b,y\n" + "".join(f"{'nan' if i == 5 else i},{i},{i}\n" for i in range(40)),
    "empty.csv": "",
    "header.csv": "a,b,y\n",
    "one_class.csv": "a,y\n" + "".join(f"{i},1\n" for i in range(40)),
    "float_labels.csv": "a,y\n" + "".join(f"{i},{i / 2}\n" for i in range(40)),
    "tiny.csv": "a,y\n" + "".join(f"{i},{i}\n" for i in range(10)),
    "ragged.csv": "a,b,y\n1,2,3\n2,3,4\n3,4,5\n1,921.3,4,5\n" + "4,5,6\n" * 40,
    "short.csv": "a,b,y\n1,2,3\n2,3,4\n4,5\n" + "4,5,6\n" * 40,
    "twice.csv": "a,a,c,y\n" + "".join(f"{i},{i},{i},{i}\n" for i in range(40)),
    "na.csv": "a,b,y\n"
    + "".join(f"{'NA' if i == 3 else '?' if i == 8 else i},{i},{i}\n" for i in range(40)),
    "named.csv": "2020,null,true,1.50,y\n" + "".join(f"{i},{i},{i},{i},{i}\n" for i in range(40)),
    "inf.csv": "a,b,y\n" + "".join(f"{'inf' if i == 5 else i},{i},{i}\n" for i in range(40)),
    "words.csv": "a,y\n" + "".join(f"{i},{'low' if i < 20 else 'high'}\n" for i in range(40)),
}
CSV = ["data=csv", "model=regression", "data.target=y"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
NO_MPS = pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")


def case(name, args, words, *marks):
    return pytest.param(args, words, id=name, marks=marks)


# (overrides, words the message must contain); {tmp} is a folder holding CSV_FILES and more,
# {ckpt} a checkpoint of data=wine model.hidden_dims=[8] trained with Adam
CASES = [
    # Hydra's own messages, kept: they name the key and the options
    case(
        "unknown group option",
        ["optimizer=adamm"],
        ["Could not find 'optimizer/adamm'", "Available options", "adamw", "sgd"],
    ),
    case(
        "unknown key",
        ["optimizer.lrr=0.1"],
        ["Could not override 'optimizer.lrr'", "+optimizer.lrr=0.1"],
    ),
    case(
        "misspelt key inside a group",
        ["data.batchsize=32"],
        ["Could not override 'data.batchsize'", "+data.batchsize=32"],
    ),
    case("misspelt top-level knob", ["max_epoch=3"], ["Could not override 'max_epoch'"]),
    case("broken override syntax", ["model.hidden_dims=[64,"], ["'[64,'", "override_grammar"]),
    # wrong types and ranges of the top-level knobs
    case("wrong type", ["max_epochs=abc"], ["max_epochs='abc'", "whole number", "max_epochs=50"]),
    case("zero epochs", ["max_epochs=0"], ["max_epochs=0", "≥ 1"]),
    case(
        "accumulate zero",
        ["accumulate_grad_batches=0"],
        ["accumulate_grad_batches=0", "≥ 1", "accumulate_grad_batches=1"],
    ),
    case(
        "accumulate negative", ["accumulate_grad_batches=-1"], ["accumulate_grad_batches=-1", "≥ 1"]
    ),
    case("accumulate fraction", ["accumulate_grad_batches=2.5"], ["accumulate_grad_batches=2.5"]),
    case("seed not a number", ["seed=abc"], ["seed='abc'", "seed=0"]),
    case("zero threads", ["threads=0"], ["threads=0", "threads=1"]),
    case("a seed numpy cannot take", ["seed=4294967296"], ["seed=4294967296", "4294967295"]),
    case("a split seed below zero", ["data.seed=-1"], ["data.seed=-1", "from 0 to 4294967295"]),
    case(
        "a patience below one",
        ["early_stopping.patience=-1"],
        ["early_stopping.patience=-1", "≥ 1", "early_stopping.patience=10"],
    ),
    case(
        "a plateau factor above one",
        ["scheduler=plateau", "scheduler.factor=1.5"],
        ["scheduler.factor=1.5", "between 0 and 1"],
    ),
    case(
        "a threshold that is not a number",
        ["early_stopping=threshold", "early_stopping.stopping_threshold=.inf"],
        ["early_stopping.stopping_threshold='.inf'", "(finite)"],
    ),
    case(
        "negative DataLoader workers",
        ["data=digits_images", "model=cnn", "data.num_workers=-1"],
        ["data.num_workers=-1", "≥ 0"],
    ),
    case(
        "an optimizer argument that does not exist",
        ["+optimizer.lrr=0.1"],
        ["optimizer.lrr is not an argument of torch.optim.Adam", "did you mean optimizer.lr?"],
    ),
    case(
        "a model argument that does not exist",
        ["+model.hidden=[8]"],
        ["model.hidden is not an argument of", "hidden_dims"],
    ),
    case(
        "max_epochs set twice, differently",
        ["max_epochs=4", "trainer.max_epochs=3"],
        ["max_epochs=4 and trainer.max_epochs=3 set one knob to two values"],
    ),
    case(
        "a regression validation split of one row",
        ["data=diabetes", "model=regression", "data.val_fraction=0.003"],
        ["1 row in the validation split", "R²", "data.val_fraction ≥ 0.005"],
    ),
    case("unknown precision", ["precision=17"], ["precision=17", "bf16-mixed", "32-true"]),
    case(
        "16-mixed on a CPU",
        ["precision=16-mixed"],
        ["precision=16-mixed", "(cpu)", "needs a CUDA GPU", "bf16-mixed"],
        NO_GPU,
    ),
    case("zero learning rate", ["optimizer.lr=0"], ["optimizer.lr=0", "> 0", "optimizer.lr=0.001"]),
    case("negative learning rate", ["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "> 0"]),
    case("learning rate not a number", ["optimizer.lr=fast"], ["optimizer.lr='fast'"]),
    # descent, batches and splits
    case(
        "full batch with accumulation",
        ["descent=batch", "accumulate_grad_batches=4"],
        [
            "descent=batch",
            "accumulate_grad_batches=4",
            "nothing to accumulate",
            "accumulate_grad_batches=1",
        ],
    ),
    case(
        "accumulating more batches than an epoch has",
        ["data=wine", "data.batch_size=64", "accumulate_grad_batches=4"],
        ["accumulate_grad_batches=4", "2 batch(es)", "124 training rows"],
    ),
    case("batch size zero", ["data.batch_size=0"], ["data.batch_size=0", "≥ 1", "descent=batch"]),
    case(
        "fractions that leave no training rows",
        ["data.val_fraction=0.6", "data.test_fraction=0.5"],
        ["data.val_fraction=0.6", "data.test_fraction=0.5", "add up to 1.1", "sum < 1"],
    ),
    case("a fraction of zero", ["data.val_fraction=0"], ["data.val_fraction=0", "between 0 and 1"]),
    case(
        "an empty validation split",
        ["data=wine", "data.val_fraction=0.001"],
        ["validation split empty", "round(178 × 0.001) = 0", "data.val_fraction ≥ 0.006"],
    ),
    case(
        "an empty test split, known only after reading the CSV",
        [*CSV, "data.path={tmp}/tiny.csv", "data.test_fraction=0.01"],
        ["test split empty", "round(10 × 0.01) = 0"],
    ),
    # devices
    case(
        "gpu without a GPU",
        ["device=gpu"],
        ["needs a CUDA GPU", "device=cpu", "device=auto"],
        NO_GPU,
    ),
    case("ddp without a GPU", ["device=ddp"], ["needs a CUDA GPU", "device=cpu"], NO_GPU),
    case("mps off Apple", ["device=mps"], ["device=mps", "Apple", "device=cpu"], NO_MPS),
    case(
        "unknown accelerator",
        ["trainer.accelerator=gpux"],
        ["trainer.accelerator='gpux'", "device=cpu"],
    ),
    # data
    case(
        "csv without its path",
        ["data=csv", "model=regression"],
        ["data.path and data.target have no value", "data.path=my.csv"],
    ),
    case(
        "data.path that does not exist",
        [*CSV, "data.path={tmp}/nope.csv"],
        ["data.path=", "nope.csv", "does not exist"],
    ),
    case(
        "csv without the target column",
        [*CSV, "data.path={tmp}/good.csv", "data.target=price"],
        ["data.target='price' is not a column", "['a', 'b', 'y']"],
    ),
    case(
        "non-numeric feature",
        [*CSV, "data.path={tmp}/colours.csv"],
        ["column 'colour'", "not numeric", "'blue'", "'data.categorical=[colour]'"],
    ),
    case(
        "missing values",
        [*CSV, "data.path={tmp}/gaps.csv"],
        ["column 'a'", "2 missing value(s) in 40 rows"],
    ),
    case(
        "nan in a column",
        [*CSV, "data.path={tmp}/nan.csv"],
        ["column 'a' has 1 missing value(s) in 40 rows", "(written 'nan', first on line 7)"],
    ),
    case(
        "NA and ? in a column",
        [*CSV, "data.path={tmp}/na.csv"],
        ["column 'a' has 2 missing value(s) in 40 rows", "'NA', '?'", "data.missing=drop"],
    ),
    case(
        "an infinite value",
        [*CSV, "data.path={tmp}/inf.csv"],
        ["column 'a'", "1 infinite value(s) in 40 rows", "'inf' on line 7"],
    ),
    case(
        "a row with an unquoted separator",
        [*CSV, "data.path={tmp}/ragged.csv"],
        ["line 5 of", "has 4 fields where the header has 3", 'quoted, e.g. "1,921.3"'],
    ),
    case(
        "a row with a field too few",
        [*CSV, "data.path={tmp}/short.csv"],
        ["line 4 of", "has 2 fields where the header has 3", "give the row its missing fields"],
    ),
    case(
        "two columns with one name",
        [*CSV, "data.path={tmp}/twice.csv"],
        ["names two columns the same: 'a' is columns 1 and 2", "rename them"],
    ),
    case(
        "a target column named null",
        [*CSV, "data.path={tmp}/named.csv", "data.target=null"],
        ["data.target=null is read by Hydra as null", "quote it: 'data.target=\"null\"'"],
    ),
    case(
        "a target column named true",
        [*CSV, "data.path={tmp}/named.csv", "data.target=true"],
        ["data.target=true is read by Hydra as a boolean", "'data.target=\"true\"'"],
    ),
    case(
        "a target column named 1.50",
        [*CSV, "data.path={tmp}/named.csv", "data.target=1.50"],
        ["data.target=1.5 is read by Hydra as a number", "'data.target=\"1.50\"'"],
    ),
    case(
        "a text target for regression",
        [*CSV, "data.path={tmp}/words.csv"],
        ["target 'y'", "is not numeric (e.g. 'low' on line 2)", "data.task=classification"],
    ),
    case(
        "data.categorical naming no column",
        [*CSV, "data.path={tmp}/colours.csv", "data.categorical=[color]"],
        ["data.categorical lists 'color', which is not a column", "did you mean 'colour'?"],
    ),
    case(
        "data.categorical naming the target",
        [*CSV, "data.path={tmp}/colours.csv", "data.categorical=[colour,y]"],
        ["data.categorical lists the target 'y'", "'data.categorical=[colour]'"],
    ),
    case(
        "data.categorical not a list",
        [*CSV, "data.path={tmp}/good.csv", "data.categorical=[[a]]"],
        ["data.categorical=[['a']] is not allowed", "data.categorical=[island,sex]"],
    ),
    case(
        "an unknown data.missing",
        [*CSV, "data.path={tmp}/good.csv", "data.missing=skip"],
        ["data.missing='skip' is not allowed", "data.missing=drop"],
    ),
    case(
        "a separator of two characters",
        [*CSV, "data.path={tmp}/good.csv", "data.sep=';;'"],
        ["data.sep=';;' is not a separator", "'data.sep=\";\"'"],
    ),
    case(
        "an unknown encoding",
        [*CSV, "data.path={tmp}/good.csv", "data.encoding=klingon"],
        ["data.encoding='klingon' is not a text encoding", "data.encoding=latin-1"],
    ),
    case("empty csv", [*CSV, "data.path={tmp}/empty.csv"], ["empty.csv is empty", "header row"]),
    case(
        "header-only csv",
        [*CSV, "data.path={tmp}/header.csv"],
        ["header.csv has a header but no data rows"],
    ),
    case(
        "single class",
        ["data=csv", "data.target=y", "data.task=classification", "data.path={tmp}/one_class.csv"],
        ["has a single class (1)", "at least two"],
    ),
    case(
        "float target for classification",
        [
            "data=csv",
            "data.target=y",
            "data.task=classification",
            "data.path={tmp}/float_labels.csv",
        ],
        ["non-integer", "data.task=regression"],
    ),
    case(
        "unknown task",
        [*CSV, "data.path={tmp}/good.csv", "data.task=clasification"],
        ["data.task='clasification'", "data.task=classification"],
    ),
    case(
        "unknown bundled data set", ["data.name=iris"], ["data.name='iris'", "digits", "data=csv"]
    ),
    case(
        "classification model on regression data",
        ["data=diabetes"],
        ["model=classification does not fit", "regression task", "use model=regression"],
    ),
    case(
        "regression model on classification data",
        ["model=regression"],
        ["model=regression does not fit", "use model=classification"],
    ),
    # model and monitor
    case(
        "hidden width zero",
        ["model.hidden_dims=[0]"],
        ["model.hidden_dims=[0]", "model.hidden_dims=[]"],
    ),
    case("dropout above one", ["model.dropout=1.5"], ["model.dropout=1.5", "[0, 1)"]),
    case(
        "unknown activation", ["model.activation=swish"], ["model.activation='swish'", "relu, gelu"]
    ),
    case(
        "misspelt _target_",
        ["model._target_=litforge.models.ClassifierModule"],
        [
            "model._target_='litforge.models.ClassifierModule' cannot be imported",
            "did you mean litforge.models.ClassificationModule?",
        ],
    ),
    case(
        "unknown monitor", ["monitor=val/accuracy"], ["monitor='val/accuracy'", "val/acc, val/f1"]
    ),
    case(
        "monitor mode the wrong way",
        ["monitor=val/acc"],
        ["monitor=val/acc", "add monitor_mode=max"],
    ),
    # checkpoints
    case(
        "ckpt_path that does not exist",
        ["ckpt_path={tmp}/nope.ckpt"],
        ["ckpt_path=", "nope.ckpt' does not exist", "best.ckpt"],
    ),
    case(
        "corrupt checkpoint",
        ["ckpt_path={tmp}/corrupt.ckpt"],
        ["corrupt.ckpt' is not a readable checkpoint", "corrupt"],
    ),
    case(
        "checkpoint holding a Python object",
        ["ckpt_path={tmp}/object.ckpt"],
        ["holds a Python object (fractions.Fraction)", "weights_only=True"],
    ),
    case(
        "checkpoint of another architecture",
        ["data=wine", "ckpt_path={ckpt}"],
        [
            "holds a different model",
            "net.0.weight is [8, 13] in the checkpoint and [64, 13] now",
            "model.hidden_dims=[8] (now [64, 64])",
        ],
    ),
    case(
        "checkpoint of another optimizer",
        ["data=wine", "model.hidden_dims=[8]", "optimizer=sgd", "ckpt_path={ckpt}"],
        ["trained with optimizer torch.optim.Adam", "builds torch.optim.SGD"],
    ),
    # where the run goes
    case(
        "outputs folder that cannot be created",
        ["hydra.run.dir={tmp}/a_file/run"],
        ["hydra.run.dir=", "cannot be created", "a_file is a file, not a folder"],
    ),
]


@pytest.fixture(scope="module")
def wine_ckpt(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("wine8")
    run_train(run, "data=wine", "model.hidden_dims=[8]", "max_epochs=1", "logger=none")
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture
def bad_files(tmp_path) -> Path:
    for name, text in CSV_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "corrupt.ckpt").write_bytes(b"PK\x03\x04 not really a zip" * 100)
    torch.save({"state_dict": {}, "note": Fraction(1, 3)}, tmp_path / "object.ckpt")
    (tmp_path / "a_file").write_text("a file where a folder should be\n")
    return tmp_path


@pytest.fixture
def fresh_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def fill(args: list[str], tmp: Path, ckpt: Path) -> list[str]:
    return [a.format(tmp=tmp, ckpt=ckpt) for a in args]


def run_main(main, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run a `@hydra.main` entry point as its command line would; (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", argv)
    # as under `python -m`: Hydra finds conf/ relative to the entry point's file, not its package
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")
    with pytest.raises(SystemExit) as stopped:
        main()
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("args", "words"), CASES)
def test_train_says_what_is_wrong_and_how_to_fix_it(
    args, words, bad_files, wine_ckpt, fresh_hydra, monkeypatch, capsys
):
    from litforge.train import main

    run = bad_files / "run"
    argv = ["litforge.train", f"hydra.run.dir={run}", *fill(args, bad_files, wine_ckpt)]
    code, err = run_main(main, argv, monkeypatch, capsys)
    assert code in (1, 2)  # 1: Hydra's own message, 2: litforge's
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    if code == 2:  # one line, and the run folder (if it was made) says why it failed
        assert err.count("litforge: error: ") == 1 and err.strip().count("\n") == 0, err
        if (run / "metrics.json").exists():
            metrics = read_metrics(run)
            assert metrics["status"] == "failed" and metrics["stopped_by"] == "error"
            assert f"litforge: error: {metrics['error']}" == err.strip()
            assert not (run / "checkpoints").exists()


@pytest.mark.parametrize(("args", "words"), CASES)
def test_check_config_finds_the_same_mistake_without_training(
    args, words, bad_files, wine_ckpt, fresh_hydra, capsys
):
    run = bad_files / "run"
    code = checks.main([f"hydra.run.dir={run}", *fill(args, bad_files, wine_ckpt)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("litforge: error: ") and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not run.exists()  # nothing written


def test_the_table_covers_at_least_25_mistakes():
    assert len(CASES) >= 25
    assert len({tuple(c.values[0]) for c in CASES}) == len(CASES)


def test_check_config_passes_a_good_config_and_writes_nothing(tmp_path, fresh_hydra, capsys):
    run = tmp_path / "run"
    code = checks.main(["data=wine", "max_epochs=3", f"hydra.run.dir={run}"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("ok: data=wine max_epochs=3")
    assert "124/27/27 rows train/val/test, 13 features, 4 batches of 32 per epoch" in out
    assert "3 epochs on CPUAccelerator at precision 32-true" in out
    assert not run.exists()


def test_check_config_checks_every_job_of_a_sweep(tmp_path, fresh_hydra, capsys):
    code = checks.main(
        [
            "-m",
            "descent=minibatch,batch",
            "accumulate_grad_batches=1,4",
            f"hydra.run.dir={tmp_path}/r",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert out.count("ok: ") == 3  # minibatch×1, minibatch×4, batch×1
    assert err.count("litforge: error: ") == 1
    assert "descent=batch accumulate_grad_batches=4" in err and "nothing to accumulate" in err


def test_a_batch_larger_than_the_training_split_is_the_whole_split_with_a_warning(tmp_path, caplog):
    # decided: allowed, so the default batch_size=64 works on a small CSV; it warns once
    record = run_train(tmp_path, "data=wine", "data.batch_size=500", "max_epochs=2", "logger=none")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "data.batch_size=500 is larger than the training split (124 rows): every step uses all "
        "124 rows, as descent=batch would (full-batch gradient descent)."
    ]
    assert record.data["status"] == "completed" and record.data["global_step"] == 2  # 1 per epoch


def test_a_sweep_with_one_bad_job_stops_before_its_first_job(
    tmp_path, fresh_hydra, monkeypatch, capsys
):
    from litforge.train import main

    sweep = tmp_path / "sweep"
    argv = ["litforge.train", "-m", "max_epochs=2,abc", f"hydra.sweep.dir={sweep}"]
    code, err = run_main(main, argv, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (
        "litforge: error: in the sweep job max_epochs=abc: max_epochs='abc' is not allowed: "
        "max_epochs is the number of training epochs, a whole number ≥ 1; use e.g. max_epochs=50."
    )
    assert not sweep.exists()  # no job ran


@NO_GPU
def test_devices_are_checked_where_the_job_runs(tmp_path):
    cfg = make_cfg(tmp_path, "device=gpu", "precision=16-mixed")
    checks.check_config(cfg, here=False)  # a Slurm job checks its GPU on its own node
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        checks.check_config(cfg)


def test_metric_table_matches_the_modules(tmp_path):
    """checks.METRIC_MODES repeats what models.py logs; this keeps the two in step."""
    for overrides, task in (
        (["data=diabetes", "model=regression"], "regression"),
        ([], "classification"),
    ):
        cfg = make_cfg(tmp_path, *overrides)
        module = build.module(cfg, build.datamodule(cfg))
        modes = {
            name: "max" if metric.higher_is_better else "min"
            for name, metric in module.val_metrics.items()
        }
        assert {"val/loss": "min", **modes} == checks.METRIC_MODES[task]


def test_bundled_row_counts_match_the_data():
    for name, rows in SklearnDataModule.ROWS.items():
        x, _ = SklearnDataModule(name).load()
        assert len(x) == rows, name


@pytest.mark.parametrize(
    ("where", "plant"),
    [
        ("data", lambda config: config["data"].update(_target_="os.system")),
        (
            "trainer.plugins.0",
            lambda config: config["trainer"].update(
                plugins=[{"_target_": "os.system", "_args_": ["echo pwned"]}]
            ),
        ),
    ],
)
def test_eval_refuses_a_checkpoint_whose_config_names_foreign_code(
    where, plant, wine_ckpt, tmp_path
):
    checkpoint = torch.load(wine_ckpt, weights_only=True)
    plant(checkpoint["litforge_config"])
    planted = tmp_path / "planted.ckpt"
    torch.save(checkpoint, planted)
    with pytest.raises(UserError, match=rf"{where}._target_='os.system', which is not one of"):
        evaluate(planted, tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


def test_a_diverging_run_stops_at_that_step_and_keeps_earlier_checkpoints(tmp_path):
    # SGD on standardized linear regression is stable for lr < 1: lr=0.01 improves for epochs
    # 0-2, then the step schedule makes it 3, which grows the loss until it overflows in epoch 5
    overrides = ["experiment=synthetic", "optimizer.lr=0.01", "scheduler=step"]
    overrides += ["scheduler.step_size=3", "scheduler.gamma=300", "early_stopping=none"]
    with pytest.raises(Diverged) as raised:
        run_train(tmp_path, *overrides, "logger=none")
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "failed" and metrics["stopped_by"] == "divergence"
    assert metrics["error"] == str(raised.value)
    step, epoch = metrics["global_step"], metrics["epochs"]
    assert epoch == 5 and 5 * 11 < step <= 6 * 11  # 11 batches an epoch: stopped inside epoch 5
    assert f"at step {step} (epoch 5, batch {step - 56})" in metrics["error"]
    assert "optimizer.lr=3 is probably too high: try optimizer.lr=0.3" in metrics["error"]
    assert "Checkpoints saved before that step are kept" in metrics["error"]
    assert len(metrics["history"]["val/loss"]) == 5  # epochs 0-4 finished, nothing after
    assert metrics["best"] == {
        "value": min(metrics["history"]["val/loss"]),
        "epoch": 2,
        "checkpoint": "checkpoints/best.ckpt",
    }
    # best.ckpt is the best epoch's, last.ckpt the last epoch that ended: both before the blow-up
    for name, epoch_written in (("best.ckpt", 2), ("last.ckpt", 4)):
        ckpt = torch.load(tmp_path / "checkpoints" / name, weights_only=True)
        assert ckpt["epoch"] == epoch_written and ckpt["global_step"] == 11 * (epoch_written + 1)
        assert all(torch.isfinite(w).all() for w in ckpt["state_dict"].values()), name


def test_a_learning_rate_of_a_million_stops_in_the_first_epoch(tmp_path):
    with pytest.raises(Diverged, match=r"at step \d+ \(epoch 0, batch \d+\)"):
        run_train(
            tmp_path, "data=diabetes", "model=regression", "optimizer=sgd", "optimizer.lr=1e6"
        )
    metrics = read_metrics(tmp_path)
    assert metrics["stopped_by"] == "divergence" and metrics["global_step"] <= 5
    assert not (tmp_path / "checkpoints").exists()  # no epoch ended: nothing to keep


def test_eval_without_a_checkpoint_path_says_so(tmp_path, fresh_hydra, monkeypatch, capsys):
    from litforge.eval import main

    code, err = run_main(main, ["litforge.eval", f"hydra.run.dir={tmp_path}"], monkeypatch, capsys)
    assert code == 2 and err.startswith("litforge: error: ckpt_path must be given")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "last_line"),
    [
        (["max_epochs=abc"], "litforge: error: max_epochs='abc' is not allowed"),
        (
            ["data=diabetes", "optimizer=sgd", "optimizer.lr=1e6", "model=regression"],
            "litforge: error: training diverged: the training loss became NaN or infinite at step",
        ),
        (["hydra.run.dir={tmp}/a_file/run"], "litforge: error: hydra.run.dir="),
    ],
)
def test_the_real_command_line_prints_one_message_and_exits_2(args, last_line, bad_files):
    args = [f"hydra.run.dir={bad_files}/run", *fill(args, bad_files, bad_files)]
    result = cli("-m", "litforge.train", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith(last_line), result.stderr[-2000:]


@pytest.mark.slow
def test_hydra_full_error_shows_the_traceback(tmp_path):
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "litforge.train", "max_epochs=abc", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1
    assert (
        "Traceback" in result.stderr
        and "litforge.errors.UserError: max_epochs='abc'" in result.stderr
    )
    assert not tmp_path.exists()  # failed before training: no run folder, the console says why


@pytest.mark.slow
def test_make_check_config_fails_on_a_mistake():
    # `make check-config` on a good config runs in test_readme (`python -m litforge.checks ...`)
    result = subprocess.run(
        ["make", "check-config", "ARGS=data=diabetes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "litforge: error: data=diabetes: model=classification does not fit" in result.stderr


def test_a_sweep_run_by_other_processes_is_checked_here_for_values_only(
    tmp_path, fresh_hydra, monkeypatch, capsys
):
    # joblib's workers check the code a job names (imports, task, devices) as each starts, so
    # this process never loads torch for them; the values are still checked for every job here
    from litforge.train import main

    jobs = ["-m", "model._target_=litforge.models.ClassifierModule", "max_epochs=2,abc"]
    found = {}
    for launcher in ("basic", "joblib"):
        sweep = tmp_path / launcher
        argv = ["litforge.train", *jobs, f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}"]
        code, found[launcher] = run_main(main, argv, monkeypatch, capsys)
        assert code == 2 and not sweep.exists()  # no job ran
    assert (
        "in the sweep job model._target_=litforge.models.ClassifierModule max_epochs=2: "
        in (found["basic"])
    )
    assert "cannot be imported" in found["basic"]  # the first job's code, checked here
    assert (
        "in the sweep job model._target_=litforge.models.ClassifierModule max_epochs=abc: "
        in (found["joblib"])
    )
    assert "max_epochs='abc' is not allowed" in found["joblib"]


def test_a_sweep_in_this_process_composes_each_jobs_config_once(tmp_path, fresh_hydra, monkeypatch):
    # pre-flight check, Hydra's batch check and the launch used to compose it three times
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from litforge.train import main

    composed = []
    compose = ConfigLoaderImpl.load_sweep_config

    def counting(self, master_config, sweep_overrides):
        composed.append(tuple(sweep_overrides))
        return compose(self, master_config, sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counting)
    sweep = tmp_path / "sweep"
    jobs = ["data=wine", "max_epochs=1", "optimizer=sgd,adam", "logger=none", "callbacks=none"]
    monkeypatch.setattr(sys, "argv", ["litforge.train", "-m", *jobs, f"hydra.sweep.dir={sweep}"])
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")
    main()
    assert len(composed) == len(set(composed)) == 2
    runs = sorted(sweep.glob("*_*/metrics.json"))
    assert [read_metrics(run.parent)["overrides"][2] for run in runs] == [
        "optimizer=sgd",
        "optimizer=adam",
    ]
    assert {read_metrics(run.parent)["status"] for run in runs} == {"completed"}
