"""Lightning's TensorBoardLogger, writing each call's scalars as one event, flushed by time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor

from litforge.engine import compat


class TensorBoardLogger(LightningTensorBoardLogger):
    """The same event files, with a call's scalars in one event instead of one event each.

    Lightning's `log_metrics` hands every scalar to `SummaryWriter.add_scalar`, which converts it
    through numpy and writes an event of its own: ~70 µs a scalar, ~0.3 ms for an epoch's
    validation metrics, a tenth of a small epoch. Here the values become floats once and go out
    as one `Summary` with a value per tag, which TensorBoard reads as it reads any other (a
    summary of several values is what `tf.summary.merge_all` writes). Values that are dicts
    (`add_scalars` groups) still go through Lightning.

    Lightning also flushes the event file after every call (`save()`: a hand-off to the writer
    thread, ~0.1 ms); here the writer flushes every `flush_secs` (conf/logger/tensorboard.yaml)
    and when the run ends, crashes included (Lightning finalizes its loggers then).
    """

    hparams_written: dict | None = None  # what hparams.yaml holds, once written

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = compat.logger_prefixed(self, metrics)
        values, groups = [], {}
        for tag, value in metrics.items():
            if tag == "epoch":  # Lightning adds it to every call; the x axis shows steps already
                continue
            if isinstance(value, Mapping):
                groups[tag] = value
                continue
            if isinstance(value, Tensor):
                value = value.item()
            try:
                values.append(Summary.Value(tag=tag, simple_value=float(value)))
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{tag}={value!r} cannot be logged to TensorBoard: log a number or a "
                    "one-element tensor."
                ) from err
        if values:
            compat.event_file_writer(self.experiment).add_summary(Summary(value=values), step)
        if groups:
            super().log_metrics(groups, step)

    @rank_zero_only
    def log_final(
        self,
        params: dict[str, Any],
        metrics: dict[str, float],
        scalars: dict[str, float],
        step: int,
        experiment: bool = True,
    ) -> None:
        """The run's HParams entry: its params and the names of its final metrics, whose values
        TensorBoard reads from the run's scalars of those names (the test metrics Lightning
        logged; `scalars`, such as the best monitored value, are written here).

        No `hp/` copies of them as Lightning writes (single-point charts above the curves).
        `experiment=False` leaves out the experiment summary, the list of columns, for a sweep's
        job: the sweep writes one for all its jobs (run/hparams.py), and TensorBoard reads only
        one.
        """
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        super().log_hyperparams(params)  # hparams.yaml (no summaries: no metrics given)
        if scalars:
            self.log_metrics(scalars, step)
        exp, start, end = hparams_summaries(params, metrics)
        writer = compat.event_file_writer(self.experiment)
        for summary in (exp, start, end) if experiment else (start, end):
            writer.add_summary(summary)
        self.save()

    @rank_zero_only
    def save(self) -> None:
        """What Lightning's save() does beyond the flush: hparams.yaml, when the hparams change.

        (Lightning writes it once, at its first save, which comes before litforge logs the
        run's hyperparameters when training starts.)
        """
        if self.hparams and self.hparams != self.hparams_written and os.path.isdir(self.log_dir):
            save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)
            self.hparams_written = dict(self.hparams)
