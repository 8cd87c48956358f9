"""YOURS: where the data comes from.

A tabular source derives from `TabularDataModule` and returns (features, target) arrays from
`load()`; splitting, standardizing on the training split and batching in memory (the fast path)
come with it. Anything else (images, text, files too big for memory) derives from `DataModule`
and serves standard DataLoaders, as `DigitsImages` shows. Attributes such as `num_features` and
`num_classes` reach the model's constructor by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from litforge.engine import DataModule, TabularDataModule
from litforge.errors import UserError
from litforge.tables import check_options, read_csv

TASKS = ("regression", "classification")


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
    """Your own table: `target` is learned from the other columns. tables.read_csv reads it;
    the keys `sep`, `encoding`, `missing` and `categorical` say how (conf/data/csv.yaml)."""

    def __init__(
        self, path: str, target: str, task: str = "regression", sep: str | None = None,
        encoding: str = "utf-8", missing: str = "error", categorical=None, **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.path, self.target, self.task = path, target, task
        self.reading = {"sep": sep, "encoding": encoding, "missing": missing}
        self.reading["categorical"] = categorical
        check_options(task, **self.reading)  # a mistake is refused before any file is read
        self.save_hyperparameters(logger=False)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        table = read_csv(Path(self.path), self.target, self.task, **self.reading)
        self.feature_names = table.features  # x's columns; a one-hot one reads 'island=Dream'
        return table.x, table.y


class DigitImages(Dataset):
    """(1×8×8 image, label) pairs, standardized with the training split's pixel mean and std.

    With `shift`, each image moves by up to one pixel in each direction (the edge fills with
    blank paper), drawn from (seed, epoch, index): the same draws in a resumed run, whichever
    DataLoader worker reads the image. The training sampler passes the epoch on (`set_epoch`).
    """

    def __init__(
        self, images: Tensor, labels: Tensor, mean: float, std: float, shift: bool, seed: int
    ) -> None:
        self.images, self.labels = images, labels  # (n, 1, 8, 8) raw pixels 0-16, (n,)
        self.mean, self.std = mean, std
        self.shift, self.seed = shift, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's shifts: (dy, dx) in {-1, 0, 1}² per image, from (seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        self.shifts = rng.integers(-1, 2, size=(len(self.labels), 2)).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        image = self.images[i]
        if self.shift:
            dy, dx = self.shifts[i]
            padded = F.pad(image, (1, 1, 1, 1))  # a one-pixel border of blank paper (0)
            image = padded[:, 1 + dy : 9 + dy, 1 + dx : 9 + dx]
        return (image - self.mean) / self.std, self.labels[i]


class DigitsImages(DataModule):
    """scikit-learn's digits as 1×8×8 images through standard DataLoaders, the same split as
    `data=digits` for the same seed and fractions; a one-pixel random shift when training."""

    task = "classification"
    num_classes = 10
    in_channels = 1

    def __init__(self, num_workers: int = 0, augment: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_workers, self.augment = num_workers, augment
        self.save_hyperparameters(logger=False)
        self.datasets: dict[str, DigitImages] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        import sklearn.datasets

        x, y = sklearn.datasets.load_digits(return_X_y=True)
        images = torch.as_tensor(x, dtype=torch.float32).view(-1, 1, 8, 8)
        labels = torch.as_tensor(y, dtype=torch.long)
        train, val, test = self.split(len(x))
        mean, std = float(images[train].mean()), float(images[train].std())  # training split only
        for name, rows in (("train", train), ("val", val), ("test", test)):
            rows, shift = torch.as_tensor(rows), self.augment and name == "train"
            self.datasets[name] = DigitImages(
                images[rows], labels[rows], mean, std, shift, self.order_seed
            )

    def train_dataloader(self) -> DataLoader:
        train = self.datasets["train"]
        batch_size = len(train) if self.batch_size == "full" else self.batch_size
        return self.loader(train, batch_size, sampler=self.train_sampler(train))

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["val"], 512)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.datasets["test"], 512)

    def loader(self, dataset: Dataset, batch_size: int, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size, sampler=sampler, num_workers=self.num_workers)
