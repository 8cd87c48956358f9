"""What the training loop guarantees (README, "What the loop guarantees"), each shown exactly."""

import math
import signal

import lightning as L
import numpy as np
import pytest
import torch

from conftest import build_and_fit, make_cfg, read_metrics, run_train
from litforge import build
from litforge.engine import LitModule
from litforge.run.history import EpochHistory

# synthetic regression: 1000 samples, 700 of them in the training split
SYNTHETIC = ("data=synthetic", "model=regression")
N_TRAIN = 700


def fit(tmp_path, *overrides: str) -> tuple:
    """build + fit as train() does, with nothing written: (datamodule, module, trainer)."""
    return build_and_fit(
        tmp_path, "callbacks=none", "logger=none", "early_stopping=none", *overrides
    )


def parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().ravel() for p in module.parameters()])


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without(metrics: dict, *keys: str) -> dict:
    return {k: v for k, v in metrics.items() if k not in keys}


# --- 1. gradient accumulation is summation --------------------------------------------------

# float64, plain SGD, no shuffling, an MLP: k accumulated batches of b must step exactly like
# one batch of k*b
ACCUMULATION = (
    *SYNTHETIC,
    "model.hidden_dims=[16]",
    "precision=64",
    "optimizer=sgd",
    "optimizer.lr=0.05",
    "data.shuffle=false",
    "max_epochs=4",
)
EVEN = (25, 4)  # 700 = 7 groups of 4 batches of 25
UNEVEN = (32, 4)  # 700 = 5 groups of 4 x 32, then a short group of 2 batches: 32 and 28


def accumulated_and_plain(tmp_path, batch_size: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    accumulated = fit(
        tmp_path, *ACCUMULATION, f"data.batch_size={batch_size}", f"accumulate_grad_batches={k}"
    )
    plain = fit(tmp_path, *ACCUMULATION, f"data.batch_size={k * batch_size}")
    steps = 4 * math.ceil(N_TRAIN / (k * batch_size))
    assert accumulated[2].global_step == plain[2].global_step == steps
    return parameters(accumulated[1]), parameters(plain[1])


@pytest.mark.parametrize(("batch_size", "k"), [EVEN, UNEVEN], ids=["even", "short-last-group"])
def test_k_accumulated_batches_step_exactly_like_one_batch_k_times_larger(tmp_path, batch_size, k):
    accumulated, plain = accumulated_and_plain(tmp_path, batch_size, k)
    assert torch.max(torch.abs(accumulated - plain)) < 1e-10


def test_lightning_alone_shrinks_a_short_last_accumulation_group_so_the_test_would_fail(
    tmp_path, monkeypatch
):
    # Lightning's own weighting: every batch's loss divided by k, whatever the group holds
    monkeypatch.setattr(LitModule, "accumulation_weight", lambda self, i, n: 1 / self.accumulate)
    accumulated, plain = accumulated_and_plain(tmp_path, *UNEVEN)
    assert torch.max(torch.abs(accumulated - plain)) > 1e-4
    accumulated, plain = accumulated_and_plain(tmp_path, *EVEN)
    assert torch.max(torch.abs(accumulated - plain)) < 1e-10  # it is only the short group


# --- 2. gradient descent converges to the closed form ---------------------------------------


def test_full_batch_descent_on_a_linear_model_converges_to_least_squares(tmp_path):
    dm, module, _ = fit(
        tmp_path,
        *SYNTHETIC,
        "model.hidden_dims=[]",
        "descent=batch",
        "optimizer=sgd",
        "optimizer.lr=0.5",  # about 2 / (sum of the extreme Hessian eigenvalues)
        "precision=64",
        "max_epochs=60",
    )
    x, y = (t.double().numpy() for t in dm.splits["train"])  # the standardized split it saw
    design = np.hstack([x, np.ones((len(x), 1))])
    ols, *_ = np.linalg.lstsq(design, y, rcond=None)
    linear = module.net[0]
    learned = np.append(linear.weight.detach().numpy().ravel(), linear.bias.item())
    assert np.linalg.norm(learned - ols) / np.linalg.norm(ols) < 1e-6

    # in the data's own units, within noise of the true w and b: 4 standard errors of OLS
    w, b = dm.unstandardize(learned[:-1], learned[-1])
    raw = np.hstack([x * dm.x_std + dm.x_mean, np.ones((len(x), 1))])
    standard_errors = dm.noise * np.sqrt(np.diag(np.linalg.inv(raw.T @ raw)))
    assert np.all(np.abs(w - dm.true_w) < 4 * standard_errors[:-1])
    assert abs(b - dm.true_b) < 4 * standard_errors[-1]


# --- 3. descent modes are batch sizes -------------------------------------------------------


@pytest.mark.parametrize(
    ("descent", "steps_per_epoch"),
    [("batch", 1), ("minibatch", math.ceil(280 / 64)), ("stochastic", 280)],
)
def test_descent_modes_step_1_ceil_n_over_b_or_n_times_an_epoch_and_lower_the_loss(
    tmp_path, descent, steps_per_epoch
):
    overrides = (
        *SYNTHETIC,
        "data.n=400",  # 280 training samples; synthetic's batch_size is 64
        "model.hidden_dims=[]",
        "optimizer=sgd",
        "optimizer.lr=0.05",
    )
    cfg = make_cfg(tmp_path, *overrides)
    L.seed_everything(cfg.seed, verbose=False)
    initial = build.module(cfg, build.datamodule(cfg))  # the weights the fit starts from
    dm, module, trainer = fit(tmp_path, *overrides, f"descent={descent}", "max_epochs=3")
    history = next(c for c in trainer.callbacks if isinstance(c, EpochHistory))
    steps = [row["step"] for row in history.rows]  # global_step at the end of each epoch
    assert steps == [steps_per_epoch * (epoch + 1) for epoch in range(3)]
    assert trainer.global_step == 3 * steps_per_epoch

    x, y = dm.splits["train"]  # 280 samples

    def training_loss(m):
        return m.loss(m.float()(x), y).item()

    assert training_loss(module) < 0.9 * training_loss(initial)


# --- 4. the threshold stop ------------------------------------------------------------------


def test_threshold_stops_at_the_first_epoch_an_unstopped_run_goes_under_it(tmp_path):
    run_train(tmp_path / "free", "experiment=synthetic", "early_stopping=none", "max_epochs=8")
    free = read_metrics(tmp_path / "free")["history"]["val/loss"]
    first_under = next(epoch for epoch, loss in enumerate(free) if loss < 0.001)
    assert 0 < first_under < 7  # measured: epoch 3 (val/loss 0.0007 after 0.0021)

    run_train(
        tmp_path / "stopped",
        "experiment=synthetic",
        "early_stopping=threshold",
        "early_stopping.stopping_threshold=0.001",
        "max_epochs=8",
    )
    metrics = read_metrics(tmp_path / "stopped")
    assert metrics["stopped_by"] == "threshold"
    assert metrics["epochs"] == first_under + 1
    assert metrics["history"]["val/loss"] == free[: first_under + 1]


# --- 5. reproducible ------------------------------------------------------------------------

# dropout and shuffling: every source of randomness in training
RANDOM = ("data=wine", "model.dropout=0.3", "max_epochs=4", "early_stopping=none")


def test_the_same_seed_gives_the_same_bits_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run_train(tmp_path / name, *RANDOM, f"seed={seed}")
    a, b, c = (tmp_path / name for name in "abc")
    assert same_weights(final_weights(a), final_weights(b))
    assert without(read_metrics(a), "wall_time_s") == without(read_metrics(b), "wall_time_s")
    assert not same_weights(final_weights(a), final_weights(c))
    assert read_metrics(a)["history"]["train/loss"] != read_metrics(c)["history"]["train/loss"]


# --- 6 and 7. a signal stops training cleanly, and resuming continues exactly ---------------

# 125 training wines in 8 batches of 16 (the last holds 13), 3 batches to an optimizer step:
# groups of 3, 3 and 2 batches, 3 steps an epoch
INTERRUPTED = (*RANDOM, "max_epochs=5", "data.batch_size=16", "accumulate_grad_batches=3")


# a plateau schedule that halves the rate 3 times in 5 epochs (Lightning steps it after the
# epoch's checkpoint; LitModule steps it before)
PLATEAU = ("scheduler=plateau", "scheduler.patience=0", "optimizer.lr=0.05")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run never stopped, once per set of extra overrides."""
    runs = {}

    def run(*extra: str):
        if extra not in runs:
            runs[extra] = tmp_path_factory.mktemp("uninterrupted")
            run_train(runs[extra], *INTERRUPTED, *extra)
        return runs[extra]

    return run


@pytest.mark.parametrize(
    ("signum", "epoch", "batch", "saved_step", "extra"),
    [
        # inside the first group of epoch 2: the group ends (batch 2), then the run stops
        (signal.SIGINT, 2, 1, 2 * 3 + 1, ()),
        # in the last step of epoch 1: the epoch ends, the run stops before epoch 2
        (signal.SIGTERM, 1, 7, 2 * 3, ()),
        # before the first step: one step, then the stop
        (signal.SIGTERM, 0, 0, 1, ()),
        # mid-epoch, with a learning rate that depends on every epoch's val/loss
        (signal.SIGINT, 2, 4, 2 * 3 + 2, PLATEAU),
    ],
    ids=["sigint-mid-group", "sigterm-epoch-end", "sigterm-first-step", "sigint-plateau"],
)
def test_a_signal_saves_last_ckpt_and_resuming_it_ends_exactly_as_without(
    tmp_path, uninterrupted, signum, epoch, batch, saved_step, extra
):
    cue = (
        "+callbacks.signal._target_=conftest.SignalAt",
        f"+callbacks.signal.epoch={epoch}",
        f"+callbacks.signal.batch={batch}",
        f"+callbacks.signal.signum={int(signum)}",
    )
    with pytest.raises(SystemExit) as stopped:
        run_train(tmp_path, *INTERRUPTED, *extra, *cue)
    assert stopped.value.code == 128 + signum  # 130 for SIGINT, 143 for SIGTERM
    metrics = read_metrics(tmp_path)
    assert (metrics["status"], metrics["stopped_by"]) == ("interrupted", "interrupt")
    assert metrics["global_step"] == saved_step
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == saved_step

    run_train(tmp_path, *INTERRUPTED, *extra, f"ckpt_path={tmp_path}/checkpoints/last.ckpt")
    reference = uninterrupted(*extra)
    assert same_weights(final_weights(tmp_path), final_weights(reference))
    ignored = ("wall_time_s", "overrides")
    assert without(read_metrics(tmp_path), *ignored) == without(read_metrics(reference), *ignored)
