"""The checkout copied into the layout pip installs, for tools that import refquant from a folder.

    python tools/installed_layout.py [DEST]      # default build/mutation: then `cd DEST && mutmut run ...`

The checkout keeps each floor in its own folder (refquant/, backends/, cli/) and pyproject.toml maps them
to one import name (refquant, refquant.backends, refquant.cli). A tool that imports the package from a
folder on sys.path sees only refquant/ there, and the editable install would then supply the judge and the
front door from the checkout, unmodified. mutmut is such a tool: it names a mutant after its file's path and
switches it on by the function's module name, so backends/divergence.py must sit at refquant/backends/ for
its mutants to run at all. tools/planted_mutants.py is another.

``installed_layout(DEST)`` writes DEST/refquant with backends/ as DEST/refquant/backends and cli/ as
DEST/refquant/cli; the command line also copies tests/ and pyproject.toml (mutmut's configuration and the
pytest settings) and keeps DEST/mutants, mutmut's results, from earlier runs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = {"refquant": "refquant", "backends": "refquant/backends", "cli": "refquant/cli"}
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def installed_layout(dest: Path) -> None:
    """Copy the three floors to ``dest`` where the installed package has them (replacing earlier copies)."""
    for folder, target in FLOORS.items():
        if folder == "refquant":
            shutil.rmtree(dest / target, ignore_errors=True)
        shutil.copytree(ROOT / folder, dest / target, ignore=_IGNORE)


def main(argv: list[str]) -> int:
    dest = Path(argv[0]) if argv else ROOT / "build" / "mutation"
    dest.mkdir(parents=True, exist_ok=True)
    installed_layout(dest)
    shutil.rmtree(dest / "tests", ignore_errors=True)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=_IGNORE)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
