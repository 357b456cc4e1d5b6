"""The boundary: refquant depends on numpy and onnx only; only cli.py may reach backends, lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REFQUANT = Path(__file__).resolve().parent.parent / "refquant"
FORBIDDEN = {"backends", "onnxruntime", "openvino"}
OPTIONAL = {"hypothesis", "matplotlib", "tqdm", "flatbuffers"}  # allowed only inside functions / optional modules
ALLOWED_TOP_LEVEL = {"numpy", "onnx", "ml_dtypes", "google"} | set(sys.stdlib_module_names)


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module.split(".")[0]


def _module_level(tree):
    """Import nodes not nested in a function (those run when the module is imported)."""
    nested = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested |= {id(n) for n in ast.walk(fn)}
    return [(node, name) for node, name in _imports(tree) if id(node) not in nested]


def test_refquant_never_imports_engines_at_module_level():
    for path in REFQUANT.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node, name in _module_level(tree):
            assert name not in FORBIDDEN, f"{path.relative_to(REFQUANT.parent)}:{node.lineno} imports {name}"
        if path.name != "cli.py":
            for node, name in _imports(tree):
                assert name not in FORBIDDEN, f"{path.relative_to(REFQUANT.parent)}:{node.lineno} imports {name}"


def test_refquant_core_modules_import_only_numpy_onnx_and_stdlib():
    optional_modules = {"strategies.py"}  # public hypothesis strategies: hypothesis is a test extra
    for path in REFQUANT.rglob("*.py"):
        if path.name in optional_modules:
            continue
        for node, name in _module_level(ast.parse(path.read_text(), str(path))):
            assert name in ALLOWED_TOP_LEVEL, f"{path.relative_to(REFQUANT.parent)}:{node.lineno} imports {name}"


def test_importing_refquant_and_running_it_loads_no_engine():
    code = (
        "import sys, refquant, refquant.cli, refquant.ops\n"
        "refquant.supported_ops()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'backends', 'onnxruntime', 'openvino', 'hypothesis'})\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_imports_a_private_name_from_another():
    """`from X import _name` across modules couples them to internals; a shared helper gets a public name."""
    root = REFQUANT.parent
    for path in [*REFQUANT.rglob("*.py"), *(root / "backends").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__" and not (node.module or "").startswith(("onnxruntime", "hypothesis")):
                private = [alias.name for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
                assert not private, f"{path.relative_to(root)}:{node.lineno} imports private {private} from {node.module}"
