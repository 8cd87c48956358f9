"""The GPU path (run where a CUDA GPU exists; skipped cleanly elsewhere)."""

import pytest
import torch

from conftest import make_cfg, read_metrics
from litforge import build
from litforge.run.record import RunRecord
from litforge.train import fit_and_test

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_gpu_training_keeps_the_data_on_the_device(precision, tmp_path):
    cfg = make_cfg(tmp_path, "device=gpu", f"precision={precision}", "max_epochs=3")
    datamodule, trainer = build.datamodule(cfg), build.trainer(cfg)
    module = build.module(cfg, datamodule)
    record = fit_and_test(datamodule, module, trainer, RunRecord(tmp_path, "val/loss", []))
    record.finish("completed")
    record.write()
    loader = trainer.train_dataloader
    # the tensors were moved once; every batch is a slice of them, already on the GPU
    assert loader.x.device.type == "cuda" and loader.y.device.type == "cuda"
    x, y = next(iter(loader))[:2]  # a Chunk's rows on the fast path
    assert x.is_cuda and y.is_cuda
    history = read_metrics(tmp_path)["history"]["val/loss"]
    assert history[-1] < history[0]
    assert read_metrics(tmp_path)["test"]["test/acc"] > 0.8


def test_ddp_uses_every_gpu(tmp_path):
    cfg = make_cfg(tmp_path, "device=ddp")
    assert build.trainer(cfg).num_devices == torch.cuda.device_count()
