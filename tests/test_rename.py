"""`make rename NAME=...` leaves a working project under the new name."""

import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def copy_repo(target):
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def test_rename_gives_a_project_whose_tests_pass(tmp_path):
    project = tmp_path / "project"
    copy_repo(project)
    result = subprocess.run(
        ["make", "rename", "NAME=my_project"], cwd=project, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (project / "src" / "my_project" / "train.py").is_file()
    assert not (project / "src" / "litforge").exists()
    leftovers = [p for p in project.rglob("*") if p.is_file() and "litforge" in p.read_text()]
    assert leftovers == []
    assert 'name = "my_project"' in (project / "pyproject.toml").read_text()
    assert (
        "_target_: my_project.data.SklearnDataModule"
        in (project / "conf/data/digits.yaml").read_text()
    )

    # a venv that sees this one's installed dependencies (no reinstall of torch), then the
    # renamed project's own `make test` on the tests that touch every import and config target
    # (all of conf/ composed and instantiated, real fits, eval); the whole suite takes minutes
    subprocess.run(["python3", "-m", "venv", str(project / ".venv")], check=True)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = project / ".venv" / "lib" / py / "site-packages"
    (site / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run(
        [
            "make",
            "test",
            "ARGS=-m 'not slow' -x -q -p no:cacheprovider -n 1 "
            "tests/test_config.py tests/test_train.py tests/test_data.py tests/test_models.py",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
