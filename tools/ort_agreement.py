"""Bit-exact agreement of refquant's onnxruntime profile with onnxruntime CPU on generated cases.

    python tools/ort_agreement.py [--per-op 600] [--seed 0]

For QLinearConv, QLinearMatMul, MatMulInteger and QuantizeLinear, draws cases from
refquant.backends.strategies restricted to the type combinations onnxruntime CPU has kernels for,
runs them on `reference-ort` and on `ort-cpu` (graph optimizations disabled) and compares
every output bit for bit. Cases onnxruntime still refuses are counted apart. Prints one
line per op and the total; exits 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from hypothesis import strategies as st
from onnx import TensorProto as T

import refquant.backends as backends
from refquant.backends import conformance
from refquant.backends.base import BackendError, UnsupportedOnBackend
from refquant.backends import strategies as rqs

#: onnxruntime CPU kernels: QLinear ops on (u8, u8|s8, u8) and (s8, s8, s8); Q to 8/16-bit integers
STRATEGIES = {
    "QLinearConv": st.one_of(
        rqs.qlinear_conv_models(13, flavors=["U8U8", "U8S8"], output_types=[T.UINT8]),
        rqs.qlinear_conv_models(13, flavors=["S8S8"], output_types=[T.INT8]),
    ),
    "QLinearMatMul": rqs.qlinear_matmul_models(
        13, element_types=[(T.UINT8, T.UINT8, T.UINT8), (T.UINT8, T.INT8, T.UINT8), (T.INT8, T.INT8, T.INT8)]
    ),
    "MatMulInteger": rqs.matmul_integer_models(13),
    "QuantizeLinear": rqs.quantize_linear_models(
        21, element_types=[T.UINT8, T.INT8, T.UINT16, T.INT16], input_types=[T.FLOAT]
    ),
}


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-op", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ref, ort = backends.get("reference-ort"), backends.get("ort-cpu")
    total = {"agree": 0, "disagree": 0, "unsupported": 0, "ort error": 0}
    for op, strategy in STRATEGIES.items():
        counts = {"agree": 0, "disagree": 0, "unsupported": 0, "ort error": 0}
        for case in conformance.draw_cases(strategy, args.per_op, seed=args.seed):
            try:
                expected = ort.run(case.model, case.feeds)
            except UnsupportedOnBackend:
                counts["unsupported"] += 1
                continue
            except BackendError as exc:
                print(f"  {op}: ort-cpu error: {exc}")
                counts["ort error"] += 1
                continue
            got = ref.run(case.model, case.feeds)
            same = all(_same_bits(got[k], v) for k, v in expected.items())
            counts["agree" if same else "disagree"] += 1
            if not same:
                print(f"  {op}: DISAGREE")
        print(f"{op:16} " + "  ".join(f"{k} {v:5}" for k, v in counts.items()))
        for k in total:
            total[k] += counts[k]
    print(f"{'total':16} " + "  ".join(f"{k} {v:5}" for k, v in total.items()))
    return 1 if total["disagree"] else 0


if __name__ == "__main__":
    sys.exit(main())
