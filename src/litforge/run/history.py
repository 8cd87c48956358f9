"""The per-epoch story of a run, for metrics.json and the sweep summary, kept in checkpoints."""

from __future__ import annotations

import json
import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class EpochHistory(Callback):
    """Records the epoch's training and validation metrics at the end of each training epoch:
    `train/loss` and `val/*` for litforge's modules; `train...` and `val...` names (step values
    aside) and the monitored metric for any other."""

    def __init__(self, monitor: str = "val/loss", mode: str = "min") -> None:
        self.monitor, self.mode = monitor, mode
        self.rows: list[dict[str, float]] = []
        self.encoded: list[str] = []  # rows[i] as JSON, made once: checkpoints hold the text

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for name, value in trainer.callback_metrics.items():
            epoch_value = name.startswith(("train", "val")) and not name.endswith("_step")
            if (epoch_value or name == self.monitor) and value.numel() == 1:
                row[name] = float(value)
        self.rows.append(row)

    def best(self) -> dict[str, float] | None:
        """The row of the best monitored value (the first, on ties), as ModelCheckpoint keeps."""
        scored = [r for r in self.rows if math.isfinite(r.get(self.monitor, math.nan))]
        if not scored:
            return None
        pick = min if self.mode == "min" else max
        return pick(scored, key=lambda r: r[self.monitor])

    def columns(self) -> dict[str, list[float]]:
        """The history as columns: {"epoch": [...], "val/loss": [...], ...}."""
        names = dict.fromkeys(name for row in self.rows for name in row)
        return {name: [row.get(name, math.nan) for row in self.rows] for name in names}

    def state_dict(self) -> dict[str, Any]:
        # one string, not rows of floats: pickling thousands of small objects into every
        # checkpoint grew with the epochs (~2 ms a checkpoint after 100). JSON keeps every
        # float's exact value, NaN and infinity included.
        del self.encoded[len(self.rows) :]
        self.encoded += [json.dumps(row) for row in self.rows[len(self.encoded) :]]
        return {"rows_json": f"[{','.join(self.encoded)}]"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        rows = state_dict.get("rows")  # checkpoints written before rows_json
        self.rows = list(rows) if rows is not None else json.loads(state_dict["rows_json"])
        self.encoded = []
