"""`make rename NAME=...` leaves a project whose commands work under the new name: checked on the
renamed tree itself (its package, every config option, a CLI run and eval, an Optuna search)."""

import json
import subprocess
import sys
import sysconfig

import pytest

from conftest import copy_repo

pytestmark = pytest.mark.slow

# what the renamed project runs to check itself: every option of every group composes, and
# every _target_ it names imports from the new package (or torch, lightning)
COMPOSE_EVERY_OPTION = """
import sys
from pathlib import Path
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf
import my_project.run.folders as folders

folders.register_resolvers()
conf = Path(sys.argv[1])
groups = [p for p in conf.iterdir() if p.is_dir() and p.name != "hydra"]
targets = set()
with initialize_config_dir(str(conf), version_base="1.3"):
    for group in groups:
        for option in sorted(group.glob("*.yaml")):
            cfg = compose("train", overrides=[f"{group.name}={option.stem}"])
            container = OmegaConf.to_container(cfg)
            stack = [container]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    if "_target_" in node:
                        targets.add(node["_target_"])
                    stack += list(node.values())
                elif isinstance(node, list):
                    stack += node
for target in sorted(targets):
    module = get_object(target).__module__
    assert not module.startswith("litforge"), (target, module)
print(len(targets), "targets,", sum(1 for g in groups for _ in g.glob("*.yaml")), "options")
"""


def run(args, cwd, timeout=600):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
    return result


def test_rename_gives_a_project_that_works_under_its_new_name(tmp_path):
    project = tmp_path / "project"
    copy_repo(project)
    license_before = (project / "LICENSE").read_text()
    run(["make", "rename", "NAME=my_project"], cwd=project)

    # the tree: the package and the sweeper plugin renamed, no trace of the old name, LICENSE kept
    assert (project / "src" / "my_project" / "engine" / "compat.py").is_file()
    assert (project / "src" / "hydra_plugins" / "my_project_sweeper" / "__init__.py").is_file()
    assert not (project / "src" / "litforge").exists()
    assert not (project / "src" / "hydra_plugins" / "litforge_sweeper").exists()
    assert (project / "LICENSE").read_text() == license_before
    leftovers = [
        str(p.relative_to(project))
        for p in project.rglob("*")
        if p.is_file() and p.name != "LICENSE" and "litforge" in p.read_text(errors="replace")
    ]
    assert leftovers == []
    assert 'name = "my_project"' in (project / "pyproject.toml").read_text()

    # installed editable into a venv that sees this one's dependencies (no torch download)
    subprocess.run([sys.executable, "-m", "venv", str(project / ".venv")], check=True)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = project / ".venv" / "lib" / py / "site-packages"
    (site / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(project / ".venv" / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", "."], cwd=project)
    run([python, "-c", "import my_project.engine, hydra_plugins.my_project_sweeper"], cwd=project)
    printed = run([python, "-c", COMPOSE_EVERY_OPTION, str(project / "conf")], cwd=project)
    assert " targets, " in printed.stdout

    # a run through the command line, then eval of its best checkpoint
    runs = tmp_path / "runs"
    train = [python, "-m", "my_project.train"]
    run([*train, "data=wine", "max_epochs=2", f"hydra.run.dir={runs / 'one'}"], cwd=project)
    metrics = json.loads((runs / "one" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["global_step"] == 8
    best = runs / "one" / "checkpoints" / "best.ckpt"
    evaluated = runs / "eval"
    run(
        [python, "-m", "my_project.eval", f"ckpt_path={best}", f"hydra.run.dir={evaluated}"],
        project,
    )
    assert json.loads((evaluated / "metrics.json").read_text())["test"] == metrics["test"]

    # a two-trial Optuna search through the renamed sweeper plugin
    search = tmp_path / "search"
    run(
        [*train, "-m", "hparams_search=optuna", "data=wine", "max_epochs=2",
         "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={search}"],
        cwd=project,
    )  # fmt: skip
    trials = sorted(search.glob("*/metrics.json"))
    assert len(trials) == 2
    assert {json.loads(t.read_text())["status"] for t in trials} == {"completed"}
    assert (search / "optuna.db").is_file() and (search / "summary.md").is_file()
