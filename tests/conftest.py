"""Compose the real config from conf/ and run the real pipeline, in-process."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import litforge
from litforge.engine import EveryBatch

ROOT = Path(litforge.__file__).resolve().parents[2]
CONF = ROOT / "conf"


def make_cfg(output_dir: Path, *overrides: str, config_name: str = "train") -> DictConfig:
    """The config `python -m litforge.train OVERRIDES` would run, writing into output_dir."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            config_name,
            overrides=[f"output_dir={output_dir}", *overrides],
            return_hydra_config=True,
        )


def run_train(output_dir: Path, *overrides: str):
    """Train as the CLI does (same function, same config) and return the RunRecord."""
    from litforge.train import train

    cfg = make_cfg(output_dir, *overrides)
    return train(cfg, list(overrides), dict(cfg.hydra.runtime.choices))


def build_and_fit(output_dir: Path, *overrides: str, ckpt_path: str | None = None) -> tuple:
    """Build and fit as train() does, without testing or metrics.json: (datamodule, module,
    trainer). Only what the config's callbacks and logger write is written."""
    import lightning as L
    import torch

    from litforge import build

    cfg = make_cfg(output_dir, *overrides)
    torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    trainer = build.trainer(cfg, ckpt_path=ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    return datamodule, module, trainer


def copy_repo(target: Path) -> None:
    """This checkout's files (what git would commit) into `target`: a scratch copy."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def cli(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real command line, as a user types it (for the few `slow` tests)."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


class SignalAt(EveryBatch):
    """Sends this process `signum` as batch `batch` of epoch `epoch` starts: a Ctrl-C on cue.

    Tests add it on the command line: `+callbacks.signal._target_=conftest.SignalAt ...`.
    An EveryBatch callback, so it fires at that batch inside a chunk on the fast path too.
    """

    def __init__(self, epoch: int, batch: int, signum: int) -> None:
        self.epoch, self.batch, self.signum = epoch, batch, signum

    def on_batch_start(self, trainer, pl_module, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            signal.raise_signal(self.signum)


def run_main(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """`python -m litforge.train ARGV` in this process, Hydra and all: (exit code, out, err)."""
    from hydra.core.global_hydra import GlobalHydra

    from litforge.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["litforge.train", *argv])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    finally:
        GlobalHydra.instance().clear()
    out, err = capsys.readouterr()
    return code, out, err
