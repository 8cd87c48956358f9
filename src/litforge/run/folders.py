"""Where a run writes: a folder named by its time and overrides (a sweep job's by its number and
the keys that vary in its sweep), capped below the file system's 255 bytes; a resumed run's own.

Imported by train.py before Hydra composes (no torch here): conf/train.yaml computes
`hydra.run.dir`, `hydra.sweep.subdir` and `hydra.output_subdir` with the resolvers below.
"""

from __future__ import annotations

import hashlib
import logging
import logging.handlers
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

MAX_NAME_BYTES = 200  # a folder name stays under ext4's and APFS's 255 bytes, with room to spare


def name(*parts: str) -> str:
    """The parts that are not empty, joined by `_`, `/` made `-`, at most MAX_NAME_BYTES long.

    A longer name keeps its start and ends in `~` and a hash of the whole: still unique, still
    readable. The full overrides stay in the folder's .hydra/overrides.yaml.
    """
    text = "_".join(str(part) for part in parts if str(part)).replace("/", "-")
    data = text.encode()
    if len(data) <= MAX_NAME_BYTES:
        return text
    digest = hashlib.sha1(data).hexdigest()[:8]
    start = data[: MAX_NAME_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{start}~{digest}"


def is_run(run: Path) -> bool:
    return (run / ".hydra" / "overrides.yaml").is_file()


def own_run(ckpt_path: str | None) -> Path | None:
    """The run folder a checkpoint belongs to (`<run>/checkpoints/x.ckpt`), if it is one."""
    if ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        run = Path(ckpt_path).parent.parent
        return run if is_run(run) else None
    return None


def run_dir(new: str, *, _root_: DictConfig) -> str:
    """A resumed run writes into its own folder: `resume`, or the run a checkpoint belongs to."""
    resume, ckpt_path = _root_.get("resume"), _root_.get("ckpt_path")
    if resume and is_run(Path(resume)):  # if not, main() says so, from a new folder
        return str(resume)
    return str(own_run(ckpt_path) or new)


def hydra_subdir(*, _root_: DictConfig) -> str | None:
    """A resumed run keeps its .hydra/ as it was: its overrides are what the run is made of, and
    `resume=` composes them again."""
    resume, ckpt_path = _root_.get("resume"), _root_.get("ckpt_path")
    if (resume and is_run(Path(resume))) or own_run(ckpt_path):
        return None
    return ".hydra"


def register_resolvers() -> None:
    """Make ${litforge.name:...}, ${litforge.run_dir:...} and ${litforge.hydra_subdir:} usable in
    conf/train.yaml."""
    OmegaConf.register_new_resolver("litforge.name", name, replace=True)
    OmegaConf.register_new_resolver("litforge.run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("litforge.hydra_subdir", hydra_subdir, replace=True)


def discard_if_new(folder: Path) -> None:
    """Remove a folder this process made that holds only Hydra's .hydra/ and its job's log."""
    if folder.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


class HeldLog:
    """Holds back what a resumed run writes into its folder until training starts: the log lines
    for a file there (Hydra's train.log) are held, and files it creates before then (Lightning
    opens TensorBoard's event file when it sets up) are noted. A resume refused before training
    starts then leaves the run's folder as it was. The console shows every line at once."""

    def __init__(self, folder: Path) -> None:
        self.swaps: list[tuple[logging.Logger, logging.Handler, logging.Handler]] = []
        folder = Path(folder).resolve()
        self.folder, self.files = folder, set(folder.rglob("*"))
        for logger in (logging.getLogger(), *logging.Logger.manager.loggerDict.values()):
            if not isinstance(logger, logging.Logger):
                continue
            for handler in list(logger.handlers):
                target = getattr(handler, "baseFilename", None)
                if target and Path(target).resolve().parent == folder:
                    # capacity: a few thousand lines; flushLevel above CRITICAL: only release()
                    held = logging.handlers.MemoryHandler(10_000, logging.CRITICAL + 1, handler)
                    held.setLevel(handler.level)
                    held.setFormatter(handler.formatter)
                    logger.removeHandler(handler)
                    logger.addHandler(held)
                    self.swaps.append((logger, held, handler))

    def release(self) -> None:
        """Training started: write what was held, and log to the file directly from now on."""
        for logger, held, handler in self.swaps:
            held.flush()
            logger.removeHandler(held)
            logger.addHandler(handler)
        self.swaps = []

    def discard(self) -> None:
        """The run was refused: the log keeps what it had (the lines were on the console), and
        what the attempt created goes."""
        for logger, held, handler in self.swaps:
            held.buffer.clear()
            logger.removeHandler(held)
            logger.addHandler(handler)
        self.swaps = []
        created = set(self.folder.rglob("*")) - self.files
        for path in sorted(created, key=lambda p: len(p.parts), reverse=True):  # files first
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
