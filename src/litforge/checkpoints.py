"""How checkpoints reach the disk: renamed into place whole, and last.ckpt shared with best.ckpt
when both hold the same state. Both matter when epochs are short: two ~4 ms checkpoint writes an
epoch were the largest cost of an epoch of the digits data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file beside the checkpoint, then a rename over it.

    A reader sees the old file or the new one, never part of one, and every write makes a new
    file, so a hard link to the old one (LastCheckpoint) keeps the old content. Lightning's own
    writes through fsspec into a temporary file in /tmp, which a rename cannot move to another
    file system: it then copies into the existing file. URLs (s3://...) still go that way.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        partial = partial_name(path)
        try:
            torch.save(checkpoint, partial)
            os.replace(partial, path)
        finally:
            Path(partial).unlink(missing_ok=True)  # gone after the rename, unless it failed


class LastCheckpoint(ModelCheckpoint):
    """last.ckpt at the end of every epoch: the state `resume=` continues from.

    When another ModelCheckpoint (best.ckpt) has just saved at this same step, nothing has
    trained since, so last.ckpt becomes a hard link to that file instead of a second copy of the
    same state. Written as usual where hard links are not possible, and under DDP.
    """

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        # only where every write makes a new file: an IO that writes into the existing file
        # would write the next last.ckpt into best.ckpt's file too
        atomic = isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
        if trainer.world_size == 1 and atomic:
            for other in trainer.checkpoint_callbacks:
                saved = getattr(other, "_last_checkpoint_saved", None)
                same_step = getattr(other, "_last_global_step_saved", -1) == trainer.global_step
                if other is not self and saved and same_step and hard_link(saved, filepath):
                    self._last_global_step_saved = trainer.global_step
                    self._last_checkpoint_saved = filepath
                    return
        super()._save_checkpoint(trainer, filepath)


def hard_link(source: str, target: str) -> bool:
    """Make `target` another name of `source`'s file, replacing it whole; False if impossible."""
    partial = partial_name(target)
    try:
        os.link(source, partial)
    except OSError:  # no hard links on this file system, or another one
        return False
    os.replace(partial, target)
    return True


def partial_name(path) -> Path:
    """A hidden name beside `path` for a file being written (`last*.ckpt` globs skip it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.partial")
