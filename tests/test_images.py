"""The worked example that is not in-memory tabular: digits as 1×8×8 images through a standard
Dataset + DataLoader and a small CNN. The loop's guarantees hold on it too."""

import signal

import numpy as np
import pytest
import torch

from conftest import build_and_fit, make_cfg
from litforge import build
from litforge.engine import EveryBatch
from litforge.engine.callbacks import GracefulStop
from litforge.run.history import EpochHistory

IMAGES = ("experiment=digits_cnn", "logger=none", "early_stopping=none")


def test_the_images_are_the_digits_split_as_the_mlp_splits_them(tmp_path):
    images = build.datamodule(make_cfg(tmp_path, "data=digits_images", "model=cnn"))
    table = build.datamodule(make_cfg(tmp_path, "data=digits"))
    for split in ("train", "val", "test"):
        dataset, (x, y) = images.datasets[split], table.splits[split]
        assert torch.equal(dataset.labels, y)
        pixels = x.double().numpy() * table.x_std + table.x_mean  # the table's own units
        assert np.allclose(dataset.images.view(len(y), 64).numpy(), pixels, atol=1e-5)
    assert len(images.datasets["train"]) == 1257


def test_the_shift_moves_each_image_by_at_most_a_pixel_and_depends_on_the_epoch(tmp_path):
    dm = build.datamodule(make_cfg(tmp_path, "data=digits_images", "model=cnn"))
    train = dm.datasets["train"]
    first = [train[i][0] for i in range(200)]
    epoch_0 = list(train.shifts)
    assert set(map(tuple, epoch_0)) == {(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)}
    blank = -train.mean / train.std  # paper, standardized
    for i, (dy, dx) in enumerate(epoch_0[:200]):  # the image, moved by (dy, dx)
        moved = torch.full((10, 10), blank)
        moved[1:9, 1:9] = (train.images[i, 0] - train.mean) / train.std
        assert torch.allclose(first[i][0], moved[1 + dy : 9 + dy, 1 + dx : 9 + dx])
    train.set_epoch(1)
    assert train.shifts != epoch_0  # another epoch, other shifts
    assert sum(not torch.equal(first[i], train[i][0]) for i in range(200)) > 100
    train.set_epoch(0)
    assert all(torch.equal(first[i], train[i][0]) for i in range(200))  # the same epoch, the same
    test = dm.datasets["test"]
    assert not test.shift and torch.equal(test[0][0], (test.images[0] - test.mean) / test.std)


def parameters(module) -> torch.Tensor:
    return torch.cat([p.detach().double().ravel() for p in module.parameters()])


def test_a_short_last_accumulation_group_is_weighted_exactly_on_a_dataloader(tmp_path):
    # float64, no dropout, no shift: 1257 images in groups of 4 x 32 = 128 are 9 full groups and
    # a short one of 105 (three batches of 32 and one of 9); it must step like one batch of 105
    exact = (*IMAGES, "precision=64", "model.dropout=0", "data.augment=false", "max_epochs=2")
    exact = (*exact, "optimizer=sgd", "optimizer.lr=0.05", "scheduler=none", "callbacks=none")
    _, accumulated, a = build_and_fit(tmp_path, *exact, "data.batch_size=32",
                                      "accumulate_grad_batches=4")  # fmt: skip
    _, plain, b = build_and_fit(tmp_path, *exact, "data.batch_size=128")
    assert a.global_step == b.global_step == 2 * 10
    difference = (parameters(accumulated) - parameters(plain)).abs().max()
    assert difference < 1e-10
    assert (
        parameters(plain)
        - parameters(build_and_fit(tmp_path, *exact, "max_epochs=1", "data.batch_size=128")[1])
    ).abs().max() > 1e-3  # fmt: skip  (and training moved it)


class StopAfterStep(EveryBatch):
    """Asks GracefulStop to stop once `step` optimizer steps are done, as SIGTERM would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer, pl_module, loss, batch_idx, stepped, last) -> None:
        if stepped and trainer.global_step == self.step:
            stop = next(c for c in trainer.callbacks if isinstance(c, GracefulStop))
            stop.received = signal.SIGTERM


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, workers):
    # 1257 images, 20 batches of 64 an epoch; stopped after step 27: epoch 1, batch 6.
    # Shuffled, shifted, with dropout: all three must be drawn again the same way.
    run = (*IMAGES, "max_epochs=3", f"data.num_workers={workers}")
    _, reference, ref_trainer = build_and_fit(tmp_path / "reference", *run)
    stop = ("+callbacks.stop._target_=test_images.StopAfterStep", "+callbacks.stop.step=27")
    with pytest.raises(SystemExit):
        build_and_fit(tmp_path / "run", *run, *stop)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 27
    assert checkpoint["DigitsImages"] == {
        "epoch": 1, "batches_done": 7, "num_batches": 20, "batch_size": 64
    }  # fmt: skip
    _, resumed, trainer = build_and_fit(tmp_path / "run", *run, ckpt_path=str(last))
    assert trainer.global_step == ref_trainer.global_step == 60
    for (name, a), (_, b) in zip(
        resumed.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name

    def history(trainer):
        return next(c for c in trainer.callbacks if isinstance(c, EpochHistory)).rows

    assert history(trainer) == history(ref_trainer)
