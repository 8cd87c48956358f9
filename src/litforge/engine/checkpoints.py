"""Checkpoints: written whole by a rename, last.ckpt shared with best.ckpt when both hold the same
state, the run's config stored inside, and read back as data only (never code).

Two ~4 ms checkpoint writes an epoch were the largest cost of an epoch of the digits data, hence
the sharing; a checkpoint from elsewhere may name any Python callable in its stored config,
hence the allowlist."""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from litforge.errors import UserError


class Written(NamedTuple):
    path: str
    global_step: int


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file beside the checkpoint, then a rename over it.

    A reader sees the old file or the new one, never part of one, and every write makes a new
    file, so a hard link to the old one (LastCheckpoint) keeps the old content. Lightning's own
    writes through fsspec into a temporary file in /tmp, which a rename cannot move to another
    file system: it then copies into the existing file. URLs (s3://...) still go that way.
    """

    last_written: Written | None = None  # the latest file this IO wrote whole, and its step

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if "://" in str(path):
            self.last_written = None
            return super().save_checkpoint(checkpoint, path, storage_options)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        partial = partial_name(path)
        try:
            torch.save(checkpoint, partial)
            os.replace(partial, path)
        except BaseException as err:
            Path(partial).unlink(missing_ok=True)  # no half-written file is left behind
            check_space(Path(path), checkpoint_bytes(checkpoint), err)
            raise
        self.last_written = Written(str(path), int(checkpoint.get("global_step", -1)))


class LastCheckpoint(ModelCheckpoint):
    """last.ckpt at the end of every training epoch: the state `resume=` continues from.

    When best.ckpt was just written at this same step, nothing has trained since, so last.ckpt
    becomes a hard link to that file instead of a second copy of the same state. Written as usual
    where hard links are not possible, and under DDP. (A ModelCheckpoint, so Lightning runs it
    after the other callbacks of an epoch's end, best.ckpt's ModelCheckpoint included.)
    """

    saved_step = -1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # once an epoch, at its end

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or trainer.fast_dev_run
            or self.saved_step == trainer.global_step
        ):
            return
        self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        path = self.format_checkpoint_name({})
        written = getattr(trainer.strategy.checkpoint_io, "last_written", None)
        shared = (
            trainer.world_size == 1
            and written is not None
            and written.global_step == trainer.global_step
            and written.path != path
            and hard_link(written.path, path)
        )
        if not shared:
            trainer.save_checkpoint(path, weights_only=False)
        self.saved_step = trainer.global_step
        self.last_model_path = path


def checkpoint_bytes(checkpoint: Any) -> int:
    """The bytes of the tensors a checkpoint holds: about what torch.save writes."""
    if isinstance(checkpoint, torch.Tensor):
        return checkpoint.numel() * checkpoint.element_size()
    if isinstance(checkpoint, dict):
        return sum(checkpoint_bytes(v) for v in checkpoint.values())
    if isinstance(checkpoint, list | tuple):
        return sum(checkpoint_bytes(v) for v in checkpoint)
    return 0


def check_space(path: Path, needed: int, err: BaseException) -> None:
    """If a write of `needed` bytes to `path` failed for want of space, say so in one message."""
    free = shutil.disk_usage(path.parent).free
    full = isinstance(err, OSError) and err.errno == errno.ENOSPC
    if not full and free >= needed + 4096:  # not the disk: let the error speak for itself
        return
    raise UserError(
        f"the disk holding {path.parent} is full: {path.name} needs about {size(needed)} and "
        f"{size(free)} are free. Free some space (or write runs to another disk with "
        "hydra.run.dir=...), then continue with resume=<the run folder>."
    ) from err


def size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"


def remove_partial_files(folder: Path) -> list[Path]:
    """Half-written checkpoints a killed run left in `folder` (their writer is gone): removed."""
    removed = []
    for partial in folder.glob(".*.partial"):
        pid = partial.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


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


class ConfigInCheckpoint(Callback):
    """Stores the run's resolved config (plain dicts) in every checkpoint, for `litforge.eval`."""

    KEY = "litforge_config"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.KEY] = self.config


def load_checkpoint(path: Path, key: str = "ckpt_path") -> dict:
    """A checkpoint's contents, read as data only (`weights_only=True`: no code runs)."""
    if path.is_dir():
        raise UserError(
            f"{key}={str(path)!r} is a folder; pass a .ckpt file, e.g. "
            f"{key}={path / 'checkpoints' / 'best.ckpt'}."
        )
    if not path.is_file():
        raise UserError(
            f"{key}={str(path)!r} does not exist; pass a .ckpt file from a run's checkpoints/ "
            "folder, e.g. outputs/runs/<run>/checkpoints/best.ckpt."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:  # a pickled object: loading it would run its code
            raise UserError(
                f"{key}={str(path)!r} holds a Python object ({found.group(1)}), not only tensors "
                "and plain data; litforge reads checkpoints with torch.load(weights_only=True) and "
                "will not run code from a file. Pass a .ckpt written by litforge.train."
            ) from err
        raise UserError(
            f"{key}={str(path)!r} is not a readable checkpoint: the file is corrupt or not a "
            f"torch file ({type(err).__name__}); pass a .ckpt written by litforge.train."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(
            f"{key}={str(path)!r} has no model weights (no state_dict); pass a .ckpt written by "
            "litforge.train."
        )
    return checkpoint


def check_stored_targets(stored: dict, path: Path, allowed: dict[str, Any]) -> None:
    """A checkpoint's config is data: every `_target_` in it, however deep, must be one of
    `allowed` (the classes and functions litforge's own config groups name: text -> object).

    A target is refused unless its text is one of them, and even then it must resolve, without
    importing anything not yet imported, to the very same object. No prefix test: Hydra follows
    attributes through modules, so `torch.optim.sgd.torch.save` starts like an optimizer and is
    `torch.save`.
    """
    for where, target in plain_targets(stored):
        text = target if isinstance(target, str) else repr(target)
        if text not in allowed or resolve_imported(text) is not allowed[text]:
            raise UserError(
                f"{path} asks eval to build {where}._target_={text!r}, which is not one of the "
                f"{len(allowed)} classes and functions litforge's config groups (conf/) name; "
                "litforge.eval refuses it, as a checkpoint could name any Python function there. "
                "If that class is yours and you trust this file, name it in a config file of "
                "conf/ (e.g. conf/model/<name>.yaml) and evaluate again."
            )


def resolve_imported(path: str) -> Any:
    """The object `path` names, found through modules already imported only; None if it is not."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        found: Any = module
        for name in parts[cut:]:
            found = getattr(found, name, None)
            if found is None:
                return None
        return found
    return None


def plain_targets(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(where, `_target_`) in plain dicts and lists, however deep (instantiate recurses too)."""
    found = []
    if isinstance(value, dict):
        if "_target_" in value:
            found.append((path.rstrip("."), value["_target_"]))
        for key, item in value.items():
            found += plain_targets(item, f"{path}{key}.")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += plain_targets(item, f"{path}{index}.")
    return found
