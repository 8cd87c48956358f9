"""The LightningDataModules litforge's data sources derive from.

`DataModule`: the keys every data config has (batch size, split fractions and seed, shuffling)
and, for data served through standard DataLoaders, `train_sampler()`: an order drawn from
(seed, epoch) whose place in the epoch is kept in checkpoints, so a run resumed mid-epoch sees
the same batches. `TabularDataModule`: features and a target held in memory as tensors,
standardized on the training split, served by `InMemoryLoader` (the fast path's loader).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from litforge.engine import compat
from litforge.engine.loader import EpochSampler, InMemoryLoader
from litforge.rules import MIN_ROWS, check_split, split_sizes

log = logging.getLogger("litforge")


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint train/val/test indices that cover range(n); the same for the same seed."""
    _, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


class DataModule(L.LightningDataModule):
    """A LightningDataModule with the keys every litforge data config has.

    `seed` decides the split (`split()`), `order_seed` (the run's `seed`) the batch order. Serve
    the training set with `DataLoader(dataset, batch_size=..., sampler=self.train_sampler(dataset))`
    and the loop's guarantees hold on it: an epoch's order is a function of (seed, epoch), a short
    last accumulation group is weighted exactly, and a run resumed mid-epoch starts at the next
    batch of the same order. `task` ("regression" or "classification") is checked against the
    model's.
    """

    task: str | None = None

    def __init__(
        self,
        batch_size: int | str = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        shuffle: bool = True,
        order_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.seed = seed  # decides the split
        self.shuffle = shuffle
        self.order_seed = seed if order_seed is None else order_seed  # decides the batch order
        self.resume_position: dict[str, int] | None = None  # from a checkpoint (load_state_dict)

    def split(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices of the train, val and test rows of n, by `seed`; each split has rows (2 for
        regression, whose R² needs them)."""
        check_split(n, self.val_fraction, self.test_fraction, MIN_ROWS.get(self.task, 1))
        return split_indices(n, self.val_fraction, self.test_fraction, self.seed)

    def train_sampler(self, dataset: Any) -> EpochSampler:
        """The training order for a DataLoader over `dataset`, from where a checkpoint left it."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        start = 0
        position, self.resume_position = self.resume_position, None
        if position:
            if position["batches_done"] >= position["num_batches"]:  # saved as the epoch ended
                epoch = position["epoch"] + 1
            else:
                epoch, start = position["epoch"], position["batches_done"] * position["batch_size"]
                # this sampler is what makes the resume exact: not Lightning's "not resumable"
                self.filters = warnings.filters[:]
                warnings.filterwarnings("ignore", message=".*your dataloader is not resumable")
        return EpochSampler(
            dataset, shuffle=self.shuffle, seed=self.order_seed, epoch=epoch, start=start
        )

    def state_dict(self) -> dict[str, Any]:
        """Where training is in its epoch, when a `train_sampler()` orders it (in checkpoints)."""
        trainer = self.trainer
        if trainer is None or not trainer.training or trainer.world_size > 1:
            return {}
        loader = trainer.train_dataloader
        if not isinstance(getattr(loader, "sampler", None), EpochSampler) or not loader.batch_size:
            return {}
        if not math.isfinite(trainer.num_training_batches):
            return {}
        return {
            "epoch": trainer.current_epoch,
            "batches_done": compat.batches_done_this_epoch(trainer),
            "num_batches": int(trainer.num_training_batches),
            "batch_size": int(loader.batch_size),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.resume_position = dict(state_dict) or None

    def teardown(self, stage: str) -> None:
        if getattr(self, "filters", None) is not None:  # the warnings as they were before fit
            warnings.filters[:], self.filters = self.filters, None


class TabularDataModule(DataModule):
    """Features X (n × d) and a target y held in memory, split, and standardized on train only.

    Subclasses say where the data comes from by implementing `load()`; batches are slices of
    tensors on the run's device (`InMemoryLoader`), which is what the fast path trains on.
    """

    task: str = "regression"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.chunk = 1  # training batches per loader item; fastpath.FastPath sets it for its fit
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.classes: list = []

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Return features (n, d) and target (n,)."""
        raise NotImplementedError(f"{type(self).__name__} must define load() -> (x, y)")

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # idempotent: build() calls it first to learn the data's shape
            return
        x, y = self.load()
        x = np.asarray(x, dtype=np.float64)
        train, val, test = self.split(len(x))
        if self.batch_size != "full" and self.batch_size > len(train):
            log.warning(
                "data.batch_size=%s is larger than the training split (%d rows): every step uses "
                "all %d rows, as descent=batch would (full-batch gradient descent).",
                self.batch_size,
                len(train),
                len(train),
            )
        # statistics of the training split only, so val/test never leak into training
        self.x_mean = x[train].mean(axis=0)
        self.x_std = x[train].std(axis=0)
        self.x_std[self.x_std == 0] = 1.0  # constant columns (e.g. blank digit pixels) stay 0
        x = (x - self.x_mean) / self.x_std
        if self.task == "classification":
            self.classes, codes = np.unique(y, return_inverse=True)
            y = torch.as_tensor(codes, dtype=torch.long)
            self.y_mean, self.y_std = 0.0, 1.0
        else:
            y = np.asarray(y, dtype=np.float64)
            self.y_mean, self.y_std = float(y[train].mean()), float(y[train].std() or 1.0)
            y = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        x = torch.as_tensor(x, dtype=torch.float32)
        for name, rows in (("train", train), ("val", val), ("test", test)):
            self.splits[name] = (x[rows], y[rows])

    @property
    def num_features(self) -> int:
        return self.splits["train"][0].shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def target_mean(self) -> float:
        """The regression target's training mean: the model reports metrics in its units."""
        return self.y_mean

    @property
    def target_std(self) -> float:
        return self.y_std

    def train_batch_size(self) -> int:
        """`batch_size: full` is full-batch gradient descent: one step per epoch.

        A batch_size larger than the training split means the same (`setup` warns).
        """
        n = len(self.splits["train"][0])
        return n if self.batch_size == "full" else min(int(self.batch_size), n)

    def fast_path_blockers(self) -> list[str]:
        """What in this data module keeps a fit on Lightning's own loop (fastpath.FastPath asks)."""
        if type(self).train_dataloader is TabularDataModule.train_dataloader:
            return []
        return [
            f"{type(self).__name__} overrides train_dataloader; the fast path slices "
            "TabularDataModule's own in-memory loader. To keep litforge's fast path, return the "
            "arrays from load() and leave train_dataloader to TabularDataModule."
        ]

    def state_dict(self) -> dict[str, Any]:
        return {}  # InMemoryLoader keeps its own place in checkpoints (Lightning asks it)

    def _loader(self, split: str, train: bool) -> InMemoryLoader:
        x, y = self.splits[split]
        rank, world_size, device, dtype = 0, 1, torch.device("cpu"), x.dtype
        shuffle = train and self.shuffle
        if self.trainer is not None:
            # overfitting a batch means the same batch every epoch (Lightning turns shuffling
            # off only in the DataLoaders it knows)
            shuffle = shuffle and not self.trainer.overfit_batches
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
            device = self.trainer.strategy.root_device
            if str(self.trainer.precision).startswith("64"):
                dtype = torch.float64
        # moved (and cast) once per loader, not once per batch
        x, y = x.to(device=device, dtype=dtype), y.to(device)
        if y.is_floating_point():
            y = y.to(dtype)
        # evaluation batches only bound memory (their size changes no metric): large ones, as
        # Lightning's loop costs ~0.3 ms a batch
        batch_size = self.train_batch_size() if train else max(self.train_batch_size(), 8192)
        return InMemoryLoader(
            x,
            y,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=self.order_seed,
            rank=rank,
            world_size=world_size,
            equal_shards=train,
            chunk=self.chunk if train else 1,
        )

    def train_dataloader(self) -> InMemoryLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> InMemoryLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> InMemoryLoader:
        return self._loader("test", train=False)
