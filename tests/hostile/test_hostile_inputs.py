"""The hostile-input suite (spec/model.md "Hostile-input suite"): every generated case of ``cases.py``, each in a
forked child under a memory and a time limit.

The test process has imported refquant (and what the commands import lazily), so a child starts warm: it sets
``RLIMIT_AS`` to its address space plus :data:`HEADROOM`, moves into the case's empty working directory,
sends stdout and stderr to files, runs the case (an API call or ``refquant.cli.main(argv)``) and writes what
happened as JSON. The parent kills a child that outlives :data:`TIMEOUT` (a hang fails the case) and checks:

- an API case raised the RefquantError subclass the spec names, in one line holding the expected text; a
  CLI case exited 1 with exactly one stderr line, ``refquant: error: ...`` (a case the spec accepts, with the
  sentence of spec/ that says so, returned or exited 0);
- nothing was written outside the case's ``out/`` folder (listings before and after), its temporary folder
  is empty again;
- the secret placed outside the model folder (and in the working directory) appears in no output;
- a bomb was refused from its shapes (``max_memory``/``max_work``), not by running out of memory.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import pytest

import refquant
import refquant.backends.bench  # noqa: F401  (imported here once, not in every child)
import refquant.backends.conformance  # noqa: F401
import refquant.backends.report  # noqa: F401
import refquant.cli

try:  # onnxruntime writes a session id file (.ses) to the temporary folder when first imported: once, here
    import onnxruntime  # noqa: F401
except ImportError:
    pass

from .cases import CASES, SECRET, Api, Case, Cli, Place

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(os, "mkfifo"), reason="needs fork and FIFOs")

#: address space a case may take beyond what the forked child starts with
HEADROOM = 1536 * 2**20
#: seconds a case may run; a child still running then is a hang
TIMEOUT = 20.0
SPEC = Path(__file__).resolve().parents[2] / "spec"


# -- the child -----------------------------------------------------------------------------------------------


def _address_space() -> int:
    """The bytes of virtual memory this process maps now (RLIMIT_AS counts the same)."""
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    return kib * 1024


def _redirect(fd: int, path: Path):
    """File descriptor ``fd`` (1 or 2) and its Python stream sent to ``path``."""
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(target, fd)
    os.close(target)
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


def _perform(action: Api | Cli) -> dict:
    """Run the action; what happened, as a JSON-able dict."""
    try:
        if isinstance(action, Api):
            action.call()
            return {"outcome": "returned"}
        return {"outcome": "exited", "status": refquant.cli.main(action.argv)}
    except SystemExit as exc:  # argparse
        return {"outcome": "exited", "status": exc.code if isinstance(exc.code, int) else 1}
    except BaseException as exc:  # noqa: BLE001  (what escapes is the finding)
        return {
            "outcome": "raised",
            "mro": [cls.__name__ for cls in type(exc).__mro__],
            "message": str(exc),
            "limit": getattr(exc, "limit", None),
            "traceback": traceback.format_exc(),
        }


def _child(action: Api | Cli, place: Place, harness: Path) -> None:
    """The forked child: limits, working directory, redirections, the case, the result file. Never returns."""
    try:
        os.chdir(place.cwd)
        tempfile.tempdir = str(place.tmp)
        os.environ["TMPDIR"] = str(place.tmp)
        limit = _address_space() + HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.stdout, sys.stderr = _redirect(1, harness / "stdout"), _redirect(2, harness / "stderr")
        result = _perform(action)
        sys.stdout.flush()
        sys.stderr.flush()
        (harness / "result.json").write_text(json.dumps(result, default=str))
    finally:
        os._exit(0)


# -- the parent ----------------------------------------------------------------------------------------------


def _wait(pid: int, timeout: float) -> bool:
    """Reap ``pid``; True when it had to be killed after ``timeout`` seconds (a hang)."""
    deadline, pause = time.monotonic() + timeout, 0.001
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return True


def _listing(place: Place) -> dict[str, tuple]:
    """Every entry under the case's folder but ``out/``: kind, size and modification time (symlinks unfollowed)."""
    entries = {}
    for folder, names, files in os.walk(place.root):
        if Path(folder) == place.out:
            names[:] = []
            continue
        for name in names + files:
            status = os.lstat(os.path.join(folder, name))
            entries[os.path.relpath(os.path.join(folder, name), place.root)] = (
                status.st_mode, status.st_size if not os.path.isdir(os.path.join(folder, name)) else 0,
                status.st_mtime_ns)
    return entries


def run_in_child(case: Case, root: Path) -> tuple[Api | Cli, dict, str, str, dict, dict]:
    """Prepare the case in ``root``, run it in a forked child; (the action, its result, stdout, stderr, the
    listing before, after)."""
    place = Place(root / "case")
    harness = root / "harness"
    harness.mkdir()
    action = case.prepare(place)
    before = _listing(place)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(action, place, harness)
    hung = _wait(pid, TIMEOUT)
    assert not hung, f"{case.name}: still running after {TIMEOUT:g} s (a hang)"
    result_file = harness / "result.json"
    stdout, stderr = ((harness / name).read_text(errors="replace") if (harness / name).exists() else ""
                      for name in ("stdout", "stderr"))
    assert result_file.exists(), f"{case.name}: the child died without a result; stderr:\n{stderr}"
    return action, json.loads(result_file.read_text()), stdout, stderr, before, _listing(place)


def _spec_text() -> str:
    return "\n".join(path.read_text() for path in sorted(SPEC.rglob("*.md")))


def _check_api(case: Case, result: dict) -> None:
    if case.expect is None:
        assert result["outcome"] == "returned", f"legal input refused: {result.get('traceback')}"
        return
    assert result["outcome"] == "raised", "a bad input was accepted without a word"
    assert "RefquantError" in result["mro"], f"{result['mro'][0]} escaped:\n{result['traceback']}"
    assert case.expect.__name__ in result["mro"], f"{result['mro'][0]}, not {case.expect.__name__}: {result['message']}"
    message = result["message"]
    assert message and "\n" not in message, f"not one line: {message!r}"
    for text in case.matches:
        assert text in message, f"{text!r} not in {message!r}"
    if case.expect.__name__ == "ResourceLimitError":
        assert result["limit"] in ("max_memory", "max_work"), f"not refused from its shapes: {message}"


def _check_cli(case: Case, result: dict, stderr: str) -> None:
    assert result["outcome"] == "exited", f"{result['mro'][0]} escaped the command:\n{result['traceback']}"
    if case.expect is None:
        assert result["status"] == 0, stderr
        return
    lines = stderr.splitlines()
    assert result["status"] == 1 and len(lines) == 1 and lines[0].startswith("refquant: error: "), (
        f"exit status {result['status']}, stderr:\n{stderr}")
    for text in case.matches:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input(case: Case, tmp_path):
    if case.expect is None:
        assert case.choice and case.choice in _spec_text(), f"no written choice in spec/ accepts {case.name}"
    action, result, stdout, stderr, before, after = run_in_child(case, tmp_path)
    secret = SECRET.decode()
    shown = stdout + stderr + result.get("message", "") + result.get("traceback", "")
    assert secret not in shown, "the secret outside the model folder was read and shown"
    if isinstance(action, Api):
        _check_api(case, result)
    else:
        _check_cli(case, result, stderr)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"written outside the case's out/ folder: {changed}"


# -- the counts ----------------------------------------------------------------------------------------------


def _written_counts() -> dict[str, int]:
    """The table of spec/model.md "Hostile-input suite": category -> count."""
    text = (SPEC / "model.md").read_text()
    section = text.split("## Hostile-input suite", 1)[1].split("\n## ", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^\| `([\w-]+)` \| (\d+) \|", section, re.M)}


def test_the_suite_is_as_written_and_large_enough():
    counts = Counter(case.category for case in CASES)
    print("\nhostile inputs by category:", dict(sorted(counts.items())), "total", sum(counts.values()))
    assert dict(counts) == _written_counts(), "spec/model.md 'Hostile-input suite' counts are out of date"
    assert sum(counts.values()) >= 300
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "two cases share an id"
