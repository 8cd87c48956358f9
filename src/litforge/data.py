"""In-memory tabular data: sources (sklearn's bundled sets, synthetic, CSV), splits, batches."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor

from litforge.checks import check_split
from litforge.chunks import Chunk
from litforge.errors import UserError

TASKS = ("regression", "classification")
log = logging.getLogger("litforge")


class InMemoryLoader:
    """Batches of (x, y) sliced from tensors: one indexing operation per batch, no workers.

    The order of an epoch is a function of (seed, epoch) alone, so a resumed run sees the same
    batches as an uninterrupted one. Lightning calls `sampler.set_epoch(epoch)` before each epoch,
    and saves `state_dict()` in checkpoints: one written mid-epoch resumes at the next batch.
    With `world_size > 1` each rank takes its own disjoint shard of the epoch's permutation.

    With `chunk > 1` (the fast path, chunks.py) each item is a `Chunk` of up to `chunk`
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
        self.in_chunk = False  # the fast path is inside a chunk's training step (chunks.py)
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
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
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


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for every (seed, epoch) pair."""
    return (seed * 1_000_003 + epoch) % (2**63)


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Rows of the train, val and test splits of n rows."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return n - n_val - n_test, n_val, n_test


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint train/val/test indices that cover range(n); the same for the same seed."""
    _, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


class TabularDataModule(L.LightningDataModule):
    """Features X (n × d) and a target y held in memory, split, and standardized on train only.

    Subclasses say where the data comes from by implementing `load()`.
    """

    task: str = "regression"

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
        self.chunk = 1  # training batches per loader item; chunks.FastPath sets it for its fit
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.classes: list = []

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Return features (n, d) and target (n,)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # idempotent: build() calls it first to learn the data's shape
            return
        x, y = self.load()
        x = np.asarray(x, dtype=np.float64)
        n_train = check_split(len(x), self.val_fraction, self.test_fraction)
        if self.batch_size != "full" and self.batch_size > n_train:
            log.warning(
                "data.batch_size=%s is larger than the training split (%d rows): every step uses "
                "all %d rows, as descent=batch would (full-batch gradient descent).",
                self.batch_size,
                n_train,
                n_train,
            )
        train, val, test = split_indices(len(x), self.val_fraction, self.test_fraction, self.seed)
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

    def train_batch_size(self) -> int:
        """`batch_size: full` is full-batch gradient descent: one step per epoch.

        A batch_size larger than the training split means the same (`setup` warns).
        """
        n = len(self.splits["train"][0])
        return n if self.batch_size == "full" else min(int(self.batch_size), n)

    def _loader(self, split: str, train: bool) -> InMemoryLoader:
        x, y = self.splits[split]
        rank, world_size, device, dtype = 0, 1, torch.device("cpu"), x.dtype
        if self.trainer is not None:
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
            shuffle=train and self.shuffle,
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


class SklearnDataModule(TabularDataModule):
    """One of scikit-learn's bundled data sets (shipped with the package, never downloaded)."""

    LOADERS = {
        "diabetes": ("load_diabetes", "regression"),
        "digits": ("load_digits", "classification"),
        "wine": ("load_wine", "classification"),
        "breast_cancer": ("load_breast_cancer", "classification"),
    }
    ROWS = {"diabetes": 442, "digits": 1797, "wine": 178, "breast_cancer": 569}  # for checks

    def __init__(self, name: str, **kwargs) -> None:
        if name not in self.LOADERS:
            raise UserError(
                f"data.name={name!r} is not a bundled data set; choose one of "
                f"{', '.join(self.LOADERS)}."
            )
        super().__init__(**kwargs)
        self.name = name
        self.task = self.LOADERS[name][1]
        self.save_hyperparameters(logger=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        import sklearn.datasets

        loader = getattr(sklearn.datasets, self.LOADERS[self.name][0])
        x, y = loader(return_X_y=True)
        return x, y


class SyntheticDataModule(TabularDataModule):
    """y = X w + b + noise with X ~ N(0, 1); the true w and b are drawn from `seed`.

    |w_i| ~ U(weight_low, weight_high) with a random sign, b ~ U(-bias, bias),
    noise ~ N(0, noise²). Standardization is undone by `unstandardize()` to compare with w, b.
    """

    task = "regression"

    def __init__(
        self,
        n: int = 1000,
        num_features: int = 8,
        noise: float = 0.1,
        weight_low: float = 0.5,
        weight_high: float = 2.0,
        bias: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.n, self.d, self.noise = n, num_features, noise
        self.weight_low, self.weight_high, self.bias = weight_low, weight_high, bias
        self.save_hyperparameters(logger=False)
        rng = np.random.default_rng(self.seed)
        signs = rng.choice([-1.0, 1.0], size=self.d)
        self.true_w = signs * rng.uniform(weight_low, weight_high, size=self.d)
        self.true_b = float(rng.uniform(-bias, bias))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1])  # a stream apart from the one for w, b
        x = rng.standard_normal((self.n, self.d))
        y = x @ self.true_w + self.true_b + self.noise * rng.standard_normal(self.n)
        return x, y

    def unstandardize(self, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
        """Map a linear model on standardized x, y back to the data's own units."""
        w_raw = w * self.y_std / self.x_std
        b_raw = self.y_mean + self.y_std * b - float(w_raw @ self.x_mean)
        return w_raw, b_raw


class CSVDataModule(TabularDataModule):
    """Your own table: every column but `target` is a numeric feature."""

    def __init__(self, path: str, target: str, task: str = "regression", **kwargs) -> None:
        super().__init__(**kwargs)
        if task not in TASKS:
            raise UserError(f"data.task={task!r} is not a task; use one of {', '.join(TASKS)}.")
        self.path, self.target, self.task = path, target, task
        self.save_hyperparameters(logger=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return read_csv(Path(self.path), self.target, self.task)


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
