"""Splits are disjoint, cover the data and repeat per seed; standardization sees train only."""

import numpy as np
import pytest
import torch

from litforge.data import CSVDataModule, SklearnDataModule, SyntheticDataModule
from litforge.engine.datamodule import split_indices
from litforge.engine.loader import InMemoryLoader
from litforge.errors import UserError


def test_splits_are_disjoint_cover_everything_and_depend_on_the_seed():
    train, val, test = split_indices(1000, 0.15, 0.2, seed=3)
    assert (len(train), len(val), len(test)) == (650, 150, 200)
    together = np.concatenate([train, val, test])
    assert sorted(together.tolist()) == list(range(1000))  # disjoint and covering
    again = split_indices(1000, 0.15, 0.2, seed=3)
    assert all((a == b).all() for a, b in zip((train, val, test), again, strict=True))
    other = split_indices(1000, 0.15, 0.2, seed=4)
    assert not (train == other[0]).all()


def test_features_are_standardized_with_training_statistics_only():
    dm = SklearnDataModule("diabetes", seed=0)
    dm.setup()
    x_train, y_train = dm.splits["train"]
    x_test, _ = dm.splits["test"]
    assert x_train.mean(0).abs().max() < 1e-5
    assert torch.allclose(x_train.std(0, unbiased=False), torch.ones(10), atol=1e-4)
    assert abs(float(y_train.mean())) < 1e-5
    # the test split is scaled with the training split's numbers, so it is not exactly (0, 1)
    assert x_test.mean(0).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("name", "n", "features", "classes"),
    [("digits", 1797, 64, 10), ("wine", 178, 13, 3), ("breast_cancer", 569, 30, 2)],
)
def test_bundled_classification_sets_report_their_shape(name, n, features, classes):
    dm = SklearnDataModule(name)
    dm.setup()
    assert sum(len(x) for x, _ in dm.splits.values()) == n
    assert (dm.num_features, dm.num_classes, dm.task) == (features, classes, "classification")


def test_synthetic_data_has_the_size_asked_for_and_its_stated_weights():
    dm = SyntheticDataModule(n=500, num_features=3, noise=0.0, seed=7)
    dm.setup()
    assert sum(len(x) for x, _ in dm.splits.values()) == 500
    x, y = dm.load()
    assert np.allclose(x @ dm.true_w + dm.true_b, y)  # noise=0: y is exactly X w + b
    assert np.all((np.abs(dm.true_w) >= 0.5) & (np.abs(dm.true_w) <= 2.0))


def test_loader_batches_are_a_permutation_that_depends_on_seed_and_epoch():
    x = torch.arange(10.0).unsqueeze(1)
    loader = InMemoryLoader(x, torch.arange(10), batch_size=4, shuffle=True, seed=1)
    assert len(loader) == 3 and loader.batch_sizes() == [4, 4, 2]
    epoch0 = torch.cat([y for _, y in loader])
    loader.set_epoch(1)
    epoch1 = torch.cat([y for _, y in loader])
    assert sorted(epoch0.tolist()) == list(range(10)) == sorted(epoch1.tolist())
    assert epoch0.tolist() != epoch1.tolist()
    loader.set_epoch(0)
    assert torch.cat([y for _, y in loader]).tolist() == epoch0.tolist()
    for xb, yb in loader:  # features travel with their targets
        assert xb.squeeze(1).long().tolist() == yb.tolist()


def test_loader_shards_are_disjoint_and_equal_for_training():
    x, y = torch.zeros(11, 1), torch.arange(11)
    shards = [
        InMemoryLoader(x, y, 3, shuffle=True, seed=0, rank=r, world_size=2, equal_shards=True)
        for r in range(2)
    ]
    seen = [torch.cat([yb for _, yb in shard]).tolist() for shard in shards]
    assert len(seen[0]) == len(seen[1]) == 5
    assert not set(seen[0]) & set(seen[1])


def test_full_batch_is_the_whole_training_split():
    dm = SyntheticDataModule(n=200, batch_size="full")
    dm.setup()
    loader = dm.train_dataloader()
    assert len(loader) == 1 and loader.batch_sizes() == [len(dm.splits["train"][0])]


def write(tmp_path, text):
    path = tmp_path / "table.csv"
    path.write_text(text)
    return path


def test_csv_classification_with_string_labels(tmp_path):
    rows = "\n".join(f"{i},{i % 3 * 2.5},{'ab'[i % 2]}" for i in range(40))
    dm = CSVDataModule(
        str(write(tmp_path, "a,b,label\n" + rows)), target="label", task="classification"
    )
    dm.setup()
    assert (dm.num_features, dm.num_classes) == (2, 2)
    assert list(dm.classes) == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "target", "task", "words"),
    [
        ("a,b\n1,2\n3,4\n", "y", "regression", ["'y' is not a column", "['a', 'b']"]),
        ("a,y\n1,2\nx,4\n", "y", "regression", ["column 'a'", "not numeric", "'x'"]),
        ("a,y\n1,2\n,4\n,5\n", "y", "regression", ["column 'a'", "2 missing"]),
        ("", "y", "regression", ["empty"]),
        ("a,y\n", "y", "regression", ["no data rows"]),
        ("a,y\n1,1\n2,1\n", "y", "classification", ["single class"]),
        ("a,y\n1,0.5\n2,1.5\n", "y", "classification", ["non-integer", "data.task=regression"]),
    ],
)
def test_csv_mistakes_name_the_problem(tmp_path, text, target, task, words):
    dm = CSVDataModule(str(write(tmp_path, text)), target=target, task=task)
    with pytest.raises(UserError) as err:
        dm.setup()
    for word in words:
        assert word in str(err.value)


def test_missing_csv_names_the_path(tmp_path):
    dm = CSVDataModule(str(tmp_path / "nope.csv"), target="y")
    with pytest.raises(UserError, match="nope.csv.*does not exist"):
        dm.setup()
