"""The ``refquant`` command.

    refquant check [--backends a,b] [--per-op N] [--seed S] [--json FILE] [--save-failures DIR]
    refquant compare MODEL [--backends a,b] [--input NAME=FILE.npy ...] [--all-tensors] [--json FILE]
    refquant fuzz [--ops ...] [--backends ...] [--examples N] [--seed S] [--out DIR]
    refquant replay DIR [--backends a,b]
    refquant run MODEL [--input NAME=FILE.npy ...] [--seed N] [--save DIR]
    refquant calibrate MODEL --data PATH --method minmax|entropy|percentile|distribution --out DIR
    refquant ops

Errors print one line on stderr and exit non-zero; ``--debug`` shows the traceback.
Subcommands that compare engines import ``backends`` lazily, inside their
function, so that ``run`` and ``ops`` work with numpy and onnx alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .errors import RefquantError

__all__ = ["main"]

EXAMPLES = Path(__file__).parent / "examples"


# -- refquant run ---------------------------------------------------------------


def _parse_assignments(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise RefquantError(f"{what} must look like NAME=VALUE, got {item!r}")
        pairs[name] = value
    return pairs


def random_feeds(inputs, *, seed: int, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded random feeds for the given input specs.

    Floats: standard normal. Integers: uniform over the whole type range.
    A symbolic or unknown dimension is taken from ``dims`` (by name), else 1.
    """
    from .dtypes import qtype

    rng = np.random.default_rng(seed)
    dims = dims or {}
    feeds = {}
    for spec in inputs:
        if spec.shape is None:
            raise RefquantError(f"input '{spec.name}' has no declared shape; pass it with --input")
        shape = tuple(d if isinstance(d, int) and d > 0 else dims.get(d, 1) for d in spec.shape)
        dtype = spec.dtype
        if dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(np.bool_)
        elif dtype.kind in "iu" or (dtype.kind == "V" and not qtype(dtype).is_float):
            lo, hi = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "iu" else (
                qtype(dtype).qmin,
                qtype(dtype).qmax,
            )
            feeds[spec.name] = rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _feeds_for(session, args) -> dict:
    """--input arrays, plus seeded random feeds (sized by --dim) for every input not given."""
    given = {}
    for name, path in _parse_assignments(args.input, "--input").items():
        try:
            given[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise RefquantError(f"cannot load --input {name}={path}: {exc}") from None
    dims = {k: int(v) for k, v in _parse_assignments(args.dim, "--dim").items()}
    missing = [spec for spec in session.inputs if spec.name not in given]
    return {**random_feeds(missing, seed=args.seed, dims=dims), **given}


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
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "tensor"


def cmd_run(args) -> int:
    from .session import Session

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
    if args.save:
        out = Path(args.save)
        out.mkdir(parents=True, exist_ok=True)
        for name, value in feeds.items():
            np.save(out / f"input_{_safe_name(name)}.npy", value)
        for spec, value in zip(session.outputs, outputs):
            np.save(out / f"{_safe_name(spec.name)}.npy", value)
        print(f"saved inputs and outputs to {out}/")
    return 0


def cmd_ops(args) -> int:
    from .registry import supported_ops

    by_op: dict[tuple[str, str], list[int]] = {}
    for domain, op_type, version in supported_ops():
        by_op.setdefault((domain or "ai.onnx", op_type), []).append(version)
    width = max(len(op) for _, op in by_op)
    for (domain, op_type), versions in sorted(by_op.items()):
        print(f"{domain:14} {op_type:{width}}  {', '.join(map(str, versions))}")
    return 0


# -- engine comparisons (backends imported lazily) -------------------------------------


def _backend_names(text: str | None) -> list[str]:
    """Names from ``a,b``; by default every available backend but ``reference`` (it is the baseline)."""
    import backends

    if text:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in backends.names()]
        if unknown:
            raise RefquantError(f"unknown backend(s) {unknown}; known: {', '.join(backends.names())}")
        return names
    return [n for n, status in backends.available().items() if status and n != "reference"]


def _unavailable_lines(names: list[str]) -> list[str]:
    import backends

    return [f"  {n}: {status.reason}" for n, status in backends.available().items() if not status and n not in names]


def _write_json(path: str | None, payload) -> None:
    if path:
        import json

        Path(path).write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {path}")


def cmd_check(args) -> int:
    from dataclasses import asdict

    from backends import conformance, report

    names = _backend_names(args.backends)
    rows, failures = conformance.check(
        names, per_op=args.per_op, seed=args.seed, progress=report.Progress("check")
    )
    print(report.check_table(rows))
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
    from backends import conformance, report

    from .session import Session

    feeds = _feeds_for(Session(args.model), args)
    results = conformance.compare(args.model, feeds, _backend_names(args.backends), all_tensors=args.all_tensors)
    print(report.comparison(results, all_tensors=args.all_tensors))
    _write_json(args.json, [r.to_dict() for r in results])
    return 1 if any(r.verdict in ("unexplained", "error") for r in results) else 0


def cmd_fuzz(args) -> int:
    from backends import conformance, report

    ops = args.ops.split(",") if args.ops else list(conformance.SUITE_OPS)
    unknown = [op for op in ops if op not in conformance.SUITE_OPS]
    if unknown:
        raise RefquantError(f"cannot fuzz {unknown}; choose from {', '.join(conformance.SUITE_OPS)}")
    progress = report.Progress("fuzz")
    saved = conformance.fuzz(
        ops, _backend_names(args.backends), examples=args.examples, seed=args.seed, out=Path(args.out),
        progress=lambda op, n: progress(n, None, op),
    )
    for path in saved:
        print(f"unexplained mismatch, shrunk and saved: {path}  (refquant replay {path})")
    print(f"fuzzed {', '.join(ops)}: {len(saved)} reproducer(s)")
    return 1 if saved else 0


def cmd_replay(args) -> int:
    from backends import conformance, report

    results = conformance.replay(Path(args.directory), args.backends.split(",") if args.backends else None)
    print(report.comparison(results))
    return 1 if any(r.verdict in ("unexplained", "error") for r in results) else 0


# -- wiring -----------------------------------------------------------------------


def _add_feed_options(parser: argparse.ArgumentParser) -> None:
    """--input, --dim and --seed: what _feeds_for reads."""
    parser.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="feed an input")
    parser.add_argument("--dim", action="append", default=[], metavar="NAME=N", help="size of a symbolic dimension")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refquant", description="Golden reference for ONNX linear quantization.")
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

    from .calibration import cli as calibration_cli

    calibration_cli.add_parser(sub)

    backends_help = "comma-separated backend names (default: every available one but 'reference')"
    check = sub.add_parser("check", help="conformance suite on every available backend (the main job)")
    check.add_argument("--backends", help=backends_help)
    check.add_argument("--per-op", type=int, default=20, help="generated cases per operator (default 20)")
    check.add_argument("--seed", type=int, default=0, help="seed of the generated cases (default 0)")
    check.add_argument("--json", metavar="FILE", help="write the table and failures as JSON")
    check.add_argument("--save-failures", metavar="DIR", help="save each failing case as a reproducer")
    check.set_defaults(func=cmd_check)

    compare = sub.add_parser("compare", help="run a model on backends and classify every difference")
    compare.add_argument("model")
    compare.add_argument("--backends", help=backends_help)
    _add_feed_options(compare)
    compare.add_argument("--all-tensors", action="store_true", help="compare every intermediate tensor too")
    compare.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    compare.set_defaults(func=cmd_compare)

    fuzz = sub.add_parser("fuzz", help="hypothesis campaign; unexplained mismatches are shrunk and saved")
    fuzz.add_argument("--ops", help="comma-separated operators (default: all)")
    fuzz.add_argument("--backends", help=backends_help)
    fuzz.add_argument("--examples", type=int, default=100, help="examples per operator (default 100)")
    fuzz.add_argument("--seed", type=int, default=0)
    fuzz.add_argument("--out", default="reproducers", help="directory for reproducers (default ./reproducers)")
    fuzz.set_defaults(func=cmd_fuzz)

    replay = sub.add_parser("replay", help="re-run a saved reproducer")
    replay.add_argument("directory")
    replay.add_argument("--backends", help="override the reproducer's backends")
    replay.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RefquantError as exc:
        if args.debug:
            raise
        print(f"refquant: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("refquant: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
