"""Each private upstream attribute litforge touches (engine/compat.py), against the installed
Lightning, torchmetrics, TensorBoard and Hydra: an upgrade that moves one fails here, by name."""

import ast
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from conftest import CONF, ROOT, build_and_fit, make_cfg
from litforge.engine import compat
from litforge.engine.module import RunningMean

WINE = ("data=wine", "max_epochs=2", "callbacks=none", "logger=none", "early_stopping=none")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Fits of 2 epochs x 4 batches: (Lightning's own loop, the fast path)."""
    tmp = tmp_path_factory.mktemp("fits")
    return build_and_fit(tmp, *WINE, "steps_per_call=1")[2], build_and_fit(tmp, *WINE)[2]


def test_optimizer_step_counters_are_what_global_step_reads(fitted):
    own, fast = fitted
    automatic, manual = compat.optimizer_step_counters(own)
    assert (automatic.completed, manual.completed) == (8, 0) and own.global_step == 8
    automatic, manual = compat.optimizer_step_counters(fast)
    assert (automatic.completed, manual.completed) == (0, 8) and fast.global_step == 8


def test_a_counted_manual_step_is_a_global_step(fitted):
    _, fast = fitted
    before = fast.global_step
    compat.count_manual_optimizer_step(fast)
    assert fast.global_step == before + 1
    compat.optimizer_step_counters(fast)[1].completed = before  # as it was


def test_the_logging_step_is_what_lightning_saves_in_checkpoints(fitted):
    own, _ = fitted
    loop = own.fit_loop.epoch_loop
    saved = loop.on_save_checkpoint()["_batches_that_stepped"]
    assert compat.logging_step(own) == saved == 8  # 2 epochs of 4 steps
    compat.set_logging_step(own, 123)
    assert loop.on_save_checkpoint()["_batches_that_stepped"] == 123
    assert compat.logging_step(own) == 123
    compat.set_logging_step(own, saved)


def test_skipping_the_next_validation_sets_lightnings_flag(fitted):
    own, _ = fitted
    loop = own.fit_loop.epoch_loop
    assert loop._skip_next_val is False
    compat.skip_next_validation(own)
    assert loop._skip_next_val is True
    loop._skip_next_val = False


def test_batches_done_this_epoch_counts_the_epochs_batches(fitted):
    own, fast = fitted
    assert compat.batches_done_this_epoch(own) == 4  # 124 wines in batches of 32
    assert compat.batches_done_this_epoch(fast) == 1  # one chunk of 4 batches


def test_a_checkpoint_that_saves_between_epochs_is_seen():
    assert not compat.saves_every_n_train_steps(ModelCheckpoint())
    assert compat.saves_every_n_train_steps(ModelCheckpoint(every_n_train_steps=5))
    assert compat.saves_every_n_train_steps(ModelCheckpoint(train_time_interval=timedelta(1)))


def test_a_metric_marked_updated_counts_one_update_and_computes_afresh():
    mean = RunningMean()
    mean.update(torch.tensor(2.0), 1)
    assert float(mean.compute()) == 2.0  # cached now
    mean.total.add_(4.0)
    mean.weight.add_(1)
    compat.mark_metric_updated(mean)
    assert mean.update_count == 2 and float(mean.compute()) == 3.0  # not the cached 2.0


def test_the_event_file_writer_takes_a_summary_of_several_values(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    values = [Summary.Value(tag=tag, simple_value=v) for tag, v in (("a", 1.0), ("b", 2.0))]
    compat.event_file_writer(writer).add_summary(Summary(value=values), 7)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("b")] == [(7, 2.0)]


def test_a_loggers_prefix_goes_in_front_of_the_names(tmp_path):
    logger = TensorBoardLogger(str(tmp_path), prefix="fit")
    assert compat.logger_prefixed(logger, {"val/loss": 1.0}) == {"fit-val/loss": 1.0}


def test_precision_values_are_lightnings():
    accepted, aliases = compat.precision_values()
    assert {32, 64, "32", "bf16", "bf16-mixed", "16-mixed", "64-true"} <= set(accepted)
    assert aliases["bf16"] == "bf16-mixed" and aliases["32"] == "32-true"


def test_locate_finds_what_instantiate_would():
    assert compat.locate("torch.optim.SGD") is torch.optim.SGD
    with pytest.raises(ImportError):
        compat.locate("torch.optim.NoSuchOptimizer")


def test_sweep_jobs_expand_as_hydras_basic_sweeper():
    parsed = OverridesParser.create().parse_overrides(["a=1,2", "b=x"])
    assert compat.sweep_jobs(parsed) == [["a=1", "b=x"], ["a=2", "b=x"]]


def test_the_config_loader_composes_sweep_jobs_through_a_stand_in(tmp_path):
    master = make_cfg(tmp_path)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        own = compat.own_compose_sweep_job(loader)
        calls = []
        compat.compose_sweep_job_with(loader, lambda cfg, job: calls.append(job) or own(cfg, job))
        cfg = loader.load_sweep_config(master, ["optimizer=sgd"])
    assert calls == [["optimizer=sgd"]] and cfg.optimizer._target_ == "torch.optim.SGD"


# public names that start with an underscore: os._exit, namedtuple's _replace, _asdict, _fields
PUBLIC = {"_exit", "_replace", "_asdict", "_fields", "_target_"}


def private_touches(path: Path) -> list[str]:
    """`x._name` attribute reads and `from m._x import` / `m._x` imports of other packages."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own and not node.attr.startswith("__") and node.attr not in PUBLIC:
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            if any(part.startswith("_") for part in node.module.split(".")):
                found.append(f"{path.name}:{node.lineno} from {node.module}")
            found += [
                f"{path.name}:{node.lineno} import {alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not node.module.startswith("litforge")
            ]
    return found


def test_compat_is_the_only_module_that_touches_private_upstream_attributes():
    sources = [p for p in (ROOT / "src").rglob("*.py") if p.name != "compat.py"]
    assert [touch for path in sources for touch in private_touches(path)] == []


def test_an_argument_left_out_of_wandb_init(tmp_path):
    from litforge.engine.trackers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path), project="litforge")
    assert "anonymous" not in logger._wandb_init  # dropped by compat.drop_wandb_init_argument
    assert logger._wandb_init["project"] == "litforge"
    assert logger._wandb_init["dir"] == str(tmp_path)  # what wandb.init gets, as it was
