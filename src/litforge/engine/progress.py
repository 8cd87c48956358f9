"""The progress bar: TQDM's, counting batches on the fast path too (Lightning counts chunks)."""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar
from torch import Tensor

from litforge.engine.loader import Chunk


class BatchProgressBar(TQDMProgressBar):
    """TQDM's progress bar, counting batches also on the fast path (Lightning counts chunks),
    where it shows the last batch's loss as train/loss_step without a log call per chunk.

    While fitting, validation gets no bar of its own: it is a batch or two of in-memory data,
    and a new bar every epoch cost ~0.4 ms (a few percent of a small epoch). Its results show on
    the training bar, as Lightning's do. `trainer.validate` keeps its bar.
    """

    step_loss: Tensor | None = None

    @property
    def total_train_batches(self) -> int | float:
        loader = self.trainer.train_dataloader
        if getattr(loader, "chunk", 1) > 1:
            return loader.num_batches
        return super().total_train_batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if isinstance(batch, Chunk):
            batch_idx = batch.first + batch.count - 1
            if outputs:  # not the empty rest of a chunk (loader.InMemoryLoader)
                self.step_loss = outputs["loss"]
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        if self.step_loss is not None:
            metrics["train/loss_step"] = float(self.step_loss)  # read when the bar redraws
        return metrics

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn != "fit":
            super().on_validation_start(trainer, pl_module)

    def on_validation_batch_start(self, trainer, pl_module, *args, **kwargs) -> None:
        if trainer.state.fn != "fit":
            super().on_validation_batch_start(trainer, pl_module, *args, **kwargs)

    def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs) -> None:
        if trainer.state.fn != "fit":
            super().on_validation_batch_end(trainer, pl_module, *args, **kwargs)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn != "fit":
            super().on_validation_end(trainer, pl_module)
        else:
            try:
                bar = self.train_progress_bar
            except TypeError:  # no training bar (yet)
                return
            bar.set_postfix(self.get_metrics(trainer, pl_module))
