"""Make this repo your own project: rename the package, its imports, config targets and docs.

    python scripts/rename.py my_project        (or: make rename NAME=my_project)

Renames src/<old>/ to src/<new>/ (and src/hydra_plugins/<old>_sweeper/ with it: Hydra finds the
sweeper by that name) and replaces the old name in every text file git would track (pyproject,
Makefile, conf/, src/, tests/, scripts/, README, CI), so every command and test works under the
new name. LICENSE is left as it is: its copyright line is the original authors'. The old name is
read from pyproject.toml, so the script can be run again later.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shutil
import sys
from pathlib import Path

SKIP_DIRS = {".git", ".venv", "outputs", "__pycache__", ".pytest_cache", ".ruff_cache", "build"}
TEXT_SUFFIXES = {".py", ".toml", ".yaml", ".yml", ".md", ".txt", ".cfg", ".ini", ".json", ""}


def current_name(root: Path) -> str:
    match = re.search(r'^name = "([^"]+)"', (root / "pyproject.toml").read_text(), re.MULTILINE)
    if not match:
        sys.exit('rename: pyproject.toml has no `name = "..."` line under [project]')
    return match.group(1)


def check_name(new: str, old: str) -> None:
    if not new.isidentifier() or keyword.iskeyword(new) or new != new.lower():
        sys.exit(
            f"rename: {new!r} is not a valid package name; use lowercase letters, digits "
            "and underscores, starting with a letter (e.g. my_project)"
        )
    if new == old:
        sys.exit(f"rename: the package is already called {new!r}")


def text_files(root: Path):
    for path in root.rglob("*"):
        parts = set(path.relative_to(root).parts)
        if parts & SKIP_DIRS or any(p.endswith(".egg-info") for p in parts) or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in {"Makefile", "run"}:
            yield path


def rename(root: Path, new: str) -> list[Path]:
    """Rename the package from pyproject's name to `new`; returns the files changed."""
    old = current_name(root)
    check_name(new, old)
    if (root / "src" / new).exists():
        sys.exit(f"rename: src/{new} already exists")
    # also inside identifiers such as `litforge_config` and `litforge-train`
    pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(old)}")
    named = [
        path
        for path in (root / "src").rglob("*")
        if pattern.match(path.name)
        and not any(part == "__pycache__" or part.endswith(".egg-info") for part in path.parts)
    ]
    for path in sorted(named, key=lambda p: len(p.parts), reverse=True):  # deepest first
        path.rename(path.with_name(pattern.sub(new, path.name)))
    changed = []
    for path in text_files(root):
        if path.name == "LICENSE":
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        updated = pattern.sub(new, text)
        if updated != text:
            path.write_text(updated)
            changed.append(path.relative_to(root))
    for stale in (root / "src").glob(f"{old}.egg-info"):
        shutil.rmtree(stale)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the new package name, e.g. my_project")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    old = current_name(args.root)
    changed = rename(args.root, args.name)
    print(f"renamed {old} -> {args.name}: src/{args.name}/ and {len(changed)} files")
    print("next: make test  (reinstalls the package under its new name)")


if __name__ == "__main__":
    main()
