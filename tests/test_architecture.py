"""Three floors, arrows only downward (README "Layout"), checked by path.

- refquant/ (the interpreter, ``refquant``): numpy, onnx and ml_dtypes; never an engine, the judge or the CLI.
- backends/ (the judge, installed as ``refquant.backends``): the interpreter and the engines; never the CLI.
- cli/ (the front door, installed as ``refquant.cli``): everything; nothing imports it.

Every import counts, at module level or inside a function; relative imports are resolved by path.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: folder -> (import name, floor); a higher floor may import a lower one, never the reverse
FLOORS = {"refquant": ("refquant", 0), "backends": ("refquant.backends", 1), "cli": ("refquant.cli", 2)}
FLOOR_NAMES = ("the interpreter", "the judge", "the front door")
ENGINES = {"onnxruntime", "openvino"}
#: what the interpreter may import when it is imported (google: protobuf's DecodeError, which onnx raises)
INTERPRETER_MODULE_LEVEL = {"numpy", "onnx", "ml_dtypes", "google"} | set(sys.stdlib_module_names)
#: optional packages the interpreter may import inside the one function that needs them
INTERPRETER_OPTIONAL = {"tqdm", "flatbuffers", "matplotlib"}


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # absolute, resolved
    names: tuple[str, ...]
    module_level: bool

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.module}"


def module_name(path: Path) -> str:
    """The import name of a source file, by the folder mapping of pyproject.toml."""
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [*FLOORS[folder][0].split("."), *rest]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int | None:
    """The floor a refquant module lives on, or None for other packages."""
    for name, floor in sorted(FLOORS.values(), key=lambda item: -len(item[0])):
        if module == name or module.startswith(name + "."):
            return floor
    return None


SOURCES = sorted(path for folder in FLOORS for path in (ROOT / folder).rglob("*.py"))
MODULES = {module_name(path): path for path in SOURCES}


def imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    nested = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(fn) if n is not fn}
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name, (), id(node) not in nested) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append(Import(path, node.lineno, module, tuple(a.name for a in node.names), id(node) not in nested))
    return found


ALL_IMPORTS = [imp for path in SOURCES for imp in imports(path)]


def test_the_floors_are_the_folders_and_every_source_file_is_on_one():
    assert SOURCES and {module_name(p).split(".")[0] for p in SOURCES} == {"refquant"}
    assert not (ROOT / "refquant" / "cli.py").exists() and not (ROOT / "refquant" / "backends").exists()


@pytest.mark.parametrize("folder", FLOORS)
def test_every_arrow_points_down(folder):
    own = FLOORS[folder][1]
    upward = [f"{imp} ({FLOOR_NAMES[floor_of(imp.module)]})" for imp in ALL_IMPORTS
              if imp.path.is_relative_to(ROOT / folder) and (floor_of(imp.module) or 0) > own]
    assert not upward, f"{FLOOR_NAMES[own]} reaches up:\n" + "\n".join(upward)


def test_the_interpreter_imports_numpy_onnx_and_ml_dtypes_only():
    bad = []
    for imp in ALL_IMPORTS:
        top = imp.module.split(".")[0]
        if not imp.path.is_relative_to(ROOT / "refquant") or top == "refquant":
            continue
        if top in ENGINES or top not in INTERPRETER_MODULE_LEVEL | INTERPRETER_OPTIONAL:
            bad.append(str(imp))
        elif top in INTERPRETER_OPTIONAL and imp.module_level:
            bad.append(f"{imp} at module level (an optional package is imported where it is used)")
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    """A depth-first search over module edges; an edge to one's own package (its __init__) is not a circle."""
    edges = {}
    for module, path in MODULES.items():
        targets = set()
        for imp in imports(path):
            candidates = [f"{imp.module}.{name}" for name in imp.names] or [imp.module]
            targets |= {c if c in MODULES else imp.module for c in candidates}
        edges[module] = {t for t in targets if t in MODULES and t != module and not module.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(module, stack):
        state[module] = 1
        for target in sorted(edges[module]):
            assert state.get(target) != 1, "import circle: " + " -> ".join([*stack[stack.index(target):], target])
            if target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_no_module_imports_a_private_name_from_another():
    """`from X import _name` across modules couples them to internals; a shared helper gets a public name."""
    private = [f"{imp}: {name}" for imp in ALL_IMPORTS for name in imp.names
               if name.startswith("_") and not name.startswith("__") and floor_of(imp.module) is not None]
    assert not private, "\n".join(private)


def test_importing_refquant_and_running_it_loads_no_engine_judge_or_cli():
    code = (
        "import sys, refquant, refquant.ops\n"
        "refquant.supported_ops()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'onnxruntime', 'openvino', 'hypothesis'}\n"
        "             or m.startswith(('refquant.backends', 'refquant.cli')))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cli_runs_a_model_without_loading_an_engine(tmp_path):
    code = (
        "import sys, contextlib, io, refquant\n"
        "from pathlib import Path\n"
        "from refquant.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    status = main(['run', str(Path(refquant.__file__).parent / 'examples' / 'qcnn.onnx')])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'onnxruntime', 'openvino'})\n"
        "print(status, bad); sys.exit(1 if bad or status else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_old_top_level_name_backends_gives_a_clear_message():
    """From a checkout, `import backends` finds the folder; it says where the judge went instead of half-working."""
    result = subprocess.run([sys.executable, "-c", "import backends"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: refquant's backends are the package refquant.backends since 0.2 (the folder backends/ is "
        "installed under that name): write `import refquant.backends as backends`; the pytest plugin is "
        "refquant.backends.pytest_plugin"
    )


def test_the_old_public_name_refquant_strategies_gives_a_clear_message():
    result = subprocess.run([sys.executable, "-c", "import refquant.strategies"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: refquant.strategies moved to refquant.backends.strategies in refquant 0.2: "
        "write `from refquant.backends import strategies`"
    )


def test_the_pytest_plugin_entry_point_names_the_judge():
    from importlib.metadata import entry_points

    (plugin,) = [e for e in entry_points(group="pytest11") if e.name == "refquant"]
    assert plugin.value == "refquant.backends.pytest_plugin"
    assert plugin.load().__name__ == "refquant.backends.pytest_plugin"


def test_a_kernel_module_imports_no_other_kernel_module():
    """A kernel module (one that registers kernels) takes shared code from modules that register none
    (refquant/qparams.py, refquant/checks.py, refquant/ops/integer_products.py, ...), never from a sibling kernel module."""
    kernel_modules = {module for module, path in MODULES.items()
                      if module.startswith("refquant.ops.") and "register(" in path.read_text()}
    bad = []
    for module in sorted(kernel_modules):
        for imp in imports(MODULES[module]):
            targets = {f"{imp.module}.{name}" for name in imp.names} | {imp.module}
            bad += [f"{imp}: {target}" for target in sorted(targets & kernel_modules) if target != module]
    assert not bad, "\n".join(bad)


def profile_reads(source: str) -> list[int]:
    """Lines of ``source`` that read an attribute named ``profile`` (``node.profile``, ``x.profile.nan``)."""
    return sorted(n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute) and n.attr == "profile")


KERNEL_SOURCES = sorted((ROOT / "refquant" / "ops").glob("*.py"))


def test_no_kernel_module_reads_the_profile():
    """Kernels and their helpers (refquant/ops/*.py) get their op family's options (node.options,
    refquant/kernel_options.py) or the values as arguments, never the whole profile."""
    assert len(KERNEL_SOURCES) > 10
    bad = [f"{path.relative_to(ROOT)}:{line}" for path in KERNEL_SOURCES for line in profile_reads(path.read_text())]
    assert not bad, "kernel modules read .profile:\n" + "\n".join(bad)


def test_the_profile_check_finds_a_kernel_that_reads_the_profile():
    kernel = (
        "@register('QuantizeLinear', since=(10,))\n"
        "def quantize_linear(node, x, scale):\n"
        "    nan = node.options.nan\n"
        "    return (quantize(x, scale, nan=node.profile.nan),)\n"
    )
    assert profile_reads(kernel) == [4]
