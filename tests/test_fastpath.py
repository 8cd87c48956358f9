"""The fast path (chunks.py) is the default, and it trains exactly as Lightning's own loop does."""

import logging
import math
import signal

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import build_and_fit, make_cfg, read_metrics, run_train
from litforge import build
from litforge.engine.callbacks import GracefulStop
from litforge.engine.fastpath import EveryBatch
from litforge.engine.loader import Chunk, InMemoryLoader
from litforge.errors import UserError
from litforge.run.history import EpochHistory

LIGHTNING = "steps_per_call=1"  # Lightning's own loop: one training_step per batch


def fit(tmp_path, *overrides: str) -> tuple:
    """build + fit as train() does, with nothing written: (datamodule, module, trainer)."""
    return build_and_fit(
        tmp_path, "callbacks=none", "logger=none", "early_stopping=none", *overrides
    )


def learning_rate(trainer: L.Trainer) -> float:
    return trainer.optimizers[0].param_groups[0]["lr"]


def history(trainer: L.Trainer) -> list[dict]:
    return next(c for c in trainer.callbacks if isinstance(c, EpochHistory)).rows


# wine: 124 training samples; every case draws dropout masks and shuffles
WINE = ("data=wine", "model.dropout=0.3", "max_epochs=4")
CASES = {
    "adam-dropout": (),
    # 8 batches of 16 (the last holds 13) in groups of 3, 3 and 2: a short last group
    "accumulate-short-group": ("data.batch_size=16", "accumulate_grad_batches=3"),
    "step-schedule": ("scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5"),
    "cosine-schedule": ("scheduler=cosine",),
    "plateau-schedule": ("scheduler=plateau", "scheduler.patience=0", "optimizer.lr=0.05"),
    "gradient-clipping": ("trainer.gradient_clip_val=0.05",),
    "float64": ("precision=64", "optimizer=sgd"),
    "bf16-mixed": ("precision=bf16-mixed",),
    "full-batch": ("descent=batch",),
    "max-steps": ("trainer.max_steps=9",),
}


@pytest.mark.parametrize("extra", CASES.values(), ids=CASES.keys())
def test_the_fast_path_trains_bit_for_bit_as_lightnings_own_loop(tmp_path, extra):
    _, fast, fast_trainer = fit(tmp_path, *WINE, *extra)
    _, own, own_trainer = fit(tmp_path, *WINE, *extra, LIGHTNING)
    assert fast.fast is not None and own.fast is None  # the default is the fast path
    assert fast_trainer.global_step == own_trainer.global_step > 0
    assert fast_trainer.current_epoch == own_trainer.current_epoch
    for (name, a), (_, b) in zip(fast.state_dict().items(), own.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # weights, metric states: the same bits
    assert learning_rate(fast_trainer) == learning_rate(own_trainer)
    assert history(fast_trainer) == history(own_trainer)  # train/loss and val/* of every epoch


def test_the_schedules_of_the_cases_above_change_the_learning_rate(tmp_path):
    # so the equality above is about schedules that act: each lowers the rate on the fast path
    for case in ("step-schedule", "cosine-schedule", "plateau-schedule"):
        _, _, trainer = fit(tmp_path, *WINE, *CASES[case])
        initial = make_cfg(tmp_path, *WINE, *CASES[case]).optimizer.lr
        assert learning_rate(trainer) < 0.6 * initial, case


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_tensorboard_gets_the_same_scalars_at_the_same_optimizer_steps(tmp_path):
    # 4 optimizer steps an epoch (124 wines, batch 32); train/loss_step every 3rd step
    run = ("data=wine", "max_epochs=4", "trainer.log_every_n_steps=3", "early_stopping=none")
    run_train(tmp_path / "fast", *run)
    run_train(tmp_path / "own", *run, LIGHTNING)
    fast, own = scalars(tmp_path / "fast"), scalars(tmp_path / "own")
    assert fast.keys() == own.keys()
    assert [step for step, _ in fast["train/loss_step"]] == [2, 5, 8, 11, 14]
    for tag in fast:
        assert [s for s, _ in fast[tag]] == [s for s, _ in own[tag]], tag
        assert [v for _, v in fast[tag]] == pytest.approx([v for _, v in own[tag]], rel=1e-6), tag
    assert read_metrics(tmp_path / "fast")["global_step"] == 16


class GradientNorm(L.Callback):
    """A callback that needs Lightning's per-step hooks: on the fast path they would not run."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        pass


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ((LIGHTNING,), "steps_per_call=1"),
        (("debug=fast",), "limit_train_batches or overfit_batches count Lightning's batches"),
        (
            ("+callbacks.norm._target_=test_fastpath.GradientNorm",),
            "GradientNorm.on_before_optimizer_step must run on every step",
        ),
    ],
    ids=["asked", "debug-fast", "per-step-callback"],
)
def test_lightnings_own_loop_wherever_the_fast_path_would_change_what_runs(
    tmp_path, caplog, overrides, reason
):
    with caplog.at_level(logging.INFO, logger="litforge"):
        # 124 wines in 4 batches of 32, 2 batches a step: 2 steps an epoch
        _, module, trainer = fit(
            tmp_path, "data=wine", "max_epochs=3", "accumulate_grad_batches=2", *overrides
        )
    assert module.fast is None and module.automatic_optimization
    assert f"Lightning's own training loop: {reason}" in caplog.text
    assert trainer.num_training_batches == 4  # debug=fast limits an epoch to 5 batches
    assert trainer.global_step == 3 * 2


def test_a_chunk_holds_steps_per_call_optimizer_steps_of_batches(tmp_path):
    datamodule, module, trainer = fit(
        tmp_path, "data=wine", "max_epochs=1", "data.batch_size=8", "accumulate_grad_batches=2",
        "steps_per_call=3",
    )  # fmt: skip
    loader = trainer.train_dataloader
    # 124 wines: 16 batches of 8 (the last holds 4), chunks of 3 steps x 2 batches
    assert (loader.chunk, loader.num_batches, len(loader)) == (6, 16, 3)
    assert trainer.global_step == 8
    chunks = list(loader)
    assert [(c.first, c.count) for c in chunks] == [(0, 6), (6, 6), (12, 4)]
    assert sum(len(c.y) for c in chunks) == 124


def test_a_chunked_loader_gives_the_same_batches_and_resumes_mid_chunk_on_its_grid():
    x = torch.arange(50.0).unsqueeze(1)
    kwargs = {"batch_size": 4, "shuffle": True, "seed": 3}  # 13 batches, the last holds 2
    plain = InMemoryLoader(x, torch.arange(50), **kwargs)
    chunked = InMemoryLoader(x, torch.arange(50), chunk=5, **kwargs)
    for loader in (plain, chunked):
        loader.set_epoch(2)
    batches = [y for _, y in plain]
    assert len(chunked) == math.ceil(13 / 5) == 3
    chunks = list(chunked)
    assert all(isinstance(c, Chunk) for c in chunks)
    sizes = chunked.batch_sizes()
    rebuilt = [y for c in chunks for _, _, y in c.batches(sizes)]
    assert [b.tolist() for b in rebuilt] == [b.tolist() for b in batches]

    # stopped after batch 7 (inside the second chunk): the rest of that chunk, then the grid,
    # so the epoch still has len(loader) items counting the ones before the stop
    chunked.load_state_dict({"epoch": 2, "batches_done": 7, "chunk": 5})
    resumed = list(chunked)
    assert [(c.first, c.count) for c in resumed] == [(7, 3), (10, 3)]
    assert torch.cat([c.y for c in resumed]).tolist() == torch.cat(batches[7:]).tolist()


def test_the_progress_bar_counts_batches_not_chunks(tmp_path):
    cfg = make_cfg(tmp_path, "data=wine", "max_epochs=1", "data.batch_size=8", "logger=none")
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    trainer = build.trainer(cfg)
    trainer.fit(module, datamodule=datamodule)
    bar = trainer.progress_bar_callback
    assert trainer.num_training_batches == 1  # 124 wines in 16 batches of 8: one chunk
    assert bar.total_train_batches == bar.train_progress_bar.n == 16
    assert {"train/loss_step", "val/loss"} <= set(bar.get_metrics(trainer, module))


class StopAfterStep(EveryBatch):
    """Asks GracefulStop to stop once `step` optimizer steps are done, as SIGTERM would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer, pl_module, loss, batch_idx, stepped, last) -> None:
        if stepped and trainer.global_step == self.step:
            stop = next(c for c in trainer.callbacks if isinstance(c, GracefulStop))
            stop.received = signal.SIGTERM


def fit_to_the_end(tmp_path, *overrides: str, ckpt_path=None) -> tuple:
    """build + fit with the config's callbacks and logger: (module, trainer)."""
    _, module, trainer = build_and_fit(tmp_path, *overrides, ckpt_path=ckpt_path)
    return module, trainer


# 124 wines in 16 batches of 8, chunks of 4: steps 17-20 and 21-24 are epoch 1's first two chunks
@pytest.mark.parametrize("stop_at", [22, 24], ids=["inside-a-chunk", "after-a-chunks-last-batch"])
def test_a_run_stopped_inside_a_chunk_resumes_exactly(tmp_path, stop_at):
    run = ("data=wine", "data.batch_size=8", "steps_per_call=4", "max_epochs=3")
    run = (*run, "model.dropout=0.3", "early_stopping=none", "logger=none")
    reference, reference_trainer = fit_to_the_end(tmp_path / "reference", *run)
    stop = (
        "+callbacks.stop._target_=test_fastpath.StopAfterStep",
        f"+callbacks.stop.step={stop_at}",
    )
    with pytest.raises(SystemExit):
        fit_to_the_end(tmp_path / "run", *run, *stop)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == stop_at
    resumed, trainer = fit_to_the_end(tmp_path / "run", *run, ckpt_path=str(last))
    assert trainer.global_step == reference_trainer.global_step == 48
    for (name, a), (_, b) in zip(
        resumed.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert history(trainer) == history(reference_trainer)  # every epoch validated, once


@pytest.mark.parametrize(
    ("override", "reason", "steps"),
    [
        ("trainer.limit_train_batches=1", "limit_train_batches or overfit_batches", 2),
        ("trainer.val_check_interval=2", "val_check_interval counts Lightning's batches", 8),
        ("callbacks.lr_monitor.logging_interval=step", "LearningRate(logging_", 8),
    ],
    ids=["one-batch-an-epoch", "validate-every-2-batches", "learning-rate-every-step"],
)
def test_settings_counted_in_batches_keep_lightnings_own_loop(
    tmp_path, caplog, override, reason, steps
):
    with caplog.at_level(logging.INFO, logger="litforge"):
        module, trainer = fit_to_the_end(tmp_path, "data=wine", "max_epochs=2", override)
    assert module.fast is None and f"Lightning's own training loop: {reason}" in caplog.text
    assert trainer.global_step == steps  # 124 wines: 4 batches of 32 an epoch


def test_the_fast_path_logs_no_step_loss_with_log_every_n_steps_0(tmp_path):
    module, trainer = fit_to_the_end(
        tmp_path, "data=wine", "max_epochs=2", "trainer.log_every_n_steps=0"
    )
    assert module.fast is not None and trainer.global_step == 8


WINE_TWO = (
    "data=wine",
    "data.batch_size=8",
    "steps_per_call=4",
    "early_stopping=none",
    "logger=none",
)


@pytest.mark.parametrize(("first", "then"), [((), (LIGHTNING,)), ((LIGHTNING,), ())])
def test_a_run_resumed_on_the_other_loop_goes_on_counting_its_steps(tmp_path, first, then):
    # 16 steps an epoch; the fast path counts them in another of Lightning's counters
    fit_to_the_end(tmp_path, *WINE_TWO, "max_epochs=2", *first)
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    module, trainer = fit_to_the_end(tmp_path, *WINE_TWO, "max_epochs=3", *then, ckpt_path=last)
    assert trainer.global_step == 48 and (module.fast is None) == bool(then)


def test_a_run_stopped_inside_an_epoch_refuses_to_resume_on_the_other_loop(tmp_path):
    stop = ("+callbacks.stop._target_=test_fastpath.StopAfterStep", "+callbacks.stop.step=22")
    with pytest.raises(SystemExit):
        fit_to_the_end(tmp_path, *WINE_TWO, "max_epochs=2", *stop)
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(UserError, match="part-way through an epoch .* 4 batch.* this run trains 1"):
        fit_to_the_end(tmp_path, *WINE_TWO, "max_epochs=2", LIGHTNING, ckpt_path=last)


def test_a_trainer_gets_its_settings_back_after_a_fit_on_the_fast_path(tmp_path):
    module, trainer = fit_to_the_end(
        tmp_path,
        "data=wine",
        "max_epochs=1",
        "accumulate_grad_batches=2",
        "trainer.gradient_clip_val=0.5",
    )
    assert module.fast is not None
    assert (trainer.accumulate_grad_batches, trainer.gradient_clip_val) == (2, 0.5)
