"""--help, --cfg job and a mistaken value answer before torch is imported (~0.4 s, not ~4 s);
scripts/benchmark.py times them."""

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

# runs `python -m litforge.train ARGS` and reports whether torch was ever imported
PROBE = """
import runpy, sys
sys.argv = ["litforge.train", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("litforge.train", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
print(f"torch imported: {'torch' in sys.modules}, exit code: {code}", file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--help"], 0),
        (["--cfg", "job"], 0),
        (["max_epochs=abc"], 2),
        (["optimizer.lr=-1"], 2),
        (["data.val_fraction=1.5"], 2),
    ],
)
def test_answers_without_importing_torch(tmp_path, args, code):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args, f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"torch imported: False, exit code: {code}" in result.stderr, result.stderr[-2000:]
    if code:  # a run that fails before training leaves no folder; the message is on the console
        assert "is not allowed" in result.stderr and not tmp_path.exists()
