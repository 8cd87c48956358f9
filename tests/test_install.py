"""What pyproject.toml promises matches what is tested: every dependency's range admits the
version constraints.txt pins (the one every install here uses)."""

import tomllib

from packaging.requirements import Requirement

from conftest import ROOT


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            found[name.lower().replace("_", "-")] = version
    return found


def test_every_dependency_range_admits_its_pinned_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [
        Requirement(r) for group in project["optional-dependencies"].values() for r in group
    ]
    pinned = pins()
    outside = [
        f"{r} (pinned {pinned.get(r.name.lower())})"
        for r in requirements
        if r.name.lower() not in pinned or not r.specifier.contains(pinned[r.name.lower()])
    ]
    assert outside == []
    # no open-ended range: each stops before a release series nobody tested
    assert [r for r in requirements if not any(s.operator == "<" for s in r.specifier)] == []
    assert project["requires-python"] == ">=3.11"
