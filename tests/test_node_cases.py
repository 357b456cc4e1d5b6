"""The 45 ONNX backend node cases for the quantization operators, bit-exact.

The onnx wheel ships no data files; the cases are generated in memory by
onnx.backend.test.case.node.collect_testcases(). Their expected outputs are an
independent source (hand-written or computed by the ONNX test generators).
"""

import pytest

from .helpers import assert_bit_exact, node_case_runs, node_cases

QUANT_CASES = node_cases(
    r"^test_(quantizelinear|dequantizelinear|qlinearconv|qlinearmatmul|matmulinteger|convinteger|dynamicquantizelinear)"
)


def test_all_45_cases_are_collected():
    assert len(QUANT_CASES) == 45
    assert sum(c.name.endswith("_expanded") for c in QUANT_CASES) == 3


@pytest.mark.parametrize("case", QUANT_CASES, ids=lambda c: c.name)
def test_node_case_bit_exact(case):
    for outputs, expected in node_case_runs(case):
        assert len(outputs) == len(expected)
        for spec, got, want in zip(case.model.graph.output, outputs, expected):
            assert_bit_exact(got, want, spec.name)
