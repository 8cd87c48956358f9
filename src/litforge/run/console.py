"""What a run says on the console: what it trains at its start, and at its end why it stopped,
its best epoch, where its files are, and its test metrics (4 significant digits)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


def model_line(module: Any) -> str:
    """`ClassificationModule: 50,826 parameters (all trainable)`."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    share = "all trainable" if trainable == total else f"{trainable:,} trainable"
    return f"model: {type(module).__name__}, {total:,} parameters ({share})"


def why_stopped(record: dict[str, Any], cfg: DictConfig) -> str:
    """The reason training ended, in words, from metrics.json's `stopped_by`."""
    stop, epochs, monitor = record["stopped_by"], record["epochs"], record["monitor"]
    best = record.get("best") or {}
    early = cfg.get("early_stopping") or {}
    if stop == "early_stopping":
        if early.get("min_delta"):  # small gains do not count: the best may be the last epoch
            return (
                f"early stopping after epoch {epochs - 1}: {monitor} improved by less than "
                f"early_stopping.min_delta={early.get('min_delta')} in each of the last "
                f"{early.get('patience')} epochs"
            )
        return (
            f"early stopping after epoch {epochs - 1}: {monitor} did not improve for "
            f"{early.get('patience')} epochs after its best, at epoch {best.get('epoch')}"
        )
    if stop == "threshold":
        return (
            f"{monitor} went under early_stopping.stopping_threshold="
            f"{early.get('stopping_threshold')} at epoch {epochs - 1}"
        )
    if stop == "max_epochs":
        return f"max_epochs={cfg.get('max_epochs')} reached ({record['global_step']:,} steps)"
    if stop == "pruning":
        return f"pruned by the search after epoch {epochs - 1}: {monitor} was not promising"
    if stop == "divergence":
        return f"divergence: {record.get('error')}"
    if stop == "interrupt":
        return f"interrupted in epoch {epochs}, after {record['global_step']:,} steps"
    return f"an error: {record.get('error')}"


def end_block(record: dict[str, Any], cfg: DictConfig, run_dir: Path) -> str:
    """The few lines that end a run: status and why, best epoch, files, test metrics."""
    lines = [f"run {record['status']}: {why_stopped(record, cfg)}"]
    best = record.get("best") or {}
    if best:
        checkpoint = run_dir / best["checkpoint"] if best.get("checkpoint") else None
        where = f" -> {checkpoint}" if checkpoint else " (no checkpoint kept: callbacks=none)"
        lines.append(
            f"  best:    {record['monitor']} {best['value']:#.4g} at epoch {best['epoch']}{where}"
        )
    if record.get("test"):
        scored = ", ".join(f"{k} {v:#.4g}" for k, v in sorted(record["test"].items()))
        lines.append(f"  test:    {scored}")
    lines.append(f"  metrics: {run_dir / 'metrics.json'}")
    return "\n".join(lines)


def program() -> str:
    """How this process was started, as a user types it: `python -m litforge.train` or the
    console script's name."""
    package = __name__.split(".")[0]
    path = Path(sys.argv[0])
    if path.name == "train.py" and path.parent.name == package:
        return f"python -m {package}.train"
    return path.name


def resume_command(run_dir: Path) -> str:
    """The command that continues a stopped run in its folder."""
    relative = os.path.relpath(run_dir)
    run = relative if not relative.startswith("..") else str(Path(run_dir).resolve())
    return f"{program()} {shlex.quote(f'resume={run}')}"
