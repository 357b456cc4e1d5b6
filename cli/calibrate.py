"""``refquant calibrate``: calibrate a float model and write calibration tables.

    refquant calibrate MODEL --data PATH --method minmax|entropy|percentile|distribution
                       [method options] --out DIR [--format json,flatbuffers,cache,trt] [--plot DIR]

Writes the requested tables and ``ranges.json`` (every TensorRange, exactly)
into DIR. Who computes the activations (``--runner``): ``auto`` (the default)
runs onnxruntime itself when it is installed and ``--compat onnxruntime``, with
the session settings of onnxruntime's calibrators, so the tables are the ones
onnxruntime writes on this machine; otherwise the refquant interpreter under
``--profile`` (default: ``onnxruntime`` for ``--compat onnxruntime``, which replays
onnxruntime's float kernels, ``spec`` for ``--compat fixed``). Only backends.ort_runner,
imported inside :func:`_runner`, touches onnxruntime; this module reads its version from metadata.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from importlib import metadata
import sys
from pathlib import Path

import numpy as np

from refquant import ort_releases
from refquant.errors import RefquantError
from refquant.files import check_writable
from refquant.calibration.api import CALIBRATORS, calibrate
from refquant.calibration.core import COMPAT_MODES
from refquant.calibration.data import DATA_HELP, default_profile
from refquant.calibration.tables import AMAX_RULES, FORMATS, write_tables

__all__ = ["add_parser", "run"]

#: CLI flag -> calibrator option, for the options given on the command line only
_OPTIONS = (
    "symmetric",
    "per_channel",
    "moving_average",
    "averaging_constant",
    "num_bins",
    "num_quantized_bins",
    "percentile",
    "scenario",
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``calibrate`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "calibrate",
        help="compute activation ranges (onnxruntime's calibrators) and write calibration tables",
        description="Calibrate a float model on data and write calibration tables. Method options left out "
        "take onnxruntime's create_calibrator defaults.",
    )
    parser.add_argument("model", help="the float .onnx model")
    parser.add_argument("--data", required=True, metavar="PATH", help=DATA_HELP)
    parser.add_argument("--method", default="minmax", choices=sorted(CALIBRATORS))
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the tables and ranges.json")
    parser.add_argument(
        "--format",
        default="json,flatbuffers,cache",
        metavar="LIST",
        help=f"comma-separated tables to write, of {','.join(FORMATS)} (default: json,flatbuffers,cache)",
    )
    parser.add_argument("--amax", default="onnxruntime", choices=AMAX_RULES, help="value of the one-value tables")
    parser.add_argument("--compat", default="onnxruntime", choices=COMPAT_MODES)
    parser.add_argument(
        "--runner",
        default="auto",
        choices=("auto", "onnxruntime", "refquant"),
        help="who computes the activations: onnxruntime itself, or the refquant interpreter (auto: onnxruntime "
        "when installed and --compat onnxruntime, else refquant)",
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="interpreter profile of --runner refquant (default: onnxruntime with --compat onnxruntime, "
        "spec with --compat fixed)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="intra-op threads of the onnxruntime runner (default 0: onnxruntime's default, as its calibrators)",
    )
    parser.add_argument("--op-types", metavar="LIST", help="calibrate only these node types (comma-separated)")
    parser.add_argument("--plot", metavar="DIR", help="save a PNG histogram per tensor (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    options = parser.add_argument_group("method options")
    options.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=None)
    options.add_argument("--per-channel", action="store_true", default=None)
    options.add_argument("--moving-average", action="store_true", default=None)
    options.add_argument("--averaging-constant", type=float)
    options.add_argument("--num-bins", type=int)
    options.add_argument("--num-quantized-bins", type=int)
    options.add_argument("--percentile", type=float)
    options.add_argument("--scenario", choices=("same", "p3"))
    parser.set_defaults(func=run)
    return parser


class _ProgressBar:
    """One stderr line per pass: ``pass 1/2 [#####.....] 32/64 batches``."""

    def __init__(self, stream=None, width: int = 30):
        self.stream, self.width = stream or sys.stderr, width  # sys.stderr now, not at import time

    def __call__(self, pass_number: int, passes: int, done: int, total: int | None) -> None:
        if total:
            filled = self.width * done // total
            bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        else:
            bar = f"{done}"
        end = "\n" if total and done == total else ""
        self.stream.write(f"\rpass {pass_number}/{passes} {bar} batches{end}")
        self.stream.flush()


def _formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise RefquantError(f"--format: unknown table format(s) {unknown}; choose from {','.join(FORMATS)}")
    return formats


def _onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _runner(args):
    """(runner or None for refquant.calibrate's default, profile or None, a description of who runs the model)."""
    choice = args.runner
    if choice == "auto":
        choice = "onnxruntime" if args.compat == "onnxruntime" and _onnxruntime_installed() else "refquant"
    if choice == "refquant":
        profile = args.profile or default_profile(args.compat)
        return None, profile, f"refquant interpreter, profile {profile}"
    if args.profile:
        raise RefquantError(
            "--profile sets the refquant interpreter's arithmetic; it has no effect with --runner onnxruntime"
        )
    try:
        from refquant.backends.ort_runner import make_runner

        version = metadata.version("onnxruntime")  # the installed release, read without importing the engine
    except (ImportError, metadata.PackageNotFoundError) as exc:
        raise RefquantError(f"--runner onnxruntime needs onnxruntime and refquant's backends package ({exc})") from None
    release = ".".join(version.split(".")[:2])
    if release not in ort_releases.RELEASES:
        print(
            f"warning: onnxruntime {version} runs the model, but refquant reproduces the "
            f"calibrators of onnxruntime {', '.join(ort_releases.RELEASES)} (refquant/ort_releases.py)",
            file=sys.stderr,
        )
    runner = make_runner(args.model, op_types=_op_types(args), intra_op_threads=args.threads)
    return runner, None, f"onnxruntime {version}"


def _op_types(args):
    return [t.strip() for t in args.op_types.split(",") if t.strip()] if args.op_types else None


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "tensor"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RefquantError("--plot needs matplotlib: pip install 'refquant[plot]'") from None
    return plt


def _plot(ranges, directory: Path, plt) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    drawn = 0
    for name, tensor_range in ranges.items():
        if tensor_range.hist is None:
            continue
        figure, axes = plt.subplots(figsize=(8, 4))
        axes.stairs(tensor_range.hist, tensor_range.edges, fill=True, color="0.6")
        for value, label in ((tensor_range.low, "low"), (tensor_range.high, "high")):
            axes.axvline(float(value), color="tab:red", linestyle="--", label=f"{label} {float(value):.6g}")
        axes.set_yscale("symlog")
        axes.set_title(f"{name} ({tensor_range.method})")
        axes.set_xlabel("value")
        axes.set_ylabel("count")
        axes.legend()
        figure.savefig(directory / f"{_safe_name(name)}.png", dpi=80)
        plt.close(figure)
        drawn += 1
    return drawn


def run(args) -> int:
    """Run ``refquant calibrate``; user errors raise RefquantError."""
    formats = _formats(args.format)
    options = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None}
    if args.plot and args.method == "minmax":
        raise RefquantError("--plot draws histograms; use a histogram method (entropy, percentile, distribution)")
    out = check_writable(args.out, "--out", directory=True)
    if args.plot:
        check_writable(args.plot, "--plot", directory=True)
    plt = _pyplot() if args.plot else None
    runner, profile, runner_text = _runner(args)
    ranges = calibrate(
        args.model,
        args.data,
        args.method,
        runner=runner,
        profile=profile,
        op_types=_op_types(args),
        compat=args.compat,
        progress=None if args.quiet else _ProgressBar(),
        finite_data=True,
        **options,
    )
    try:
        written = write_tables(ranges, out, formats, amax_rule=args.amax)
        (out / "ranges.json").write_text(json.dumps({name: r.to_dict() for name, r in ranges.items()}))
    except OSError as exc:
        raise RefquantError(f"--out {out}: cannot write the tables: {exc.strerror or exc}") from None
    width = max(len(name) for name in ranges)
    for name, tensor_range in ranges.items():
        print(f"  {name:{width}}  {_show(tensor_range.low):>14} {_show(tensor_range.high):>14}")
    print(
        f"{args.method}: {len(ranges)} tensors (activations: {runner_text}); "
        f"wrote {', '.join(p.name for p in written)}, ranges.json to {out}/"
    )
    if args.plot:
        print(f"plotted {_plot(ranges, Path(args.plot), plt)} histograms to {args.plot}/")
    return 0


def _show(value) -> str:
    array = np.asarray(value)
    return f"{float(array.item()):.7g}" if array.size == 1 else f"({array.size} channels)"
