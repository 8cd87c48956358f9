"""Every `python -m litforge...` command in README.md runs as shown (shortened by debug=fast)."""

import re
import shlex

import pytest

from conftest import ROOT, cli

pytestmark = pytest.mark.slow

# sweeps that tests/test_sweeps.py runs as shown, and checks what they write
IN_TEST_SWEEPS = (
    "optimizer=sgd,adam seed=0,1",
    "hydra/launcher=joblib",
    "hydra/launcher=submitit_local",
    "hparams_search=optuna",
    "litforge.summary",
)
COMMANDS = [
    line.split("#")[0].strip()
    for line in (ROOT / "README.md").read_text().splitlines()
    if line.startswith("python -m litforge") and not any(part in line for part in IN_TEST_SWEEPS)
]


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 8


# `make test ARGS="-k WORD"`: the tests a README line points to
SELECTIONS = re.findall(r'make test ARGS="-k (\w+)"', (ROOT / "README.md").read_text())
TEST_NAMES = [
    name
    for path in (ROOT / "tests").glob("test_*.py")
    for name in re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE)
]


def test_every_test_selection_in_the_readme_selects_tests():
    assert len(SELECTIONS) >= 8
    assert [word for word in SELECTIONS if not any(word in name for name in TEST_NAMES)] == []


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, tmp_path):
    args = shlex.split(command)[1:]
    if any("<run>" in a for a in args):  # needs a real run where the README says <run>
        run = tmp_path / "trained"
        result = cli("-m", "litforge.train", "debug=fast", f"hydra.run.dir={run}")
        assert result.returncode == 0, result.stderr[-3000:]
        args = [re.sub(r"outputs/runs/<run>", str(run), a) for a in args]
        if "litforge.eval" in args:
            args.append(f"hydra.run.dir={tmp_path / 'eval'}")
        else:  # resuming writes into the run's own folder
            args.append("debug=fast")
    elif "--help" not in args and "--cfg" not in args:
        args += [
            "debug=fast",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ]
    rows = "\n".join(f"{i},{i % 5},{3 * i + 2}" for i in range(50))
    (tmp_path / "my.csv").write_text("size,rooms,price\n" + rows)  # for the CSV example
    result = cli(*args, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, (command, result.stderr[-3000:])
