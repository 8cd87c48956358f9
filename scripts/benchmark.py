"""Training throughput, start-up and sweep cost of litforge against the limit and common setups.

    python scripts/benchmark.py            (or: make bench)

prints the tables, writes them to outputs/benchmark.md and puts them in README.md (between the
`<!-- benchmark -->` markers), with the date, the machine and its load.

Throughput: in one process, interleaved (each repeat runs every loop once, in a rotating order),
the same MLP ([64, 64], Adam) on the same standardized in-memory training split is trained by
  limit      a plain eager loop over slices of pre-shuffled tensors (the most a loop can do)
  tutorial   the tutorial loop over DataLoader(TensorDataset(x, y), shuffle=True)
  lightning  a vanilla Lightning setup like the templates people fork: DataLoader, per-step
             torchmetrics logging, TQDM progress bar, TensorBoard, a checkpoint every epoch
  litforge   the objects `python -m litforge.train` builds (build.datamodule/module/trainer),
             validation, best.ckpt and last.ckpt, TensorBoard and progress bar included
on synthetic 100,000 x 32 regression and digits classification, at batch 64 and 512.
samples/s = epochs x training samples / wall time of the whole fit. Ratios are medians of each
repeat's ratio (runs made moments apart), so a machine busy with other work biases them less.
Breakdown: on digits at batch 64 and synthetic at batch 512, litforge's epoch with one part
added at a time (validation, TensorBoard, checkpoints, progress bar), against the limit loop's.
Start-up: `python -c "import lightning"` against a 1-epoch `python -m litforge.train` run, and
what --help, --cfg job and a config error take.
Sweep: README's 8-job sweep (`make sweep`), sequential and with `hydra/launcher=joblib` (2
workers), against the jobs' own time as each job's metrics.json reports it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["model.hidden_dims=[64,64]", "optimizer=adam", "early_stopping=none"]
WORKLOADS = {
    "synthetic 100k×32 (regression)": [
        "data=synthetic",
        "model=regression",
        "data.n=100000",
        "data.num_features=32",
        *COMMON,
    ],
    "digits (classification)": ["data=digits", "model=classification", *COMMON],
}
# epochs per measurement: about half a second of the limit loop each
EPOCHS = {("synthetic", 64): 1, ("synthetic", 512): 4, ("digits", 64): 50, ("digits", 512): 150}
LOOPS = ("limit", "tutorial", "lightning", "litforge")
SWEEP = ["optimizer=sgd,adam", "accumulate_grad_batches=1,4", "precision=32,64", "device=cpu"]


# ---------------------------------------------------------------- throughput: the four loops


def compose(overrides: list[str], output_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from litforge.run import folders

    folders.register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=[f"output_dir={output_dir}", *overrides])


def prepared(cfg):
    """The data module and its training split, exactly as litforge prepares them."""
    from litforge import build

    dm = build.datamodule(cfg)
    return dm, *dm.splits["train"]


def loss_fn(y):
    import torch.nn.functional as F

    return F.cross_entropy if not y.is_floating_point() else F.mse_loss


def net_and_optimizer(dm, cfg):
    """litforge's MLP with fresh weights, and the configured optimizer on it."""
    import torch
    from hydra.utils import instantiate

    from litforge.models import mlp

    torch.manual_seed(0)
    out = dm.num_classes if dm.task == "classification" else 1
    net = mlp(dm.num_features, out, list(cfg.model.hidden_dims))
    return net, instantiate(cfg.optimizer)(net.parameters()), dm.task == "regression"


def run_limit(cfg, epochs: int, output_dir: Path) -> float:
    import torch

    dm, x, y = prepared(cfg)
    net, opt, squeeze = net_and_optimizer(dm, cfg)
    criterion, b, n = loss_fn(y), int(cfg.data.batch_size), len(x)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        # pre-shuffled (index_select is the fastest gather: x[order] takes ~5x as long on a
        # CPU), so the epoch's batches are slices
        xs, ys = x.index_select(0, order), y.index_select(0, order)
        for i in range(0, n, b):
            out = net(xs[i : i + b])
            loss = criterion(out.squeeze(-1) if squeeze else out, ys[i : i + b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epochs * n / (time.perf_counter() - start)


def run_tutorial(cfg, epochs: int, output_dir: Path) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    dm, x, y = prepared(cfg)
    net, opt, squeeze = net_and_optimizer(dm, cfg)
    criterion = loss_fn(y)
    loader = DataLoader(TensorDataset(x, y), batch_size=int(cfg.data.batch_size), shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            out = net(xb)
            loss = criterion(out.squeeze(-1) if squeeze else out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return epochs * len(x) / (time.perf_counter() - start)


def run_vanilla_lightning(cfg, epochs: int, output_dir: Path) -> float:
    import lightning as L
    import torchmetrics
    from torch.utils.data import DataLoader, TensorDataset

    dm, x, y = prepared(cfg)
    net, opt, squeeze = net_and_optimizer(dm, cfg)
    classification = not y.is_floating_point()

    class Vanilla(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net
            self.metric = (
                torchmetrics.Accuracy("multiclass", num_classes=dm.num_classes)
                if classification
                else torchmetrics.MeanSquaredError()
            )

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            out = self.net(xb)
            out = out.squeeze(-1) if squeeze else out
            loss = loss_fn(yb)(out, yb)
            self.metric(out, yb)
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/metric", self.metric, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return opt

    loader = DataLoader(TensorDataset(x, y), batch_size=int(cfg.data.batch_size), shuffle=True)
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=L.pytorch.loggers.TensorBoardLogger(output_dir, name="vanilla"),
        default_root_dir=output_dir,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(Vanilla(), loader)
    return epochs * len(x) / (time.perf_counter() - start)


def run_litforge(cfg, epochs: int, output_dir: Path) -> float:
    from litforge import build

    cfg.max_epochs = epochs
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    trainer = build.trainer(cfg)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return epochs * len(datamodule.splits["train"][0]) / (time.perf_counter() - start)


RUNNERS = {
    "limit": run_limit,
    "tutorial": run_tutorial,
    "lightning": run_vanilla_lightning,
    "litforge": run_litforge,
}


def rotated(names, repeat: int) -> list:
    """`names` in the order of this repeat: each goes first in turn."""
    names = list(names)
    return names[repeat % len(names) :] + names[: repeat % len(names)]


def timed(runner, overrides: list[str], epochs: int) -> float:
    """samples/s of one run, its config composed afresh (run_litforge sets max_epochs), with
    progress bars and Lightning's logs kept off the screen."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(overrides, Path(tmp))
        quiet = io.StringIO()
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            return runner(cfg, epochs, Path(tmp))


def quiet_lightning() -> None:
    """Lightning's console lines would interleave with the results."""
    import logging

    from litforge import build

    build.quiet_lightning()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def throughput(repeats: int, quick: bool) -> list[dict]:
    import lightning as L
    import torch

    quiet_lightning()
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    rows = []
    for workload, overrides in WORKLOADS.items():
        for batch in (64, 512):
            epochs = EPOCHS[(workload.split()[0], batch)]
            epochs = max(1, epochs // 5) if quick else epochs
            rates: dict[str, list[float]] = {name: [] for name in LOOPS}
            for repeat in range(repeats + 1):  # the first round warms up and is not counted
                for name in rotated(LOOPS, repeat):
                    batch_overrides = [*overrides, f"data.batch_size={batch}"]
                    rate = timed(RUNNERS[name], batch_overrides, epochs if repeat else 1)
                    if repeat:
                        rates[name].append(rate)
            ratios = {
                name: statistics.median(r / lim for r, lim in zip(v, rates["limit"], strict=True))
                for name, v in rates.items()
            }
            medians = {name: statistics.median(v) for name, v in rates.items()}
            row = {"workload": workload, "batch": batch, "epochs": epochs}
            rows.append(row | {"rate": medians, "ratio": ratios})
            print(
                f"  {workload}, batch {batch}, {epochs} epochs: "
                + ", ".join(f"{k} {v:,.0f}/s ({ratios[k]:.2f}×)" for k, v in medians.items()),
                flush=True,
            )
    return rows


# what litforge does in an epoch beyond training, added one part at a time (digits, batch 64)
NO_VALIDATION = "trainer.check_val_every_n_epoch=1000000"
PARTS = {
    "training alone (fast path, no validation, no callbacks, no logger)": [
        "callbacks=none",
        "logger=none",
        NO_VALIDATION,
    ],
    "+ validation every epoch (Lightning's evaluation loop, torchmetrics)": [
        "callbacks=none",
        "logger=none",
    ],
    "+ TensorBoard logging": ["callbacks=none"],
    "+ best.ckpt and last.ckpt": [
        "~callbacks.lr_monitor",
        "~callbacks.progress_bar",
        "~callbacks.test_figures",
        "+trainer.enable_progress_bar=false",
    ],
    "+ progress bar and learning-rate monitor (litforge's default)": [],
}


# the two workloads whose targets litforge misses, each at the batch size it misses most at
BREAKDOWNS = (("digits (classification)", 64), ("synthetic 100k×32 (regression)", 512))


def breakdown(repeats: int, quick: bool) -> list[dict]:
    """Per workload of BREAKDOWNS: median ms per epoch of the limit loop and of litforge with
    each part added (interleaved, repeats as for throughput)."""
    import torch

    quiet_lightning()
    torch.set_num_threads(1)
    found = []
    for workload, batch in BREAKDOWNS:
        epochs = max(1, EPOCHS[(workload.split()[0], batch)] // (5 if quick else 1))
        base = [*WORKLOADS[workload], f"data.batch_size={batch}"]
        with tempfile.TemporaryDirectory() as tmp:
            _, x, _ = prepared(compose(base, Path(tmp)))
        n_train, steps = len(x), math.ceil(len(x) / batch)
        names = ["limit loop", *PARTS]
        ms: dict[str, list[float]] = {name: [] for name in names}
        for repeat in range(repeats + 1):  # the first round warms up and is not counted
            for name in rotated(names, repeat):
                runner = run_limit if name == "limit loop" else run_litforge
                rate = timed(runner, [*base, *PARTS.get(name, [])], epochs)
                if repeat:
                    ms[name].append(1000 * n_train / rate)
        name = workload.split(" (")[0]
        title = f"{name}, batch {batch}: {n_train:,} training rows, {steps} steps"
        found.append({"title": title, "ms": {k: statistics.median(v) for k, v in ms.items()}})
        print(f"  breakdown {title}: done", flush=True)
    return found


# ---------------------------------------------------------------- start-up and sweeps


def wall(command: list[str], expect: int = 0) -> float:
    """Seconds `command` takes; it must exit with `expect` (a failing run is not a fast one)."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != expect:
        shown = " ".join(command)
        raise SystemExit(f"{shown} exited {done.returncode}, not {expect}:\n{done.stderr[-2000:]}")
    return seconds


def startup(repeats: int) -> dict[str, float]:
    py = sys.executable
    train = [py, "-m", "litforge.train"]
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            'python -c "import lightning"': [py, "-c", "import lightning"],
            "python -m litforge.train max_epochs=1": [*train, "max_epochs=1"],
            "python -m litforge.train --help": [*train, "--help"],
            "python -m litforge.train --cfg job": [*train, "--cfg", "job"],
            "python -m litforge.train max_epochs=abc (a config error)": [*train, "max_epochs=abc"],
        }
        for i in range(repeats):  # interleaved
            for j, (name, command) in enumerate(commands.items()):
                run_dir = f"hydra.run.dir={tmp}/run{i}_{j}"
                expect = 2 if "config error" in name else 0
                seconds = wall([*command, run_dir] if command[1] == "-m" else command, expect)
                times.setdefault(name, []).append(seconds)
    return {name: statistics.median(v) for name, v in times.items()}


def joblib_available() -> bool:
    return importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None


def sweep(extra: list[str], jobs: list[str] = SWEEP) -> dict[str, float]:
    """A sweep's wall time and the sum of its jobs' own times (metrics.json's wall_time_s)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "litforge.train", "-m", *jobs]
        total = wall([*command, f"hydra.sweep.dir={tmp}/sweep", *extra])
        metrics = [json.loads(p.read_text()) for p in Path(tmp, "sweep").glob("*/metrics.json")]
        return {
            "wall_s": total,
            "jobs_s": sum(m["wall_time_s"] for m in metrics),
            "n": len(metrics),
        }


def sweeps(repeats: int) -> dict[str, dict[str, float]]:
    """Sequential and joblib sweeps (interleaved, medians), and a one-job sweep for start-up."""
    variants = {"sequential (basic launcher)": []}
    if joblib_available():
        variants["parallel (joblib, 2 workers)"] = [
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ]
    found: dict[str, list[dict]] = {name: [] for name in [*variants, "one job"]}
    for _ in range(repeats):
        for name, extra in variants.items():
            found[name].append(sweep(extra))
        found["one job"].append(sweep([], [s.split(",")[0] for s in SWEEP]))
    return {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in found.items()
    }


# ---------------------------------------------------------------- report


def machine() -> str:
    import lightning
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, lightning {lightning.__version__}, 1 torch thread"
    )


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def report(rows, start, swept, header: str, parts: list[dict] | None = None) -> str:
    lines = [header, ""]
    if rows:
        lines += [
            "| workload | batch | epochs | limit (samples/s) | tutorial DataLoader "
            "| vanilla Lightning | litforge | litforge / vanilla |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            rate, ratio = r["rate"], r["ratio"]
            cells = [f"{rate[n]:,.0f} ({ratio[n]:.2f}×)" for n in ("tutorial", "lightning")]
            lines.append(
                f"| {r['workload']} | {r['batch']} | {r['epochs']} | {rate['limit']:,.0f} "
                f"| {' | '.join(cells)} | {rate['litforge']:,.0f} (**{ratio['litforge']:.2f}×**) "
                f"| {ratio['litforge'] / ratio['lightning']:.1f}× |"
            )
        lines.append("\nIn brackets: samples/s as a fraction of the limit loop's.")
    for part in parts or []:
        lines += [
            "",
            f"Where an epoch's time goes ({part['title']}; median ms per epoch, each row "
            "adds one part to the row above):",
            "",
            "| run | ms per epoch | added | fraction of the limit's speed |",
            "| --- | --- | --- | --- |",
        ]
        previous, limit = None, part["ms"]["limit loop"]
        for name, ms in part["ms"].items():
            added = "" if previous is None else f"{ms - previous:+.2f}"
            lines.append(f"| {name} | {ms:.2f} | {added} | {limit / ms:.2f}× |")
            previous = ms
    if start:
        lines += ["", "| start-up and exit (median wall time) | seconds |", "| --- | --- |"]
        lines += [f"| `{k}` | {v:.2f} |" for k, v in start.items()]
        run, bare = (
            start["python -m litforge.train max_epochs=1"],
            start['python -c "import lightning"'],
        )
        lines.append(f"| 1-epoch run − `import lightning` | {run - bare:+.2f} |")
    if swept:
        one = swept.pop("one job")
        start_s = one["wall_s"] - one["jobs_s"]  # the process's start-up and exit, once a sweep
        lines += [
            "",
            f"`make sweep`: 8 jobs ({' '.join(SWEEP)}, digits, up to 50 epochs with early "
            f"stopping). Start-up and exit of the process that runs a sweep, measured with a "
            f"one-job sweep: {start_s:.2f} s.",
            "",
            "| 8-job sweep | wall (s) | jobs' own time (s) | overhead per job, start-up "
            "included (s) | overhead per job beyond start-up (s) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, s in swept.items():
            extra = s["wall_s"] - s["jobs_s"]
            per_job = [f"{extra / s['n']:.2f}", f"{(extra - start_s) / s['n']:.2f}"]
            if name.startswith("parallel"):  # jobs overlap: wall - their sum is no overhead
                per_job = ["(jobs overlap)", "(jobs overlap)"]
            lines.append(
                f"| {name} | {s['wall_s']:.1f} | {s['jobs_s']:.1f} | {' | '.join(per_job)} |"
            )
        if len(swept) == 2:
            seq, par = swept.values()
            ratio = par["wall_s"] / seq["wall_s"]
            lines.append(f"\njoblib (2 workers) / sequential wall time: **{ratio:.2f}**")
        else:
            lines.append("\n(joblib row skipped: hydra-joblib-launcher is not installed)")
    return "\n".join(lines) + "\n"


MARKERS = ("<!-- benchmark -->", "<!-- /benchmark -->")


def update_readme(text: str, readme: Path = ROOT / "README.md") -> bool:
    """Put `text` between README's benchmark markers; False if README has no markers."""
    old = readme.read_text()
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.DOTALL)
    if not pattern.search(old):
        return False
    readme.write_text(pattern.sub(lambda _: f"{MARKERS[0]}\n{text}{MARKERS[1]}", old))
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    parser.add_argument(
        "--only", choices=["throughput", "breakdown", "startup", "sweep"], default=None
    )
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark.md")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md as it is")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    started, load_before = time.perf_counter(), load()
    rows, parts, start, swept = [], [], {}, {}
    if args.only in (None, "throughput"):
        print("throughput (median samples/s over interleaved repeats):", flush=True)
        rows = throughput(repeats, args.quick)
    if args.only in (None, "breakdown"):
        parts = breakdown(repeats, args.quick)
    if args.only in (None, "startup"):
        start = startup(repeats)
    if args.only in (None, "sweep"):
        swept = sweeps(max(1, repeats // 2))
    minutes = (time.perf_counter() - started) / 60
    header = (
        f"Measured {datetime.date.today()} by `make bench` ({minutes:.0f} min) on {machine()}; "
        f"load average (1, 5, 15 min) {load_before} before, {load()} after."
    )
    text = report(rows, start, swept, header, parts)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")
    if args.only is None and not args.quick and not args.no_readme and update_readme(text):
        print("and to README.md")


if __name__ == "__main__":
    main()
