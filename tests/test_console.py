"""What a run tells its user, and the keys they bring from elsewhere working as typed."""

import re
import signal

import pytest

from conftest import cli, make_cfg, read_metrics, run_main
from litforge import build


def logged(run_dir) -> str:
    return (run_dir / "train.log").read_text()


def test_a_run_says_what_it_trains_and_why_it_stopped(tmp_path, monkeypatch, capsys):
    run = tmp_path / "wine"
    assert run_main(["experiment=wine", f"hydra.run.dir={run}"], monkeypatch, capsys)[0] == 0
    text, metrics = logged(run), read_metrics(run)
    assert "model: ClassificationModule, 547 parameters (all trainable)" in text
    assert "training loop: litforge's fast path, 32 optimizer steps per Lightning step" in text
    best = metrics["best"]
    assert metrics["stopped_by"] == "early_stopping"
    assert (
        f"run completed: early stopping after epoch {metrics['epochs'] - 1}: val/loss did not "
        f"improve for 10 epochs after its best, at epoch {best['epoch']}" in text
    )
    assert f"best:    val/loss {best['value']:#.4g} at epoch {best['epoch']} -> {run}" in text
    (test,) = re.findall(r"test:    (.*)", text)
    assert test == ", ".join(f"{k} {v:#.4g}" for k, v in sorted(metrics["test"].items()))
    assert re.fullmatch(r"(test/\w+ \d\.\d{3,}(e-\d+)?(, )?)+", test)  # 4 significant digits
    assert f"metrics: {run / 'metrics.json'}" in text
    assert "┃" not in capsys.readouterr().out  # no 16-digit table from Lightning


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (  # the best epoch may be the last: its gain was below min_delta
            ["early_stopping.patience=3", "early_stopping.min_delta=0.05", "max_epochs=40"],
            "val/loss improved by less than early_stopping.min_delta=0.05 in each of the last 3 "
            "epochs",
        ),
        (
            ["early_stopping=threshold", "early_stopping.stopping_threshold=0.5"],
            "val/loss went under early_stopping.stopping_threshold=0.5 at epoch",
        ),
        (["max_epochs=2", "early_stopping=none"], "run completed: max_epochs=2 reached (8 steps)"),
    ],
    ids=["min-delta", "threshold", "max-epochs"],
)
def test_each_way_of_stopping_is_named(tmp_path, monkeypatch, capsys, overrides, words):
    run = tmp_path / "run"
    argv = ["data=wine", "optimizer.lr=0.01", *overrides, f"hydra.run.dir={run}"]
    assert run_main(argv, monkeypatch, capsys)[0] == 0
    assert words in logged(run)


def test_an_interrupted_run_prints_the_command_that_continues_it(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    stop = [
        "+callbacks.stop._target_=conftest.SignalAt",
        "+callbacks.stop.epoch=1",
        "+callbacks.stop.batch=1",
        f"+callbacks.stop.signum={int(signal.SIGINT)}",
    ]
    code, _, err = run_main(["data=wine", *stop, f"hydra.run.dir={run}"], monkeypatch, capsys)
    assert code == 130
    assert err.strip().endswith(f"resume={run}")  # pasted back, it continues the run
    assert "run interrupted: interrupted in epoch 1" in logged(run)


def test_the_trainer_options_people_reach_for_need_no_plus(tmp_path):
    cfg = make_cfg(
        tmp_path, "trainer.gradient_clip_val=0.5", "trainer.limit_train_batches=0.5",
        "trainer.deterministic=true", "trainer.detect_anomaly=true", "tags=[baseline,wide]",
        "optimizer=sgd", "optimizer.momentum=0.9", "optimizer.weight_decay=1e-4",
        "optimizer.nesterov=true",
    )  # fmt: skip
    trainer = build.trainer(cfg)
    assert trainer.gradient_clip_val == 0.5 and trainer.limit_train_batches == 0.5
    module = build.module(cfg, build.datamodule(cfg))
    optimizer = module.configure_optimizers()
    assert optimizer.defaults | {"momentum": 0.9, "weight_decay": 1e-4, "nesterov": True} == (
        optimizer.defaults
    )
    assert list(cfg.tags) == ["baseline", "wide"]


def test_max_epochs_is_one_knob_however_it_is_set(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    argv = ["data=wine", "trainer.max_epochs=3", "scheduler=cosine", "early_stopping=threshold",
            f"hydra.run.dir={run}"]  # fmt: skip
    assert run_main(argv, monkeypatch, capsys)[0] == 0
    assert read_metrics(run)["epochs"] == 3
    hparams = (run / "hparams.yaml").read_text()
    assert "\nmax_epochs: 3\n" in hparams
    checkpoint_config = __import__("torch").load(run / "checkpoints" / "last.ckpt",
                                                 weights_only=True)["litforge_config"]  # fmt: skip
    assert checkpoint_config["scheduler"]["T_max"] == 3  # the cosine schedule's length
    assert checkpoint_config["early_stopping"]["patience"] == 3
    assert checkpoint_config["trainer"]["max_epochs"] == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("habit", "spelling"),
    [("trainer=gpu", "device=gpu"), ("debug=fdr", "trainer.fast_dev_run=true")],
)
def test_a_spelling_from_another_template_gets_a_pointer(habit, spelling):
    result = cli("-m", "litforge.train", habit, timeout=120)
    assert result.returncode == 1
    assert f"Could not find '{habit.replace('=', '/')}'" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"litforge: {habit} is spelled")
    assert spelling in result.stderr


def test_debug_overfit_learns_one_fixed_batch(tmp_path):
    from conftest import run_train

    record = run_train(tmp_path, "debug=overfit", "logger=none", "callbacks=none")
    losses = record.data["history"]["train/loss"]
    assert len(losses) == 200 and losses[-1] < 0.02 < losses[0]


def test_the_summary_command_says_what_a_folder_is_instead(tmp_path, capsys):
    from litforge.run import summary

    run = tmp_path / "runs" / "a_run"
    (run / ".hydra").mkdir(parents=True)
    for sweep in ("s1", "s2"):
        (tmp_path / "multiruns" / sweep).mkdir(parents=True)
        (tmp_path / "multiruns" / sweep / "multirun.yaml").write_text("{}\n")
    for folder, words in (
        (run, f"is a single run, not a sweep: its results are in {run / 'metrics.json'}"),
        (tmp_path / "multiruns", "holds 2 sweeps, not one; give one of them, e.g. "),
    ):
        with pytest.raises(SystemExit) as stopped:
            summary.main([str(folder)])
        assert stopped.value.code == 2 and words in capsys.readouterr().err


def test_eval_takes_a_run_folder_and_says_what_a_folder_without_best_holds(
    tmp_path, monkeypatch, capsys
):
    from litforge.errors import UserError
    from litforge.eval import checkpoint_in

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(
        UserError, match=r"without checkpoints/best.ckpt \(it holds checkpoints/last"
    ):
        checkpoint_in(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "best.ckpt").write_bytes(b"")
    assert checkpoint_in(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "best.ckpt"


@pytest.mark.slow
def test_eval_help_shows_evals_own_keys():
    result = cli("-m", "litforge.eval", "--help", timeout=120)
    assert result.returncode == 0
    assert "ckpt_path    a .ckpt file, or a run folder" in result.stdout
    assert "optimizer" not in result.stdout and "Configuration groups" not in result.stdout
