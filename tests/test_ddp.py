"""Data parallel on CPU: two gloo processes train one model and write one set of outputs."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from conftest import cli, make_cfg
from litforge import build
from litforge.eval import evaluate


def shard_rows(cfg, rank: int, epoch: int) -> set[tuple[float, ...]]:
    """The training rows rank `rank` of 2 sees in `epoch`, as the datamodule builds its loader."""
    dm = build.datamodule(cfg)
    dm.trainer = SimpleNamespace(
        global_rank=rank,
        world_size=2,
        precision="32-true",
        overfit_batches=0,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )
    loader = dm.train_dataloader()
    loader.set_epoch(epoch)
    rows = [tuple(row.tolist()) for x, _ in loader for row in x]
    assert len(rows) == len(set(rows))
    return set(rows)


@pytest.mark.parametrize("epoch", [0, 1])
def test_each_process_sees_a_disjoint_half_of_the_training_data(epoch, tmp_path):
    cfg = make_cfg(tmp_path, "data=wine")
    first, second = shard_rows(cfg, 0, epoch), shard_rows(cfg, 1, epoch)
    n_train = len(build.datamodule(cfg).splits["train"][0])
    assert len(first) == len(second) == n_train // 2
    assert not first & second


@pytest.mark.slow
def test_ddp_cpu_trains_and_rank_zero_writes_one_set_of_outputs(tmp_path):
    run = tmp_path / "run"
    result = cli(
        "-m",
        "litforge.train",
        "device=ddp_cpu",
        "data=wine",
        "max_epochs=3",
        f"hydra.run.dir={run}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # several backward passes inside one DDP forward would break DDP: one batch per step
    assert "Lightning's own training loop: data parallel" in result.stdout + result.stderr
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("metrics.json")] == [
        run.relative_to(tmp_path) / "metrics.json"
    ]
    assert sorted(p.name for p in tmp_path.rglob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert {p.parent for p in tmp_path.rglob("events.out.tfevents.*")} == {run}
    assert len(list(tmp_path.rglob("hparams.yaml"))) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    # 125 training wines: 62 per process, batch 32 -> 2 steps per epoch, not 4
    assert metrics["global_step"] == 3 * math.ceil((125 // 2) / 32)
    # validation and test metrics were reduced over both processes: one process on the
    # whole test split gets the same numbers from the same checkpoint
    single = evaluate(run / "checkpoints" / "best.ckpt", tmp_path / "eval")
    assert single["test/acc"] == metrics["test"]["test/acc"]
    assert single["test/f1"] == pytest.approx(metrics["test"]["test/f1"], rel=1e-6)
    assert single["test/loss"] == pytest.approx(metrics["test"]["test/loss"], rel=1e-6)
