"""python -m litforge.train [overrides]: build, fit, test the best checkpoint, metrics.json."""

from __future__ import annotations

import atexit
import gc
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, open_dict

from litforge import CONF, checks
from litforge.errors import Diverged, UserError
from litforge.run import console, folders, resume, sweep
from litforge.run.record import RunRecord, final_metrics, hparams, is_rank_zero, log_hparams

if TYPE_CHECKING:
    import lightning as L

log = logging.getLogger("litforge")
folders.register_resolvers()  # conf/train.yaml names the run folder with them


def fit_and_test(
    datamodule: L.LightningDataModule,
    module: L.LightningModule,
    trainer: L.Trainer,
    record: RunRecord,
    ckpt_path: str | None = None,
) -> RunRecord:
    """Fit (resuming from `ckpt_path` if given), then test the best checkpoint on the test split.

    Without a checkpoint callback the final weights are tested.
    """
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    # read the fit now: testing best.ckpt rewinds the callbacks' state to that epoch
    record.update_from(trainer)
    missing = [
        f"{type(owner).__name__}.{name}"
        for name, owner in (("test_step", module), ("test_dataloader", datamodule))
        if not is_overridden(name, owner)
    ]
    if missing:
        log.warning(
            "no test: %s is not defined, so best.ckpt is not scored on a test split "
            "(metrics.json's `test` stays empty); define it to score one.",
            " and ".join(missing),
        )
        return record
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    # verbose=False: litforge prints the test metrics to 4 digits when the run ends
    (test,) = trainer.test(
        module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False
    )
    record.data["test"] = {name: float(value) for name, value in test.items()}
    return record


def is_overridden(name: str, owner) -> bool:
    """`owner` (a LightningModule or LightningDataModule) defines hook `name` itself."""
    import lightning as L

    base = L.LightningModule if isinstance(owner, L.LightningModule) else L.LightningDataModule
    return getattr(type(owner), name, None) is not getattr(base, name, None)


def train(
    cfg: DictConfig,
    overrides: list[str] = (),
    choices: dict[str, str] = None,
    record_early_failure: bool = True,
    held_log: folders.HeldLog | None = None,
) -> RunRecord:
    """Everything `python -m litforge.train` does once Hydra has composed `cfg`.

    metrics.json is written on every way out once training has started (completed, failed or
    interrupted). A failure before that (a mistake in the config, the data or the checkpoint to
    resume) writes it only with `record_early_failure`, as a sweep job needs for its summary: a
    single run leaves the run folder as it was, and a run it resumes unchanged (`held_log`
    keeps its train.log as it was until then).
    """
    record = RunRecord(Path(cfg.output_dir), cfg.monitor, list(overrides))
    freeze_at_exit()  # sweep workers run this function without importing this module
    trainer = module = params = None
    try:
        checks.check_config(cfg)  # before any data is loaded: the mistakes a config can show
        import lightning as L
        import torch

        from litforge import build
        from litforge.engine.callbacks import AtTrainStart
        from litforge.engine.checkpoints import remove_partial_files
        from litforge.engine.pruning import trial_pruning

        record.start_clock()
        torch.set_num_threads(cfg.threads)
        ckpt_path = cfg.ckpt_path
        if cfg.resume and not ckpt_path:
            ckpt_path = str(resume.last_checkpoint(Path(cfg.resume)))
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build.datamodule(cfg)
        module = build.module(cfg, datamodule)
        log.info(console.model_line(module))
        if ckpt_path is not None:
            resume.check_resume(Path(ckpt_path), module, build.resolved(cfg))
            # what a killed run was writing when it died
            remove_partial_files(Path(cfg.output_dir) / "checkpoints")
        trainer = build.trainer(cfg, ckpt_path=ckpt_path, purge_step=cfg.get("purge_step"))
        params = hparams(cfg, choices or {}, list(overrides))

        def started(trainer: L.Trainer) -> None:  # the checkpoint is restored: now it writes
            record.training_began = True
            record.reserve()
            if held_log is not None:
                held_log.release()
            for logger in trainer.loggers:  # hparams.yaml; HParams come with the metrics
                logger.log_hyperparams(params)
                logger.save()

        trainer.callbacks.append(AtTrainStart(started))
        pruning = trial_pruning(cfg)  # a trial of an Optuna search with a pruner
        if pruning is not None:
            trainer.callbacks.append(pruning)
        fit_and_test(datamodule, module, trainer, record, ckpt_path)
        if pruning is not None and pruning.pruned_epoch is not None:
            record.finish("pruned", stopped_by="pruning")
        else:
            record.finish("completed")
    except (SystemExit, KeyboardInterrupt):  # a signal (GracefulStop), or Ctrl-C in testing
        if trainer is not None and not record.fitted:
            record.update_from(trainer)
        record.finish("interrupted", error="interrupted by the user", stopped_by="interrupt")
        raise
    except Diverged as err:  # raised at the step the loss went bad; earlier checkpoints remain
        close_progress_bar(trainer)
        record.update_from(trainer)
        record.finish("failed", error=str(err), stopped_by="divergence")
        raise
    except BaseException as err:
        close_progress_bar(trainer)
        if trainer is not None and not record.fitted:
            record.update_from(trainer)
        record.finish("failed", error=error_text(err), stopped_by="error")
        raise
    finally:
        # a run that completed without a step to take (a resume past its max_epochs) counts
        began = record.training_began or record.data["status"] == "completed"
        if held_log is not None:
            held_log.release() if began else held_log.discard()
        if began or record_early_failure:
            record.write()
        if began and record.data["status"] != "interrupted":
            # an interrupted run gets its HParams entry when it is resumed and finishes; a
            # sweep's job leaves the HParams columns to its sweep (run/hparams.py)
            from litforge.engine.trackers import sweep_name

            final = final_metrics(record, test_metric_names(module, record))
            in_sweep = sweep_name() is not None
            log_hparams(trainer, params, final, in_sweep, status=record.data["status"])
        if began and is_rank_zero():
            log.info(console.end_block(record.data, cfg, record.path.parent))
    return record


def test_metric_names(module: L.LightningModule | None, record: RunRecord) -> list[str]:
    """The test metrics a run reports: what it scored, or what a litforge module would have
    scored (NaN), so every job of a sweep has the same HParams columns."""
    names = list(record.data["test"])
    test_metrics = getattr(module, "test_metrics", None)
    if not names and test_metrics is not None:
        names = ["test/loss", *test_metrics.keys()]
    return names


def freeze_at_exit() -> None:
    """Skip the garbage collection of the interpreter's teardown (~1 s with torch loaded).

    At exit the interpreter frees the millions of objects torch and lightning make, collecting
    garbage as it goes. Everything is written by then; gc.freeze() first skips the collections.
    """
    atexit.unregister(gc.freeze)  # registered once, however often this is called
    atexit.register(gc.freeze)


def close_progress_bar(trainer: L.Trainer | None) -> None:
    """End the progress bar's line, so the error message that follows starts on its own."""
    bar = getattr(trainer, "progress_bar_callback", None)
    try:
        bar.train_progress_bar.close()
    except (AttributeError, TypeError):  # no progress bar, or training never started
        pass


def error_text(err: BaseException) -> str:
    return str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg: DictConfig) -> float | None:
    # heavy imports (torch, lightning) only once the config's values are checked, in train(),
    # so --help, --cfg and mistaken values answer at once
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    # SIGTERM (SLURM's notice before preemption) ends a run as Ctrl-C does: metrics.json says
    # interrupted. During training GracefulStop first finishes the optimizer step and saves.
    before = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    hydra_cfg = HydraConfig.get()
    overrides, choices = list(hydra_cfg.overrides.task), dict(hydra_cfg.runtime.choices)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    held = None
    try:
        if cfg.resume:  # continue the run with its own config: its overrides, then these
            cfg, overrides, choices = resume.config(Path(cfg.resume), overrides)
            held = folders.HeldLog(Path(cfg.output_dir))
        elif folders.own_run(cfg.ckpt_path):
            held = folders.HeldLog(Path(cfg.output_dir))
            resume.warn_if_other_overrides(folders.own_run(cfg.ckpt_path), overrides)
        if multirun:
            earlier = sweep.earlier_job(Path(cfg.output_dir), overrides)
            if earlier is not None and earlier.status in ("completed", "pruned"):
                log.info("kept: this job %s in an earlier run of this sweep", earlier.status)
                return earlier.best
            cfg = continue_job(cfg, earlier)
        record = train(cfg, overrides, choices, record_early_failure=multirun, held_log=held)
    except Exception as err:
        if held is not None:
            held.discard()
        if multirun:
            return job_failed(err)
        if isinstance(err, UserError):
            discard_if_new(cfg)
            raise_or_exit(err)
        raise
    except SystemExit as stop:
        if multirun and sweep.in_worker():  # a joblib or submitit worker the sweep is stopping
            logging.shutdown()  # metrics.json is written; end now, not at the next job
            os._exit(stop.code if isinstance(stop.code, int) else 1)
        if not multirun and (Path(cfg.output_dir) / "checkpoints").is_dir() and is_rank_zero():
            print(
                "litforge: stopped; continue this run with:\n  "
                + console.resume_command(Path(cfg.output_dir)),
                file=sys.stderr,
            )
        raise
    finally:
        signal.signal(signal.SIGTERM, before)
    # what sweepers minimize; None, not NaN, is what Hydra's Optuna sweeper records as a failure
    return record.best_value if math.isfinite(record.best_value) else None


def continue_job(cfg: DictConfig, earlier: sweep.EarlierJob | None) -> DictConfig:
    """A job an earlier run of its sweep interrupted resumes from its last.ckpt; one that failed
    or was killed before saving starts again, and TensorBoard drops what it logged."""
    if earlier is None:
        return cfg
    if earlier.last_checkpoint is not None and earlier.status != "failed":
        log.info(
            "resuming this job from %s (an earlier run of this sweep)", earlier.last_checkpoint
        )
        cfg.ckpt_path = str(earlier.last_checkpoint)
    else:
        log.info("running this job again (an earlier run of this sweep left it %s)", earlier.status)
        with open_dict(cfg):
            cfg.purge_step = 0
    return cfg


def discard_if_new(cfg: DictConfig) -> None:
    """A single run that failed before training leaves no folder: its message is on the console.

    A resumed run's folder is never touched (nor one holding anything but Hydra's files).
    """
    if not cfg.get("resume") and not folders.own_run(cfg.get("ckpt_path")):
        folders.discard_if_new(Path(str(cfg.output_dir)))


def job_failed(err: Exception) -> None:
    """A sweep goes on past a failed job: its metrics.json says why, the sweep summary tells."""
    from litforge.errors import UserError

    # a user's mistake is its message; a bug or a crash also gets its traceback (in train.log)
    traceback = None if isinstance(err, UserError) else err
    log.error("this job failed, the sweep goes on: %s", error_text(err), exc_info=traceback)
    return None


def raise_or_exit(err: Exception) -> None:
    """A user's mistake ends a single run with its message and exit code 2, no traceback.

    HYDRA_FULL_ERROR=1 shows the traceback, as it does for Hydra's own errors.
    """
    import os

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    if is_rank_zero():  # under DDP every process gets here; one message is enough
        print(f"litforge: error: {err}", file=sys.stderr)
    sys.exit(2)


# spellings from other templates, each answered after Hydra's "Could not find ..." message
HABITS = {
    "trainer=gpu": "device=gpu",
    "trainer=cpu": "device=cpu",
    "trainer=mps": "device=mps",
    "trainer=ddp": "device=ddp",
    "trainer=ddp_sim": "device=ddp_cpu",
    "debug=fdr": "debug=fast (2 epochs of at most 5 batches), or trainer.fast_dev_run=true",
    "debug=default": "debug=fast",
    "debug=limit": "debug=fast",
    "logger=many_loggers": "logger=[tensorboard,csv]",
}


def cli() -> None:
    """`python -m litforge.train` and `litforge-train`: main(), and after Hydra's own message
    for an unknown option a pointer to litforge's spelling of a familiar one."""
    try:
        main()
    except SystemExit as stop:
        habits = [arg for arg in sys.argv[1:] if arg in HABITS]
        if stop.code == 1 and habits:
            for arg in habits:
                print(f"litforge: {arg} is spelled {HABITS[arg]} here.", file=sys.stderr)
        raise


freeze_at_exit()  # this process's own exit, also when its jobs run elsewhere (joblib)

if __name__ == "__main__":
    cli()
