"""The ``refquant`` command.

    refquant check [--backends a,b] [--per-op N] [--seed S] [--json FILE] [--save-failures DIR] [--time-limit S]
    refquant compare MODEL [--backends a,b] [--input NAME=FILE.npy ...] [--all-tensors [--save DIR]] [--json FILE]
    refquant fuzz [--ops ...] [--backends ...] [--examples N] [--seed S] [--out DIR] [--time-limit S]
    refquant replay DIR [--backends a,b]
    refquant bench [--ops ...] [--models ...] [--backends ...] [--repeat N] [--json FILE] [--plot FILE] [--quick]
    refquant run MODEL [--input NAME=FILE.npy ...] [--seed N] [--save DIR] [--max-memory SIZE] [--max-work N]
    refquant calibrate MODEL --data PATH --method minmax|entropy|percentile|distribution --out DIR
    refquant debug FLOAT_MODEL QUANT_MODEL --data PATH [--json FILE] [--plot FILE]
    refquant ops

Errors print one line on stderr and exit non-zero; ``--debug`` shows the traceback.
The commands that run models (run, compare, replay, calibrate, debug, bench) take ``--max-memory`` and
``--max-work``: the per-node resource budget (refquant.Limits, spec/model.md "Resource budget").
Subcommands that compare engines import ``backends`` lazily, inside their
function, so that ``run`` and ``ops`` work with numpy and onnx alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

import refquant
from refquant.calibration.data import DATA_HELP
from refquant.errors import RefquantError
from refquant.feeds import random_feeds
from refquant.files import check_writable, load_npy

__all__ = ["main"]

EXAMPLES = Path(refquant.__file__).parent / "examples"

#: the largest --seed (numpy and hypothesis take any non-negative integer; a bound keeps the value sane)
MAX_SEED = 2**64 - 1
#: bounds of the counts the campaign commands take: each unit is a model run on every backend
MAX_PER_OP, MAX_EXAMPLES, MAX_REPEAT = 10_000, 100_000, 10_000


# -- checked options ---------------------------------------------------------------------


def _bounded(value: int, flag: str, low: int, high: int) -> int:
    """``value`` when ``low <= value <= high``; a one-line error naming ``flag`` otherwise."""
    if not low <= value <= high:
        raise RefquantError(f"{flag} must be an integer from {low} to {high}, got {value}")
    return value


def _time_limit(seconds: float | None) -> float | None:
    """--time-limit SECONDS: a positive, finite number, or None when not given."""
    if seconds is None:
        return None
    if not (seconds > 0 and seconds < float("inf")):
        raise RefquantError(f"--time-limit must be a positive number of seconds, got {seconds}")
    return seconds


def _check_outputs(**paths: str | None) -> None:
    """Check every output option given (``json_file=...``, ``save_dir=...``) before the work begins."""
    flags = {"json_file": "--json", "plot_file": "--plot", "save_dir": "--save", "failures_dir": "--save-failures",
             "out_dir": "--out"}
    for key, path in paths.items():
        if path:
            check_writable(path, flags[key], directory=key.endswith("_dir"))


def _make_dir(path: str, flag: str) -> Path:
    """The output directory ``path``, created (with its parents) if needed."""
    directory = check_writable(path, flag, directory=True)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RefquantError(f"{flag} {path}: cannot create the directory: {exc.strerror or exc}") from None
    return directory


# -- refquant run ---------------------------------------------------------------


def _parse_assignments(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise RefquantError(f"{what} must look like NAME=VALUE, got {item!r}")
        pairs[name] = value
    return pairs


def _dims(items: list[str]) -> dict[str, int]:
    """--dim NAME=N: N a size, an integer >= 0."""
    dims = {}
    for name, text in _parse_assignments(items, "--dim").items():
        try:
            dims[name] = int(text)
        except ValueError:
            raise RefquantError(f"--dim {name}={text}: the size must be an integer") from None
        if dims[name] < 0:
            raise RefquantError(f"--dim {name}={text}: a size cannot be negative")
    return dims


def _feeds_for(session, args) -> dict:
    """--input arrays (.npy files), plus seeded random feeds (sized by --dim) for every input not given."""
    seed = _bounded(args.seed, "--seed", 0, MAX_SEED)
    assignments = _parse_assignments(args.input, "--input")
    given = {name: load_npy(path, f"--input {name}") for name, path in assignments.items()}
    missing = [spec for spec in session.inputs if spec.name not in given]
    return {**random_feeds(missing, seed=seed, dims=_dims(args.dim)), **given}


def _summary(array: np.ndarray) -> str:
    if array.size == 0:
        return "empty"
    values = array.astype(np.float64)
    text = f"min {values.min():.6g}  max {values.max():.6g}  mean {values.mean():.6g}"
    if array.dtype.kind in "iu" and array.dtype.itemsize <= 2:
        info = np.iinfo(array.dtype)
        saturated = int(np.count_nonzero((array == info.min) | (array == info.max)))
        text += f"  at type limits {saturated}/{array.size}"
    nans = int(np.isnan(values).sum())
    if nans:
        text += f"  NaN {nans}"
    return text


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name[:100]) or "tensor"


def _file_name(stem: str, taken: set[str]) -> str:
    """``stem.npy``, or ``stem-2.npy``, ``stem-3.npy``...: the first not in ``taken`` (compared case-insensitively,
    as some file systems compare), which it joins."""
    name, number = f"{stem}.npy", 1
    while name.casefold() in taken:
        number += 1
        name = f"{stem}-{number}.npy"
    taken.add(name.casefold())
    return name


def _save_tensors(directory: Path, inputs: dict, outputs: dict) -> None:
    """Each tensor in a file of its own, ``input_<name>.npy`` or ``<name>.npy`` with unsafe characters
    replaced and a ``-N`` suffix where two names would share a file; ``index.json`` maps every
    tensor name to its file: ``{"inputs": {name: file}, "outputs": {name: file}}``."""
    taken = {"index.json"}
    index = {
        group: {name: _file_name(prefix + _safe_name(name), taken) for name in tensors}
        for group, prefix, tensors in (("inputs", "input_", inputs), ("outputs", "", outputs))
    }
    try:
        for group, tensors in (("inputs", inputs), ("outputs", outputs)):
            for name, value in tensors.items():
                np.save(directory / index[group][name], value)
        (directory / "index.json").write_text(json.dumps(index, indent=2))
    except OSError as exc:
        raise RefquantError(f"--save {directory}: cannot write: {exc.strerror or exc}") from None


def cmd_run(args) -> int:
    from refquant.session import Session

    out = check_writable(args.save, "--save", directory=True) if args.save else None
    session = Session(args.model, profile=args.profile)
    feeds = _feeds_for(session, args)
    given = set(_parse_assignments(args.input, "--input"))
    outputs = session.run(None, feeds)
    print(f"model {args.model}  profile {session.profile.name}  seed {args.seed}")
    for spec in session.inputs:
        origin = "given" if spec.name in given else "random"
        print(f"  input  {spec.name}: {feeds[spec.name].dtype} {list(feeds[spec.name].shape)} ({origin})")
    for spec, value in zip(session.outputs, outputs):
        print(f"  output {spec.name}: {value.dtype} {list(value.shape)}  {_summary(value)}")
    if out:
        _save_tensors(_make_dir(args.save, "--save"), feeds, {s.name: v for s, v in zip(session.outputs, outputs)})
        print(f"saved inputs and outputs to {out}/ (index.json names each file)")
    return 0


def cmd_ops(args) -> int:
    from refquant.registry import supported_ops

    by_op: dict[tuple[str, str], list[int]] = {}
    for domain, op_type, version in supported_ops():
        by_op.setdefault((domain or "ai.onnx", op_type), []).append(version)
    width = max(len(op) for _, op in by_op)
    for (domain, op_type), versions in sorted(by_op.items()):
        print(f"{domain:14} {op_type:{width}}  {', '.join(map(str, versions))}")
    return 0


# -- refquant debug ----------------------------------------------------------------------


def cmd_debug(args) -> int:
    from refquant.calibration.data import feed_source
    from refquant.debug import debug, model_inputs
    from refquant.model import load_model

    _check_outputs(json_file=args.json, plot_file=args.plot)
    float_model, quant = load_model(args.float_model), load_model(args.quant_model)
    batches = next(iter(feed_source(args.data, model_inputs(quant)).passes(1)))
    errors = debug(float_model, quant, batches, profile=args.profile)
    if not errors:
        raise RefquantError("no tensor of the quantized model matches the float model by name")
    width = max(len(e.name) for e in errors)
    print(f"{'tensor':{width}}  {'kind':10}  {'SQNR dB':>9}  {'max|err|':>10}  {'cosine':>8}")
    for e in errors:
        print(f"{e.name:{width}}  {e.kind:10}  {e.sqnr:9.2f}  {e.max_abs_error:10.4g}  {e.cosine:8.5f}")
    _write_json(args.json, [e.to_dict() for e in errors])
    if args.plot:
        graph = float_model.graph
        layers = [value.name for value in graph.input] + [name for node in graph.node for name in node.output]
        depth = {name: i for i, name in enumerate(layers)}
        activations = [e for e in errors if e.kind == "activation"]
        _plot_sqnr(sorted(activations, key=lambda e: depth.get(e.name, len(depth))), args.plot)
    return 0


def _plot_sqnr(activations, path: str) -> None:
    """A bar per activation, in the float model's graph order (input to output)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RefquantError("--plot needs matplotlib (pip install 'refquant[plot]')") from None
    figure, axes = plt.subplots(figsize=(max(6, 0.4 * len(activations)), 4))
    axes.bar(range(len(activations)), [e.sqnr for e in activations])
    axes.set_xticks(range(len(activations)), [e.name for e in activations], rotation=90, fontsize=7)
    axes.set_ylabel("SQNR (dB)")
    axes.set_title("float model vs quantized model, by layer")
    figure.tight_layout()
    figure.savefig(path)
    print(f"wrote {path}")


# -- engine comparisons (backends imported lazily) -------------------------------------


def _names(text: str, known, what: str) -> list[str]:
    """The comma-separated names in ``text``, each one of ``known``."""
    known = list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RefquantError(f"unknown {what}(s) {unknown}; known: {', '.join(known)}")
    return names


def _backend_names(text: str | None) -> list[str]:
    """Names from ``a,b``; by default every available backend but ``reference`` (it is the baseline)."""
    import refquant.backends as backends

    if text:
        return _names(text, backends.names(), "backend")
    return [n for n, status in backends.available().items() if status and n != "reference"]


def _unavailable_lines(names: list[str]) -> list[str]:
    import refquant.backends as backends

    return [f"  {n}: {status.reason}" for n, status in backends.available().items() if not status and n not in names]


def _write_json(path: str | None, payload) -> None:
    """Write ``payload`` to --json ``path`` (checked by :func:`_check_outputs` before the work)."""
    if path:
        try:
            Path(path).write_text(json.dumps(payload, indent=2, default=str))
        except OSError as exc:
            raise RefquantError(f"--json {path}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {path}")


def cmd_check(args) -> int:
    from dataclasses import asdict

    from refquant.backends import conformance, report

    per_op = _bounded(args.per_op, "--per-op", 0, MAX_PER_OP)
    seed = _bounded(args.seed, "--seed", 0, MAX_SEED)
    _check_outputs(json_file=args.json, failures_dir=args.save_failures)
    time_limit = _time_limit(args.time_limit)
    names = _backend_names(args.backends)
    run = conformance.check(names, per_op=per_op, seed=seed, progress=report.Progress("check"), time_limit=time_limit)
    rows, failures = run
    print(report.check_table(rows))
    if run.stopped:
        print(f"stopped at --time-limit {args.time_limit:g} s: ran {run.ran} of {run.planned} cases")
    skipped = _unavailable_lines(names)
    if skipped:
        print("not available here:")
        print("\n".join(skipped))
    for case, result in failures:
        print(f"{result.verdict.upper()}: {case.name} on {result.backend}" + (f": {result.message}" if result.message else ""))
        if args.save_failures:
            print(f"  saved {conformance.save_reproducer(Path(args.save_failures), case, [result])}")
    _write_json(args.json, {"rows": [asdict(r) for r in rows],
                            "failures": [{"case": c.name, **r.to_dict()} for c, r in failures]})
    return 1 if failures else 0


def cmd_compare(args) -> int:
    from refquant.backends import conformance, report

    from refquant.session import Session

    if args.save and not args.all_tensors:
        raise RefquantError("--save writes the first unexplained node's reproducer: it needs --all-tensors")
    _check_outputs(json_file=args.json, save_dir=args.save)
    feeds = _feeds_for(Session(args.model), args)
    results = conformance.compare(args.model, feeds, _backend_names(args.backends), all_tensors=args.all_tensors)
    print(report.comparison(results, all_tensors=args.all_tensors))
    if args.save:
        diverging: dict[str, list[str]] = {}  # first unexplained tensor -> the backends that diverge there
        for result in results:
            first = result.first_unexplained()
            if first is not None:
                diverging.setdefault(first.name, []).append(result.backend)
        for name, names in diverging.items():
            case = conformance.node_reproducer(args.model, feeds, name)
            rerun = conformance.compare(case.model, case.feeds, names)
            saved = conformance.save_reproducer(Path(args.save), case, rerun)
            print(f"saved the node computing {name} ({', '.join(names)}): {saved}")
    _write_json(args.json, [r.to_dict() for r in results])
    return 1 if any(r.verdict in ("unexplained", "error") for r in results) else 0


def cmd_fuzz(args) -> int:
    from refquant.backends import conformance, report

    ops = _names(args.ops, conformance.SUITE_OPS, "operator") if args.ops else list(conformance.SUITE_OPS)
    examples = _bounded(args.examples, "--examples", 1, MAX_EXAMPLES)
    seed = _bounded(args.seed, "--seed", 0, MAX_SEED)
    _check_outputs(out_dir=args.out)
    time_limit = _time_limit(args.time_limit)
    progress = report.Progress("fuzz")
    saved = conformance.fuzz(
        ops, _backend_names(args.backends), examples=examples, seed=seed, out=Path(args.out),
        progress=lambda op, n: progress(n, None, op), time_limit=time_limit,
    )
    for path in saved:
        print(f"unexplained mismatch, shrunk and saved: {path}  (refquant replay {path})")
    if saved.stopped:
        print(f"stopped at --time-limit {args.time_limit:g} s: ran {saved.ran} example(s)")
    print(f"fuzzed {', '.join(ops)}: {len(saved)} reproducer(s)")
    return 1 if saved else 0


def cmd_replay(args) -> int:
    from refquant.backends import conformance, report

    results = conformance.replay(Path(args.directory), args.backends.split(",") if args.backends else None)
    print(report.comparison(results))
    return 1 if any(r.verdict in ("unexplained", "error") for r in results) else 0


def cmd_bench(args) -> int:
    from refquant.backends import bench, report

    from refquant.model import load_model

    ops = _names(args.ops, bench.OPS, "bench case") if args.ops else list(bench.OPS)
    repeat = _bounded(args.repeat, "--repeat", 1, MAX_REPEAT)
    _check_outputs(json_file=args.json, plot_file=args.plot)
    models = [path for path in args.models.split(",") if path] if args.models else None
    for path in models or ():
        load_model(path)  # refquant's rules and errors, before an engine reads the file
    result = bench.run(
        ops,
        models=models,
        backends=_backend_names(args.backends) if args.backends else bench.DEFAULT_BACKENDS,
        repeat=1 if args.quick else repeat,
        budget_s=0.2 if args.quick else bench.BUDGET_S,
        fuzz_per_op=1 if args.quick else 10,
        progress=report.Progress("bench"),
    )
    print(bench.table(result))
    _write_json(args.json, result.to_dict())
    if args.plot:
        print(bench.plot(result, args.plot))
    return 0


# -- wiring -----------------------------------------------------------------------

#: the commands that run a model given by the user, and so take --max-memory and --max-work
LIMITED_COMMANDS = ("run", "compare", "replay", "calibrate", "debug", "bench")


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    """--max-memory and --max-work: the per-node resource budget (refquant.Limits)."""
    from refquant.budget import DEFAULT_MAX_MEMORY, DEFAULT_MAX_WORK, show_bytes

    parser.add_argument(
        "--max-memory", metavar="SIZE",
        help=f"bytes one node may allocate, e.g. 16GiB, or 'none' (default {show_bytes(DEFAULT_MAX_MEMORY)})",
    )
    parser.add_argument(
        "--max-work", metavar="N",
        help=f"multiply-adds one node may compute, e.g. 1e11, or 'none' (default {DEFAULT_MAX_WORK:.0e})",
    )


def _limits(args):
    """The Limits the command line asks for (defaults for the flags not given), or None when the command
    takes no limits."""
    from refquant.budget import Limits, parse_count, parse_size

    if not hasattr(args, "max_memory"):
        return None
    defaults = Limits()
    return Limits(
        max_memory=defaults.max_memory if args.max_memory is None else parse_size(args.max_memory, "--max-memory"),
        max_work=defaults.max_work if args.max_work is None else parse_count(args.max_work, "--max-work"),
    )


def _add_feed_options(parser: argparse.ArgumentParser) -> None:
    """--input, --dim and --seed: what _feeds_for reads."""
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="feed an input")
    parser.add_argument("--dim", action="append", default=[], metavar="NAME=N", help="size of a symbolic dimension")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")


class UsageError(RefquantError):
    """A command line argparse cannot read (an unknown option, a value that is not a number)."""


class Parser(argparse.ArgumentParser):
    """argparse with refquant's error rule: one line naming the problem and where the help is, exit status 1
    (argparse itself prints the usage and exits with status 2)."""

    def error(self, message: str):
        raise UsageError(f"{message} (`{self.prog} --help` lists the options)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="refquant", description="Golden reference for ONNX linear quantization.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a model on the reference and summarize its outputs")
    run.add_argument("model", help=f"an .onnx file (bundled examples: {EXAMPLES})")
    _add_feed_options(run)
    run.add_argument("--save", metavar="DIR", help="save inputs and outputs as .npy files")
    run.add_argument("--profile", default="spec", help="arithmetic profile (default: spec)")
    run.set_defaults(func=cmd_run)

    ops = sub.add_parser("ops", help="list supported operators and versions")
    ops.set_defaults(func=cmd_ops)

    from . import calibrate as calibration_cli

    calibration_cli.add_parser(sub)

    debug = sub.add_parser("debug", help="where quantization loses accuracy: SQNR per weight and activation")
    debug.add_argument("float_model")
    debug.add_argument("quant_model")
    debug.add_argument("--data", required=True, metavar="PATH", help=DATA_HELP)
    debug.add_argument("--profile", default="spec", help="arithmetic profile of the quantized model (default: spec)")
    debug.add_argument("--json", metavar="FILE", help="write the table as JSON")
    debug.add_argument("--plot", metavar="FILE", help="save a PNG of SQNR by layer, in graph order (needs matplotlib)")
    debug.set_defaults(func=cmd_debug)

    backends_help = "comma-separated backend names (default: every available one but 'reference')"
    check = sub.add_parser("check", help="conformance suite on every available backend (the main job)")
    check.add_argument("--backends", help=backends_help)
    check.add_argument("--per-op", type=int, default=20, help="generated cases per operator (default 20)")
    check.add_argument("--seed", type=int, default=0, help="seed of the generated cases (default 0)")
    check.add_argument("--json", metavar="FILE", help="write the table and failures as JSON")
    check.add_argument("--save-failures", metavar="DIR", help="save each failing case as a reproducer")
    check.add_argument("--time-limit", type=float, metavar="SECONDS",
                       help="start no case after this many seconds; report how many ran")
    check.set_defaults(func=cmd_check)

    compare = sub.add_parser("compare", help="run a model on backends and classify every difference")
    compare.add_argument("model")
    compare.add_argument("--backends", help=backends_help)
    _add_feed_options(compare)
    compare.add_argument("--all-tensors", action="store_true", help="compare every intermediate tensor too")
    compare.add_argument("--save", metavar="DIR", help="with --all-tensors: save the first unexplained node as a reproducer")
    compare.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    compare.set_defaults(func=cmd_compare)

    fuzz = sub.add_parser("fuzz", help="hypothesis campaign; unexplained mismatches are shrunk and saved")
    fuzz.add_argument("--ops", help="comma-separated operators (default: all)")
    fuzz.add_argument("--backends", help=backends_help)
    fuzz.add_argument("--examples", type=int, default=100, help="examples per operator (default 100)")
    fuzz.add_argument("--seed", type=int, default=0)
    fuzz.add_argument("--out", default="reproducers", help="directory for reproducers (default ./reproducers)")
    fuzz.add_argument("--time-limit", type=float, metavar="SECONDS",
                      help="start no example after this many seconds (shrinking included); report how many ran")
    fuzz.set_defaults(func=cmd_fuzz)

    replay = sub.add_parser("replay", help="re-run a saved reproducer")
    replay.add_argument("directory")
    replay.add_argument("--backends", help="override the reproducer's backends")
    replay.set_defaults(func=cmd_replay)

    bench = sub.add_parser("bench", help="median ms per call of refquant and the other engines, with ratios")
    bench.add_argument("--ops", help="comma-separated operators, 'models', 'fuzz' (default: all)")
    bench.add_argument("--models", help="comma-separated .onnx files (default: the bundled example)")
    bench.add_argument("--backends", help="comma-separated engines (default: reference, ort-cpu, onnx-reference, openvino)")
    bench.add_argument("--repeat", type=int, default=15, help="timed calls per engine and case (default 15)")
    bench.add_argument("--json", metavar="FILE", help="write the table and the machine as JSON")
    bench.add_argument("--plot", metavar="FILE", help="save a bar chart (needs matplotlib)")
    bench.add_argument("--quick", action="store_true", help="one timed call per case: a smoke run, not a measurement")
    bench.set_defaults(func=cmd_bench)
    for name in LIMITED_COMMANDS:
        _add_limit_options(sub.choices[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"refquant: error: {exc}", file=sys.stderr)
        return 1
    try:
        from refquant.budget import use_limits

        limits = _limits(args)
        with use_limits(limits) if limits is not None else contextlib.nullcontext():
            return args.func(args)
    except RefquantError as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).splitlines())  # one line, even where a name in the model holds a newline
        print(f"refquant: error: {message}", file=sys.stderr)
        return 1
    except MemoryError:
        if args.debug:
            raise
        print("refquant: error: out of memory; --max-memory sets what one node may allocate", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("refquant: interrupted", file=sys.stderr)
        return 130

