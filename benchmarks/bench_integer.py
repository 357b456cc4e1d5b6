"""refquant.Session vs onnx.reference.ReferenceEvaluator on QLinearConv and QLinearMatMul.

    python benchmarks/bench_integer.py [--repeat N]

Prints the median milliseconds per call of each, their ratio, and whether the
outputs are identical. They are on these inputs; in general onnx.reference
rounds the multiplier a_scale * b_scale / y_scale to float32 and may differ by 1
at rare ties (spec/ops/integer.md). Time it on an otherwise idle machine: BLAS
threads slow down sharply when other processes hold the cores.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import refquant
from refquant.dtypes import proto_of


def _model(op_type, inputs, initializers, attrs=None):
    """One-node model: ``inputs`` (graph inputs) then ``initializers``, in the op's input order."""
    graph = helper.make_graph(
        [helper.make_node(op_type, list(inputs) + list(initializers), ["y"], **(attrs or {}))],
        op_type.lower(),
        [helper.make_tensor_value_info(n, proto_of(a.dtype), a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info("y", T.UINT8, None)],
        [numpy_helper.from_array(a, n) for n, a in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def qlinearconv_case(rng):
    """u8 x (1x64x56x56), s8 w (64x64x3x3), pad 1, int32 bias -> u8."""
    x = rng.integers(0, 256, (1, 64, 56, 56), dtype=np.uint8)
    w = rng.integers(-128, 128, (64, 64, 3, 3), dtype=np.int8)
    constants = {
        "x_scale": np.array(0.02, np.float32),
        "x_zero_point": np.array(128, np.uint8),
        "w": w,
        "w_scale": np.array(0.005, np.float32),
        "w_zero_point": np.array(0, np.int8),
        "y_scale": np.array(0.5, np.float32),
        "y_zero_point": np.array(100, np.uint8),
        "B": rng.integers(-5000, 5000, 64).astype(np.int32),
    }
    model = _model("QLinearConv", {"x": x}, constants, {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]})
    return model, {"x": x}


def qlinearmatmul_case(rng):
    """u8 a (256x512) . s8 b (512x256) -> u8."""
    a = rng.integers(0, 256, (256, 512), dtype=np.uint8)
    constants = {
        "a_scale": np.array(0.02, np.float32),
        "a_zero_point": np.array(128, np.uint8),
        "b": rng.integers(-128, 128, (512, 256), dtype=np.int8),
        "b_scale": np.array(0.005, np.float32),
        "b_zero_point": np.array(0, np.int8),
        "y_scale": np.array(4.0, np.float32),
        "y_zero_point": np.array(128, np.uint8),
    }
    model = _model("QLinearMatMul", {"a": a}, constants)
    return model, {"a": a}


def median_ms(run, repeat: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'case':<44} {'refquant ms':>12} {'onnx.reference ms':>18} {'speed-up':>9}  identical")
    for name, build in (
        ("QLinearConv u8 x s8 -> u8, 1x64x56x56 * 64x64x3x3", qlinearconv_case),
        ("QLinearMatMul u8 . s8 -> u8, 256x512 @ 512x256", qlinearmatmul_case),
    ):
        model, feeds = build(rng)
        session, reference = refquant.Session(model), ReferenceEvaluator(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, theirs = session.run(None, feeds)[0], reference.run(None, feeds)[0]
            t_ours = median_ms(lambda: session.run(None, feeds), args.repeat)
            t_ref = median_ms(lambda: reference.run(None, feeds), max(3, args.repeat // 3))
        identical = ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
        print(f"{name:<44} {t_ours:>12.2f} {t_ref:>18.1f} {t_ref / t_ours:>8.1f}x  {identical}")


if __name__ == "__main__":
    main()
