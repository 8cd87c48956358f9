"""python -m litforge.eval ckpt_path=PATH: test a checkpoint on the test split it was trained for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


def run_config(ckpt_path: Path) -> DictConfig:
    """The composed config of the run that wrote `ckpt_path` (RUN/checkpoints/NAME.ckpt)."""
    from litforge.errors import UserError

    if not ckpt_path.is_file():
        raise UserError(
            f"ckpt_path={str(ckpt_path)!r} does not exist; pass a .ckpt file from a run's "
            "checkpoints/ folder, e.g. outputs/runs/<run>/checkpoints/best.ckpt."
        )
    saved = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise UserError(
            f"no run config at {saved}: evaluate a checkpoint inside the run folder that wrote "
            "it (RUN/checkpoints/*.ckpt beside RUN/.hydra/config.yaml)."
        )
    return OmegaConf.load(saved)


def evaluate(ckpt_path: Path, output_dir: Path) -> dict[str, float]:
    """Rebuild the run's data and model from its config, restore the weights, test them."""
    from litforge import build

    cfg = run_config(ckpt_path)
    cfg.output_dir = str(output_dir)
    cfg.callbacks, cfg.early_stopping, cfg.logger = {}, {}, {}
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    trainer = build.trainer(cfg, with_logger=False)
    (test,) = trainer.test(module, datamodule=datamodule, ckpt_path=str(ckpt_path), weights_only=True)
    return {name: float(value) for name, value in test.items()}


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    import torch

    from litforge.errors import UserError

    torch.set_num_threads(1)
    output_dir = Path(cfg.output_dir)
    try:
        test = evaluate(Path(cfg.ckpt_path), output_dir)
    except UserError as err:
        print(f"litforge: error: {err}", file=sys.stderr)
        sys.exit(2)
    result = {"ckpt_path": str(cfg.ckpt_path), "test": test}
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
