"""python -m litforge.eval ckpt_path=PATH: test a checkpoint on the test split it was trained for.

The checkpoint carries its run's resolved config: data, split, model and precision are rebuilt
from it, so the test metrics are those of the run.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from litforge import CONF
from litforge.run import folders


def run_config(ckpt_path: Path) -> DictConfig:
    """The resolved config stored in the checkpoint by the run that wrote it."""
    from litforge.engine.checkpoints import (
        ConfigInCheckpoint,
        check_stored_targets,
        load_checkpoint,
    )
    from litforge.errors import UserError

    checkpoint = load_checkpoint(ckpt_path)  # weights_only: never runs code found in a file
    if ConfigInCheckpoint.KEY not in checkpoint:
        raise UserError(
            f"{ckpt_path} has no litforge config inside; pass a checkpoint written by "
            "litforge.train."
        )
    stored = checkpoint[ConfigInCheckpoint.KEY]
    check_stored_targets(stored, ckpt_path, config_targets())  # eval instantiates them
    return OmegaConf.create(stored)


def config_targets() -> dict[str, object]:
    """Every `_target_` the config groups of conf/ name (Hydra's own settings aside): text ->
    the object it names. What a checkpoint's stored config may ask eval to build."""
    import yaml

    from litforge.engine import compat
    from litforge.engine.checkpoints import plain_targets

    found = {}
    for path in sorted(CONF.rglob("*.yaml")):
        if path.relative_to(CONF).parts[0] == "hydra":
            continue
        config = yaml.safe_load(path.read_text()) or {}
        config.pop("hydra", None)
        for _, target in plain_targets(config):
            if isinstance(target, str) and target not in found:
                found[target] = compat.locate(target)
    return found


def evaluate(ckpt_path: Path, output_dir: Path, accelerator: str = "cpu") -> dict[str, float]:
    """Rebuild the run's data and model from its config, restore the weights, test them."""
    from litforge import build

    cfg = run_config(ckpt_path)
    cfg.output_dir = str(output_dir)
    # one process on `accelerator`, whatever the run used (a DDP run's metrics were already
    # reduced over all processes, so a single one reproduces them)
    cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.strategy = accelerator, 1, "auto"
    cfg.trainer.num_nodes = 1
    cfg.callbacks, cfg.early_stopping, cfg.logger = {}, {}, {}
    cfg.trainer.pop("profiler", None)  # it writes files where the stored config says
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    trainer = build.trainer(cfg, with_logger=False)
    with warnings.catch_warnings():  # testing needs none of the training callbacks it names
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint.*")
        (test,) = trainer.test(
            module,
            datamodule=datamodule,
            ckpt_path=str(ckpt_path),
            weights_only=True,
            verbose=False,
        )
    return {name: float(value) for name, value in test.items()}


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="eval")
def main(cfg: DictConfig) -> None:
    import torch

    from litforge.errors import UserError

    torch.set_num_threads(1)
    output_dir = Path(cfg.output_dir)
    try:
        if OmegaConf.is_missing(cfg, "ckpt_path"):
            raise UserError(
                "ckpt_path must be given; python -m litforge.eval "
                "ckpt_path=outputs/runs/<run>/checkpoints/best.ckpt"
            )
        ckpt_path = checkpoint_in(Path(cfg.ckpt_path))
        test = evaluate(ckpt_path, output_dir, cfg.accelerator)
    except UserError as err:
        folders.discard_if_new(output_dir)  # nothing was evaluated: no folder for it
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"litforge: error: {err}", file=sys.stderr)
        sys.exit(2)
    result = {"ckpt_path": str(ckpt_path), "test": test}
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    scored = ", ".join(f"{k} {v:#.4g}" for k, v in sorted(test.items()))
    print(f"litforge: {ckpt_path} on the test split: {scored}")
    print(f"  metrics: {output_dir / 'metrics.json'}")


def checkpoint_in(path: Path) -> Path:
    """The checkpoint a path names: the file, or a run folder's best.ckpt."""
    from litforge.errors import UserError

    if not path.is_dir():
        return path
    for candidate in (path / "checkpoints" / "best.ckpt", path / "best.ckpt"):
        if candidate.is_file():
            return candidate
    found = sorted(str(p.relative_to(path)) for p in path.rglob("*.ckpt"))
    holds = f"it holds {', '.join(found[:5])}" if found else "it holds no .ckpt file"
    raise UserError(
        f"ckpt_path={path} is a folder without checkpoints/best.ckpt ({holds}); give one of its "
        "checkpoints, e.g. ckpt_path=<run>/checkpoints/last.ckpt."
    )


if __name__ == "__main__":
    main()
