"""Training throughput, start-up and sweep cost of litforge against the limit and common setups.

    python scripts/benchmark.py            (or: make bench)   -> prints and writes benchmark.md

Throughput: in one process, interleaved, with repeats and medians, the same MLP on the same
in-memory data is trained by
  limit      a plain eager loop over slices of pre-shuffled tensors (the most a loop can do)
  tutorial   the tutorial loop over DataLoader(TensorDataset(x, y), shuffle=True)
  lightning  a vanilla Lightning setup like the templates people fork: DataLoader, per-step
             torchmetrics logging, TQDM progress bar, TensorBoard, checkpoints
  litforge   the objects `python -m litforge.train` builds (build.datamodule/module/trainer)
on synthetic 100,000 x 32 regression and digits classification, at batch 64 and 512.
Start-up: `python -c "import lightning"` against a 1-epoch `python -m litforge.train` run.
Sweep: an 8-job multirun, sequential and with `hydra/launcher=joblib` (2 workers), against the
jobs' own training time as each job's metrics.json reports it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "synthetic 100k×32 (regression)": [
        "experiment=synthetic",
        "data.n=100000",
        "data.num_features=32",
        "model.hidden_dims=[64,64]",
    ],
    "digits (classification)": ["data=digits", "model.hidden_dims=[64,64]"],
}


# ---------------------------------------------------------------- throughput: the four loops


def compose(overrides: list[str], output_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=[f"output_dir={output_dir}", *overrides])


def tensors(cfg):
    """The training split exactly as litforge prepares it (standardized float32 tensors)."""
    from litforge import build

    dm = build.datamodule(cfg)
    return dm, *dm.splits["train"]


def loss_fn(y):
    import torch.nn.functional as F

    return F.cross_entropy if not y.is_floating_point() else lambda out, t: F.mse_loss(out, t)


def fresh_net(dm, cfg):
    import torch

    from litforge.models import mlp

    torch.manual_seed(0)
    out = dm.num_classes if dm.task == "classification" else 1
    net = mlp(dm.num_features, out, list(cfg.model.hidden_dims))
    squeeze = dm.task == "regression"
    return net, squeeze


def run_limit(cfg, epochs: int) -> float:
    import torch

    dm, x, y = tensors(cfg)
    net, squeeze = fresh_net(dm, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    criterion, b, n = loss_fn(y), int(cfg.data.batch_size), len(x)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        xs, ys = x[order], y[order]  # pre-shuffled: the epoch's batches are slices
        for i in range(0, n, b):
            out = net(xs[i : i + b])
            loss = criterion(out.squeeze(-1) if squeeze else out, ys[i : i + b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epochs * n / (time.perf_counter() - start)


def run_tutorial(cfg, epochs: int) -> float:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    dm, x, y = tensors(cfg)
    net, squeeze = fresh_net(dm, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
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
    import torch
    import torchmetrics
    from torch.utils.data import DataLoader, TensorDataset

    dm, x, y = tensors(cfg)
    net, squeeze = fresh_net(dm, cfg)
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
            return torch.optim.Adam(self.parameters(), lr=1e-3)

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


def run_litforge(cfg, epochs: int) -> float:
    from litforge import build

    cfg.max_epochs = epochs
    datamodule = build.datamodule(cfg)
    module = build.module(cfg, datamodule)
    trainer = build.trainer(cfg)
    n = len(datamodule.splits["train"][0])
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return epochs * n / (time.perf_counter() - start)


LOOPS = {"limit": run_limit, "tutorial": run_tutorial}


def throughput(repeats: int, quick: bool) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    rows = []
    for workload, overrides in WORKLOADS.items():
        for batch in (64, 512):
            digits = "digits" in workload
            epochs = (30 if batch == 512 else 8) if digits else (2 if batch == 512 else 1)
            if quick:
                epochs = max(1, epochs // 4)
            samples: dict[str, list[float]] = {}
            for _ in range(repeats):  # interleaved: each repeat runs every variant once
                with tempfile.TemporaryDirectory() as tmp:
                    base = [
                        *overrides,
                        f"data.batch_size={batch}",
                        "early_stopping=none",
                    ]
                    cfg = compose(base, Path(tmp))
                    quiet = io.StringIO()  # progress bars and Lightning's logs
                    with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
                        for name in ("limit", "tutorial", "lightning", "litforge"):
                            if name == "litforge":  # composed afresh: build() mutates nothing
                                rate = run_litforge(compose(base, Path(tmp)), epochs)
                            elif name == "lightning":
                                rate = run_vanilla_lightning(cfg, epochs, Path(tmp))
                            else:
                                rate = LOOPS[name](cfg, epochs)
                            samples.setdefault(name, []).append(rate)
            medians = {name: statistics.median(v) for name, v in samples.items()}
            rows.append({"workload": workload, "batch": batch, "epochs": epochs, **medians})
            print(
                f"  {workload}, batch {batch}: "
                + ", ".join(f"{k} {v:,.0f}/s" for k, v in medians.items()),
                flush=True,
            )
    return rows


# ---------------------------------------------------------------- start-up and sweeps


def wall(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def startup(repeats: int) -> dict[str, float]:
    py = sys.executable
    times: dict[str, list[float]] = {"import lightning": [], "1-epoch litforge run": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            times["import lightning"].append(wall([py, "-c", "import lightning"], ROOT))
            times["1-epoch litforge run"].append(
                wall(
                    [
                        py,
                        "-m",
                        "litforge.train",
                        "data=wine",
                        "max_epochs=1",
                        f"hydra.run.dir={tmp}/run{i}",
                    ],
                    ROOT,
                )
            )
    return {name: statistics.median(v) for name, v in times.items()}


def sweep(extra: list[str]) -> dict[str, float]:
    """An 8-job sweep: its wall time and the sum of its jobs' own training times."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "litforge.train",
            "-m",
            "optimizer=sgd,adam",
            "accumulate_grad_batches=1,4",
            "precision=32,64",
            "data=wine",
            "max_epochs=5",
            f"hydra.sweep.dir={tmp}/sweep",
            *extra,
        ]
        total = wall(command, ROOT)
        jobs = [json.loads(p.read_text()) for p in Path(tmp, "sweep").glob("*/metrics.json")]
        assert len(jobs) == 8, f"{len(jobs)} jobs"
        return {"wall_s": total, "jobs_training_s": sum(j["wall_time_s"] for j in jobs)}


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


def report(rows, start, sweeps) -> str:
    lines = [
        f"Measured {datetime.date.today()} on {machine()}.",
        "",
        "| workload | batch | limit (samples/s) | tutorial | vanilla Lightning | litforge |"
        " litforge / limit | litforge / vanilla |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lim = r["limit"]
        lines.append(
            f"| {r['workload']} | {r['batch']} | {lim:,.0f} | {r['tutorial']:,.0f} "
            f"({r['tutorial'] / lim:.2f}×) | {r['lightning']:,.0f} ({r['lightning'] / lim:.2f}×) "
            f"| {r['litforge']:,.0f} | **{r['litforge'] / lim:.2f}×** "
            f"| {r['litforge'] / r['lightning']:.1f}× |"
        )
    if start:
        lines += ["", "| start-up (median wall time) | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v:.2f} |" for k, v in start.items()]
        lines.append(
            f"| litforge run − import lightning | "
            f"{start['1-epoch litforge run'] - start['import lightning']:.2f} |"
        )
    if sweeps:
        lines += [
            "",
            "| 8-job sweep | wall (s) | jobs' own training (s) | overhead per job (s) |",
            "| --- | --- | --- | --- |",
        ]
        for name, s in sweeps.items():
            lines.append(
                f"| {name} | {s['wall_s']:.1f} | {s['jobs_training_s']:.1f} | "
                f"{(s['wall_s'] - s['jobs_training_s']) / 8:.2f} |"
            )
        if len(sweeps) == 2:
            seq, par = sweeps.values()
            lines.append(
                f"\njoblib (2 workers) / sequential wall time: {par['wall_s'] / seq['wall_s']:.2f}"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    parser.add_argument("--only", choices=["throughput", "startup", "sweep"], default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmark.md")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    rows, start, sweeps = [], {}, {}
    if args.only in (None, "throughput"):
        print("throughput (median samples/s over interleaved repeats):", flush=True)
        rows = throughput(repeats, args.quick)
    if args.only in (None, "startup"):
        start = startup(repeats)
    if args.only in (None, "sweep"):
        sweeps["sequential (basic launcher)"] = sweep([])
        with contextlib.suppress(subprocess.CalledProcessError):
            sweeps["parallel (joblib, 2 workers)"] = sweep(
                ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
            )
    text = report(rows, start, sweeps)
    print(text)
    args.out.write_text(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
