"""refquant against onnx.reference on QLinearConv and QLinearMatMul: a shortcut to `refquant bench`.

    python benchmarks/bench_integer.py [--repeat N] [--json FILE] [--quick]

is ``refquant bench --ops QLinearConv,QLinearMatMul --backends reference,onnx-reference`` with
those options; `refquant bench --help` lists them all.
"""

from __future__ import annotations

import sys

from refquant.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--ops", "QLinearConv,QLinearMatMul", "--backends", "reference,onnx-reference", *sys.argv[1:]]))
