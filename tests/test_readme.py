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


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, tmp_path):
    args = shlex.split(command)[1:]
    if "litforge.eval" in args:  # needs a real checkpoint where the README says <run>
        run = tmp_path / "trained"
        assert cli("-m", "litforge.train", "debug=fast", f"hydra.run.dir={run}").returncode == 0
        args = [re.sub(r"outputs/runs/<run>", str(run), a) for a in args]
        args.append(f"hydra.run.dir={tmp_path / 'eval'}")
    elif "--help" not in args and "--cfg" not in args:
        args += [
            "debug=fast",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ]
    result = cli(*args, timeout=900)
    assert result.returncode == 0, (command, result.stderr[-3000:])
