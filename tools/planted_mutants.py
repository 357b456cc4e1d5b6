"""How many planted arithmetic bugs `refquant check` finds (issue 19's measure of check as a bug finder).

    python tools/planted_mutants.py [--jobs 2] [--keep DIR] [NAME ...]

Each mutant below is a small, realistic change to refquant's arithmetic, the kind issue 19 planted
(rounding half away from zero, saturation at qmin + 1, a dropped zero point, an off-by-one axis, ...).
For each one the tool copies the tree into a temporary folder in its installed layout (refquant/, with
backends/ as refquant/backends and cli/ as refquant/cli, so that PYTHONPATH imports the copy and not the
editable install), applies the change, and runs `python -m refquant.cli check` with its default
arguments. A mutant is *killed* when check exits non-zero (an unexplained difference or an error), and
*survives* when check passes. The unmodified copy runs first and must pass, or nothing is measured.

Prints one line per mutant and the score, and exits 1 when fewer than 80% are killed (issue 19's bar).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from installed_layout import installed_layout

ARITH, QPARAMS, WINDOW, PROFILES = "refquant/arith.py", "refquant/qparams.py", "refquant/window.py", "refquant/profiles.py"
QUANTIZE, DYNAMIC = "refquant/ops/quantize.py", "refquant/ops/dynamic_quantization.py"
INTEGER, PRODUCTS = "refquant/ops/integer.py", "refquant/ops/integer_products.py"
HALF_AWAY = "np.copysign(np.floor(np.abs({0}) + 0.5), {0})"
CLIP = "    return np.clip(values, qt.qmin, qt.qmax).astype(qt.dtype)"
CLIP_IN_PLACE = "    np.clip(values, qt.qmin, qt.qmax, out=values)"
QUOTIENT = "        quotient = (x.astype(precision) / scale.astype(precision)).astype(np.float64)\n"
ROUND_QUOTIENT = "            return _clip_round(quotient, zero_point, qt)"


@dataclass(frozen=True)
class Mutant:
    """A planted bug: ``edits`` are (file, original text, replacement); each original occurs once."""

    name: str
    bug: str
    edits: tuple[tuple[str, str, str], ...]


def _clip_edits(low: str, high: str) -> tuple[tuple[str, str, str], ...]:
    """Both of arith's saturations (the general one and the in-place one) with other bounds."""
    return (
        (ARITH, CLIP, f"    return np.clip(values, {low}, {high}).astype(qt.dtype)"),
        (ARITH, CLIP_IN_PLACE, f"    np.clip(values, {low}, {high}, out=values)"),
    )


def _rounding_edits(rounded: str) -> tuple[tuple[str, str, str], ...]:
    """QuantizeLinear's rounding replaced, on the float32 fast path and on the general one."""
    return (
        (ARITH, ROUND_QUOTIENT, f"            return _clip_round({rounded.format('quotient')}, zero_point, qt)"),
        (ARITH, QUOTIENT, QUOTIENT + f"        quotient = quotient if qt.is_float else {rounded.format('quotient')}\n"),
    )


MUTANTS = (
    Mutant("round-half-away", "QuantizeLinear rounds half away from zero", _rounding_edits(HALF_AWAY)),
    Mutant("floor-plus-half", "QuantizeLinear rounds half up", _rounding_edits("np.floor({0} + 0.5)")),
    Mutant("saturate-qmin-plus-1", "saturation at qmin + 1", _clip_edits("qt.qmin + 1", "qt.qmax")),
    Mutant("int8-min-127", "int8 saturates at -127 (symmetric range)",
           _clip_edits('-127 if qt.name == "int8" else qt.qmin', "qt.qmax")),
    Mutant("int4-max-8", "int4 saturates at 8", _clip_edits("qt.qmin", 'qt.qmax + (qt.name == "int4")')),
    Mutant("qlinear-drop-weight-zero-point", "QLinearConv and QLinearMatMul ignore the weight zero point", (
        (PRODUCTS, 'scalar_param(x_zp, "x_zero_point"), w, w_zero_point, window,',
         'scalar_param(x_zp, "x_zero_point"), w, np.zeros_like(w_zero_point), window,'),
        (INTEGER, "            node, a2, a_zp, b2, b_zp, b_zero_point,",
         "            node, a2, a_zp, b2, b_zp * 0, b_zero_point,"),
    )),
    Mutant("integer-drop-input-zero-point", "MatMulInteger and ConvInteger ignore the input zero point", (
        (INTEGER, '    a_zp = matmul_param(zero_point_of(a_zero_point, a, "a"),',
         '    a_zp = 0 * matmul_param(zero_point_of(a_zero_point, a, "a"),'),
        (INTEGER, '    x_zp = scalar_param(zero_point_of(x_zero_point, x, "x"), "x_zero_point")',
         '    x_zp = 0 * scalar_param(zero_point_of(x_zero_point, x, "x"), "x_zero_point")'),
    )),
    Mutant("negative-axis-off-by-one", "a negative quantization axis counts from rank - 1", (
        (QPARAMS, "    axis %= rank\n", "    axis = axis + rank - 1 if axis < 0 else axis\n"),
    )),
    Mutant("square-wrong-axis", "a per-axis parameter lands on the next axis when both have the same length", (
        (QPARAMS, "        shape = [1] * rank\n        shape[axis] = x_shape[axis]\n",
         "        other = (axis + 1) % rank\n        axis = other if x_shape[other] == x_shape[axis] else axis\n"
         "        shape = [1] * rank\n        shape[axis] = x_shape[axis]\n"),
    )),
    Mutant("block-index-off-by-one", "blocked quantization reads the next element's block", (
        (QPARAMS, "    return np.repeat(param, block_size, axis=axis).take(np.arange(x_shape[axis]), axis=axis)",
         "    return np.repeat(param, block_size, axis=axis).take("
         "np.minimum(np.arange(x_shape[axis]) + 1, param.shape[axis] * block_size - 1), axis=axis)"),
    )),
    Mutant("spec-float32-requantization", "the spec profile requantizes in float32", (
        (PROFILES, '    requantize_precision: RequantizePrecision = "float64"',
         '    requantize_precision: RequantizePrecision = "float32"'),
    )),
    Mutant("requantize-zero-point-before-rounding", "requantization adds the zero point before rounding", (
        (ARITH, "    real *= multiplier\n    if zero_point_first:", "    real *= multiplier\n    if True:"),
        (ARITH, "    if zero_point_first:\n        real, y_zero_point = _add_zero_point(real, y_zero_point), None\n"
                "        real = np.where",
         "    if True:\n        real, y_zero_point = _add_zero_point(real, y_zero_point), None\n        real = np.where"),
    )),
    Mutant("swap-same-padding", "SAME_UPPER and SAME_LOWER swapped", (
        (WINDOW, 'b = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2',
         'b = total // 2 if auto_pad == "SAME_LOWER" else total - total // 2'),
    )),
    Mutant("dynamic-zero-point-half-up", "DynamicQuantizeLinear's zero point rounds half up", (
        (DYNAMIC, "arith.saturate_int(np.rint(np.clip(initial_zero_point, u8.qmin, u8.qmax)), u8)",
         "arith.saturate_int(np.floor(np.clip(initial_zero_point, u8.qmin, u8.qmax) + 0.5), u8)"),
    )),
    Mutant("dynamic-range-without-zero", "DynamicQuantizeLinear's range does not include 0", (
        (DYNAMIC, "    x_max = np.float32(max(0.0, find_max(x, initial=0.0)))\n"
                  "    x_min = np.float32(min(0.0, find_min(x, initial=0.0)))",
         "    x_max = np.float32(find_max(x))\n    x_min = np.float32(find_min(x))"),
    )),
    Mutant("per-axis-dequantize-without-zero-point", "per-axis DequantizeLinear drops the zero point", (
        (QUANTIZE, "    scale, zero_point = qdq_params(node, x, x_scale, x_zero_point, axis_allowed=v >= 13)\n",
         "    scale, zero_point = qdq_params(node, x, x_scale, x_zero_point, axis_allowed=v >= 13)\n"
         "    zero_point = None if np.ndim(scale) > 0 else zero_point\n"),
    )),
    Mutant("float8-saturate-ignored", "QuantizeLinear to float8 always saturates", (
        (QUANTIZE, 'saturate=bool(node.attr("saturate", 1, int)) if v >= 19 else True,', "saturate=True,"),
    )),
)


def apply(mutant: Mutant, tree: Path) -> None:
    """Apply each edit once; a pattern that does not occur exactly once is an error (the code moved)."""
    for relative, original, replacement in mutant.edits:
        path = tree / relative
        text = path.read_text()
        if text.count(original) != 1:
            raise SystemExit(f"{mutant.name}: {relative}: the original text occurs {text.count(original)} times")
        path.write_text(text.replace(original, replacement))


def run_check(mutant: Mutant | None, scratch: Path) -> tuple[str, int, float, str]:
    """(name, check's exit status, seconds, what it found) for one mutant (None: the unmodified tree)."""
    name = mutant.name if mutant else "unmodified"
    tree = scratch / name
    installed_layout(tree)
    if mutant:
        apply(mutant, tree)
    env = dict(os.environ, PYTHONPATH=str(tree))
    probe = "import refquant, refquant.backends; print(refquant.__file__, refquant.backends.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tree, capture_output=True, text=True).stdout
    if where.count(str(tree)) != 2:
        raise SystemExit(f"{name}: the copy is not the one imported: {where.strip()}")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "refquant.cli", "check"], env=env, cwd=tree, capture_output=True, text=True
    )
    (scratch / f"{name}.log").write_text(done.stdout + done.stderr)
    findings = _findings(done.stdout) or (done.stderr.strip()[-300:] if done.returncode else "")
    return name, done.returncode, time.perf_counter() - start, findings


def _findings(report: str) -> str:
    """'backend: U unexplained, E errors' for each backend with either, from check's '(all)' rows."""
    found = []
    for line in report.splitlines():
        fields = line.split()
        if len(fields) == 9 and fields[1] == "(all)" and fields[6:9:2] != ["0", "0"]:
            found.append(f"{fields[0]}: {fields[6]} unexplained, {fields[8]} errors")
    return "; ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="checks run at once (default 2)")
    parser.add_argument("--keep", type=Path, help="keep the trees and check's logs in this folder")
    args = parser.parse_args(argv)
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutants: {sorted(unknown)}")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="planted-mutants-"))
    scratch.mkdir(parents=True, exist_ok=True)
    for mutant in chosen:  # every pattern still matches before anything runs
        probe = scratch / "probe"
        shutil.rmtree(probe, ignore_errors=True)
        installed_layout(probe)
        apply(mutant, probe)
    shutil.rmtree(scratch / "probe")
    name, status, seconds, last = run_check(None, scratch)
    print(f"{name:42} {'passes' if status == 0 else 'FAILS'}  {seconds:5.1f} s  {last}", flush=True)
    if status != 0:
        print("check fails on the unmodified tree: nothing measured", file=sys.stderr)
        return 2
    killed = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        for name, status, seconds, last in pool.map(lambda m: run_check(m, scratch), chosen):
            killed += status != 0
            print(f"{name:42} {'killed' if status else 'SURVIVES'}  {seconds:5.1f} s  {last}", flush=True)
    print(f"killed {killed} of {len(chosen)} ({100 * killed / len(chosen):.0f}%)")
    if not args.keep:
        shutil.rmtree(scratch)
    return 0 if killed >= 0.8 * len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
