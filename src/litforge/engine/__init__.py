"""litforge's Lightning layer: what turns a network and a data source into an exact, fast run.

You never need to open it to change what is trained. `module.LitModule` is the LightningModule
your models derive from (steps, epoch metrics, exact accumulation weights, schedules);
`datamodule.TabularDataModule` and `datamodule.DataModule` the data modules your sources derive
from (splits, standardization, an order drawn from (seed, epoch), resumable mid-epoch);
`loader` holds the in-memory loader and the sampler that gives a standard DataLoader the same
guarantees; `fastpath` trains a chunk of optimizer steps per Lightning step where that is exact
and says why where it is not; `callbacks` are those every run has (dropout seeded per batch, a
clean stop on a signal, a stop at the first NaN loss, a check that the monitored metric is
logged); `checkpoints` writes them whole, shares last.ckpt with best.ckpt and reads them back as
data only; `loggers` is a leaner TensorBoard writer; `trackers` sets up MLflow and W&B for a
run; `progress` the progress bar; `pruning` reports each epoch of an Optuna trial to its study
and stops it when the pruner says so (`studies` opens the study's storage); `compat` is the one
place that touches private attributes of Lightning, torchmetrics, TensorBoard, Hydra and W&B.
Nothing here imports your models or data, or the run and entry modules above it.
"""

import importlib

# what models.py and data.py derive from; imported on first use, so that `engine.compat` alone
# (used before a run's config is checked) does not load torch
EXPORTS = {
    "DataModule": "litforge.engine.datamodule",
    "TabularDataModule": "litforge.engine.datamodule",
    "EveryBatch": "litforge.engine.fastpath",
    "LitModule": "litforge.engine.module",
}
__all__ = list(EXPORTS)


def __getattr__(name: str):
    if name not in EXPORTS:
        raise AttributeError(f"module 'litforge.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(EXPORTS[name]), name)
