"""Every package imported anywhere in the tree is declared in pyproject.toml, and every bound has a reason."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["refquant", "backends", "cli", "tests", "tools", "benchmarks", ".ci"]
#: literal_laden: a module a test writes itself; the scripts in tools/ import one another
LOCAL = {"refquant", "backends", "tests", "literal_laden", *(path.stem for path in (ROOT / "tools").glob("*.py"))}
#: import names whose distribution is called otherwise
DISTRIBUTION_OF = {"google": "protobuf", "PIL": "pillow"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_levels() -> dict[str, str]:
    """top-level import name -> one file that imports it."""
    found = {}
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]


def _declared() -> set[str]:
    return {_canonical(re.match(r"[A-Za-z0-9_.-]+", r)[0]) for r in _requirements()}


def test_every_imported_package_is_declared():
    third_party = {
        name: where
        for name, where in _imported_top_levels().items()
        if name not in sys.stdlib_module_names and name not in LOCAL
    }
    assert {"numpy", "onnx", "ml_dtypes", "hypothesis", "onnxruntime"} <= set(third_party)  # the walk sees imports
    missing = {
        name: where
        for name, where in third_party.items()
        if _canonical(DISTRIBUTION_OF.get(name, name)) not in _declared()
    }
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_every_version_bound_has_a_reason():
    """A bound (>=, <, ==) carries a comment on its line or sits right under one, in pyproject.toml."""
    lines = (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines()
    bounded = [r for r in _requirements() if re.search(r"[<>=!~]", r)]
    assert bounded, "no bounds found: the parse is wrong"
    for requirement in bounded:
        index = next(i for i, line in enumerate(lines) if f'"{requirement}"' in line)
        same_line = "#" in lines[index].split(f'"{requirement}"', 1)[1]
        assert same_line or lines[index - 1].lstrip().startswith("#"), (
            f"pyproject.toml:{index + 1}: {requirement} has a bound without a reason"
        )


def test_minimum_constraints_pin_the_declared_floors():
    """.ci/constraints-min.txt pins each declared minimum exactly, so CI's minimum run tests what we claim."""
    pins = dict(
        line.split("==") for line in (ROOT / ".ci" / "constraints-min.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    pins = {_canonical(name): version for name, version in pins.items()}
    for requirement in _requirements():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(;.*)?", requirement.replace(" ", ""))
        if match:
            name, floor = _canonical(match[1]), match[2]
            assert name in pins, f"{requirement}: no pin in .ci/constraints-min.txt"
            assert [int(p) for p in pins[name].split(".")][: len(floor.split("."))] == [int(p) for p in floor.split(".")], (
                f"{requirement}: .ci/constraints-min.txt pins {pins[name]}"
            )
