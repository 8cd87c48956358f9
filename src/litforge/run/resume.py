"""Continuing a run: the checkpoint it loads, the config it runs, and whether that checkpoint
fits what this config builds. The folder it writes into: folders.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litforge.errors import UserError
from litforge.rules import shown
from litforge.run.folders import is_run

log = logging.getLogger("litforge")
NOT_CARRIED = ("resume", "ckpt_path")  # the run's own overrides, less these, are reapplied


def key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def overrides(run: Path, new: list[str]) -> list[str]:
    """The run's own overrides, then this command's (which win): the config to continue it with."""
    if not is_run(run):
        raise UserError(
            f"resume={run} is not a run folder (it has no .hydra/overrides.yaml); give the folder "
            "of a run, e.g. resume=outputs/runs/<run>."
        )
    saved = run / ".hydra" / "overrides.yaml"
    replaced = {key(o) for o in new} | set(NOT_CARRIED)
    return [o for o in OmegaConf.load(saved) if key(o) not in replaced] + list(new)


def warn_if_other_overrides(run: Path, new: list[str]) -> None:
    """`ckpt_path=<run>/checkpoints/...` continues the run with this command's config: say so if
    it is not the run's own (its .hydra/ keeps the run's, which `resume=<run>` composes)."""
    saved = [
        o for o in OmegaConf.load(run / ".hydra" / "overrides.yaml") if key(o) not in NOT_CARRIED
    ]
    mine = [o for o in new if key(o) not in NOT_CARRIED]
    if saved == mine:
        return
    dropped, added = [o for o in saved if o not in mine], [o for o in mine if o not in saved]
    log.warning(
        "ckpt_path= continues %s with this command's overrides, which differ from the run's own: "
        "%s%s. Its .hydra/ keeps the run's own; resume=%s continues it with those.",
        run,
        f"without {' '.join(dropped)}" if dropped else "",
        f"{'; ' if dropped else ''}with {' '.join(added)}" if added else "",
        run,
    )


def config(run: Path, new: list[str]) -> tuple[DictConfig, list[str], dict[str, str]]:
    """The run's config composed again from its overrides and these; and the group choices."""
    from hydra import compose

    merged = overrides(run, new)
    cfg = compose("train", overrides=merged, return_hydra_config=True)
    return cfg, merged, dict(cfg.hydra.runtime.choices)


def last_checkpoint(run: Path) -> Path:
    """The newest checkpoints/last*.ckpt of a run folder."""
    found = sorted(run.glob("checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(
            f"resume={run} has no checkpoints/last.ckpt to continue from (a run writes it at the "
            "end of its first epoch); start the run again without resume=."
        )
    return found[-1]


def checkpoint_step(ckpt_path: str | Path) -> int:
    """The optimizer steps a checkpoint had taken: where a resumed run's logging continues."""
    import torch

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    return int(checkpoint["global_step"])


def check_resume(path: Path, module: Any, now: dict) -> None:
    """Resuming restores weights and optimizer state: both must fit what this config builds.

    `now` is this run's resolved config (build.resolved).
    """
    from litforge.engine.checkpoints import ConfigInCheckpoint, load_checkpoint

    checkpoint = load_checkpoint(path)
    stored = checkpoint.get(ConfigInCheckpoint.KEY) or {}
    theirs, ours = checkpoint["state_dict"], module.state_dict()
    shapes = [
        f"{name} is {list(theirs[name].shape)} in the checkpoint and {list(ours[name].shape)} now"
        for name in ours
        if name in theirs and theirs[name].shape != ours[name].shape
    ]
    shapes += [f"{name} is missing from the checkpoint" for name in ours if name not in theirs]
    shapes += [f"{name} is not in this model" for name in theirs if name not in ours]
    if shapes:
        more = f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else ""
        raise UserError(
            f"ckpt_path={str(path)!r} holds a different model than this config builds: "
            f"{shapes[0]}{more}.{settings_of(stored, now, ('model', 'data'))} Resume with the "
            "model and data settings of that run, or leave out ckpt_path to start afresh."
        )
    before = (stored.get("optimizer") or {}).get("_target_")
    after = (now.get("optimizer") or {}).get("_target_")
    if before and before != after:  # Lightning would fail at the first step (e.g. KeyError)
        raise UserError(
            f"ckpt_path={str(path)!r} was trained with optimizer {before} and this run builds "
            f"{after}; resuming restores the optimizer's state, which only the same optimizer "
            "can use. Resume with the optimizer of that run, or leave out ckpt_path to start "
            "afresh."
        )


def settings_of(stored: dict, now: dict, groups: tuple[str, ...]) -> str:
    """' The checkpoint was written with model.hidden_dims=[8] (now [64, 64]).' or ''."""
    changed = [
        f"{group}.{key}={shown(value)} (now {shown((now.get(group) or {}).get(key))})"
        for group in groups
        for key, value in (stored.get(group) or {}).items()
        if (now.get(group) or {}).get(key) != value
    ]
    return f" The checkpoint was written with {', '.join(changed)}." if changed else ""
