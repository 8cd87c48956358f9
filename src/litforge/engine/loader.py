"""Batches in an order drawn from (seed, epoch): litforge's in-memory loader, and a sampler that
gives a standard DataLoader the same guarantees (exact accumulation weights, exact resume)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Sampler

from litforge.errors import UserError


class Chunk(NamedTuple):
    """Consecutive training batches: their rows of x and y, and where they sit in the epoch."""

    x: Tensor  # (rows, features): the batches one after another
    y: Tensor  # (rows,)
    first: int  # index in the epoch of the first batch
    count: int  # number of batches

    def batches(self, sizes: list[int]):
        """(batch_idx, x, y) of each batch, given the epoch's batch sizes; views, no copies."""
        mine = sizes[self.first : self.first + self.count]
        indices = range(self.first, self.first + self.count)
        return zip(indices, self.x.split(mine), self.y.split(mine), strict=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for every (seed, epoch) pair."""
    return (seed * 1_000_003 + epoch) % (2**63)


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """A permutation of range(n) that depends on (seed, epoch) alone."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=generator)


class InMemoryLoader:
    """Batches of (x, y) sliced from tensors: one indexing operation per batch, no workers.

    The order of an epoch is a function of (seed, epoch) alone, so a resumed run sees the same
    batches as an uninterrupted one. Lightning calls `sampler.set_epoch(epoch)` before each epoch,
    and saves `state_dict()` in checkpoints: one written mid-epoch resumes at the next batch.
    With `world_size > 1` each rank takes its own disjoint shard of the epoch's permutation.

    With `chunk > 1` (the fast path, fastpath.py) each item is a `Chunk` of up to `chunk`
    consecutive batches, sliced with one indexing operation; chunk j holds batches
    [j * chunk, (j + 1) * chunk), also after resuming mid-chunk, so an epoch has len(self) items
    however it was interrupted. The module trains the chunk's batches and advances
    `batches_done` as it goes.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        equal_shards: bool = False,
        chunk: int = 1,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.chunk = chunk
        n = len(x)
        # training ranks must take the same number of steps, so each gets floor(n / world_size)
        # samples; evaluation ranks may differ in length (metrics are summed over ranks).
        if equal_shards:
            self.num_samples = n // world_size
        else:
            self.num_samples = len(range(rank, n, world_size))
        self.num_batches = math.ceil(self.num_samples / batch_size)
        self.epoch = 0
        self.batches_done = 0  # in this epoch, counting the one being trained on
        self.in_chunk = False  # the fast path is inside a chunk's training step (fastpath.py)
        self.resume_at = 0  # batches to skip at the next iteration (set by load_state_dict)
        self.resume_in_chunk = False  # the state loaded was saved inside a training step
        self.sampler = self  # where Lightning looks for `set_epoch`
        self.batch_sampler = None  # Lightning reads it next to `sampler`

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_batches / self.chunk)

    def batch_sizes(self) -> list[int]:
        """Sizes of this epoch's batches, in order (the last may be short)."""
        full, rest = divmod(self.num_samples, self.batch_size)
        return [self.batch_size] * full + ([rest] if rest else [])

    def rows(self, first: int, stop: int) -> int:
        """How many samples batches [first, stop) of an epoch hold (the last batch may be short)."""
        return min(stop * self.batch_size, self.num_samples) - first * self.batch_size

    def indices(self) -> Tensor | None:
        """This rank's sample indices for the current epoch, or None for the plain order."""
        n = len(self.x)
        if not self.shuffle and self.world_size == 1:
            return None
        order = epoch_order(n, self.seed, self.epoch) if self.shuffle else torch.arange(n)
        return order[self.rank :: self.world_size][: self.num_samples].to(self.x.device)

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "in_chunk": self.in_chunk,
            "chunk": self.chunk,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.resume_at = state_dict["batches_done"]
        self.resume_in_chunk = bool(state_dict.get("in_chunk", False))
        chunk = state_dict.get("chunk", 1)  # checkpoints from before the fast path: 1
        if 0 < self.resume_at < self.num_batches and chunk != self.chunk:
            # Lightning counts an epoch's progress in loader items: batches, or chunks of them
            raise UserError(
                f"the checkpoint was written part-way through an epoch by a run that trained "
                f"{chunk} batch(es) per Lightning training step, and this run trains {self.chunk} "
                "(steps_per_call x accumulate_grad_batches on the fast path, 1 on Lightning's own "
                "loop, which DDP, precision=16-mixed and debug=fast/overfit choose). Resume with "
                "the settings the run had when it stopped, or from a checkpoint written at the "
                "end of an epoch."
            )

    def __iter__(self):
        index = self.indices()
        batch, self.resume_at = self.resume_at, 0
        self.batches_done = batch
        in_chunk, self.resume_in_chunk = self.resume_in_chunk, False
        if in_chunk and batch % self.chunk == 0 and 0 < batch < self.num_batches:
            # saved inside a training step (a signal) right after a chunk's last batch: Lightning
            # counts that chunk as not done, so the rest of it (none) is still an item, as a
            # chunk stopped part-way is, and the epoch keeps len(self) items
            yield Chunk(self.x[:0], self.y[:0], batch, 0)
        while batch < self.num_batches:
            stop = min((batch // self.chunk + 1) * self.chunk, self.num_batches)
            rows = slice(batch * self.batch_size, min(stop * self.batch_size, self.num_samples))
            if index is None:  # contiguous slices are views: no copy at all
                x, y = self.x[rows], self.y[rows]
            else:
                picked = index[rows]  # index_select: ~5x faster than x[picked] on a CPU
                x, y = self.x.index_select(0, picked), self.y.index_select(0, picked)
            if self.chunk == 1:
                self.batches_done = stop
                yield x, y
            else:
                yield Chunk(x, y, batch, stop - batch)
            batch = stop


class EpochSampler(Sampler[int]):
    """The training order of a Dataset, for a standard DataLoader: a permutation drawn from
    (seed, epoch) alone, that can start part-way through an epoch.

    `DataLoader(dataset, batch_size=b, sampler=datamodule.train_sampler(dataset))` then batches an
    epoch as it would batch it uninterrupted: a run resumed from a checkpoint written after k
    batches starts at sample k·b of the same permutation (`start`). Lightning calls
    `set_epoch(epoch)` before each epoch; it is passed on to the dataset if the dataset has a
    `set_epoch` too, so augmentation can be drawn from (seed, epoch, index) as well.
    """

    def __init__(
        self, dataset: Any, shuffle: bool = True, seed: int = 0, epoch: int = 0, start: int = 0
    ) -> None:
        self.dataset = dataset
        self.num_samples = len(dataset)
        self.shuffle, self.seed = shuffle, seed
        self.epoch = -1
        self.set_epoch(epoch)
        self.start = start  # samples of `epoch` to skip: those of batches already trained

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0  # a start belongs to the epoch it was set for
        self.epoch = epoch
        set_dataset_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_dataset_epoch):
            set_dataset_epoch(epoch)

    def __len__(self) -> int:
        # the whole epoch, also when it starts part-way: Lightning counts its batches from the
        # checkpoint's count on, up to len(loader)
        return self.num_samples

    def __iter__(self):
        if self.shuffle:
            order = epoch_order(self.num_samples, self.seed, self.epoch)
        else:
            order = torch.arange(self.num_samples)
        start, self.start = self.start, 0
        return iter(order[start:].tolist())


def group_rows(loader: Any, first: int, stop: int) -> int | None:
    """Samples that batches [first, stop) of an epoch of `loader` hold, or None where the loader
    does not tell (an iterable dataset, a batch sampler of its own, ...)."""
    rows = getattr(loader, "rows", None)
    if callable(rows):  # InMemoryLoader
        return rows(first, stop)
    if not isinstance(loader, DataLoader) or not isinstance(loader.batch_sampler, BatchSampler):
        return None
    sampler, batch_size = loader.batch_sampler.sampler, loader.batch_sampler.batch_size
    try:
        n = len(sampler)
    except TypeError:  # a sampler without a length
        return None
    if loader.batch_sampler.drop_last:
        n = n // batch_size * batch_size
    return max(0, min(stop * batch_size, n) - first * batch_size)
