"""A sweep's HParams experiment (run/hparams.py): its columns, their order and their values."""

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from litforge.run import hparams

JOBS = [  # what four jobs of `optimizer=sgd,adam seed=0,1` write in hparams.yaml
    {"data": "wine", "optimizer": "sgd", "seed": 0, "optimizer.lr": 0.1, "max_epochs": 4,
     "logger": "tensorboard", "debug": "None", "model.hidden_dims": "[64, 64]"},
    {"data": "wine", "optimizer": "sgd", "seed": 1, "optimizer.lr": 0.1, "max_epochs": 4,
     "logger": "tensorboard", "debug": "None", "model.hidden_dims": "[64, 64]"},
    {"data": "wine", "optimizer": "adam", "seed": 0, "optimizer.lr": 0.001, "max_epochs": 4,
     "logger": "tensorboard", "debug": "fast", "model.hidden_dims": "[64, 64]"},
    {"data": "wine", "optimizer": "adam", "seed": 1, "optimizer.lr": 0.001, "max_epochs": 4,
     "logger": "tensorboard", "debug": "fast", "model.hidden_dims": "[64, 64]"},
]  # fmt: skip


def test_columns_are_the_swept_keys_then_the_knobs_that_differ():
    # data, max_epochs and hidden_dims never vary; debug varies but says how a job ran
    assert hparams.hparam_columns(JOBS, ["optimizer", "seed"]) == [
        "optimizer",
        "seed",
        "optimizer.lr",
    ]
    assert hparams.hparam_columns(JOBS, ["seed"]) == ["seed", "optimizer", "optimizer.lr"]


def test_a_columns_values_keep_one_type():
    assert hparams.domain([0, 1, 1]) == [0, 1]  # ints stay ints
    assert hparams.domain([0.1, 1]) == [0.1, 1.0]
    assert hparams.domain([True, False]) == [True, False]
    assert hparams.domain(["sgd", 2]) == ["sgd", "2"]


def test_many_sampled_numbers_filter_by_range_a_few_by_choice():
    from tensorboard.plugins.hparams import summary_v2 as hp

    rates = hparams.filter_domain(hp, [10 ** -(k / 4) for k in range(12)])  # 12 trials' lr
    assert isinstance(rates, hp.RealInterval)
    assert (rates.min_value, rates.max_value) == (10**-2.75, 1.0)
    assert isinstance(hparams.filter_domain(hp, list(range(12))), hp.IntInterval)
    assert hparams.filter_domain(hp, [1, 2, 4, 2]).values == [1, 2, 4]


def test_the_sweep_writes_one_experiment_into_its_first_jobs_run(tmp_path):
    jobs = []
    for number, params in enumerate(JOBS):
        job = tmp_path / f"{number}_optimizer={params['optimizer']},seed={params['seed']}"
        job.mkdir()
        (job / "hparams.yaml").write_text(yaml.safe_dump(params))
        jobs.append(job)
    tests = ["test/loss", "test/acc"]
    for _ in range(2):  # written again (a resumed sweep): replaced, not added
        path = hparams.write_experiment(tmp_path, jobs, ["optimizer", "seed"], "val/loss", tests)
    assert [p.parent for p in tmp_path.glob("*/events.out.tfevents.*")] == [jobs[0]]
    events = EventAccumulator(str(path.parent))
    events.Reload()
    content = events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    infos = {info.name: info for info in experiment.hparam_infos}
    assert list(infos) == ["optimizer", "seed", "optimizer.lr"]
    assert [info.differs for info in infos.values()] == [True, True, False]  # TB's order
    assert [v.string_value for v in infos["optimizer"].domain_discrete.values] == ["adam", "sgd"]
    assert [v.number_value for v in infos["seed"].domain_discrete.values] == [0, 1]
    metrics = [(m.name.tag, m.display_name) for m in experiment.metric_infos]
    assert metrics == [
        ("val/loss_best", "best val/loss"),
        ("test/loss", "test/loss"),
        ("test/acc", "test/acc"),
    ]


def test_no_experiment_without_hparams(tmp_path):
    job = tmp_path / "0_seed=0"
    job.mkdir()  # logger=none: no hparams.yaml
    assert hparams.write_experiment(tmp_path, [job], ["seed"], "val/loss", []) is None
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
