"""The 45 ONNX backend node cases for the quantization operators, bit-exact.

The onnx wheel ships no data files; the cases are generated in memory by
onnx.backend.test.case.node.collect_testcases(). Their expected outputs are an
independent source (hand-written or computed by the ONNX test generators).
"""

import pytest

import refquant

from .helpers import assert_bit_exact, node_cases, to_array

QUANT_CASES = node_cases(
    r"^test_(quantizelinear|dequantizelinear|qlinearconv|qlinearmatmul|matmulinteger|convinteger|dynamicquantizelinear)"
)


def test_all_45_cases_are_collected():
    assert len(QUANT_CASES) == 45
    assert sum(c.name.endswith("_expanded") for c in QUANT_CASES) == 3


@pytest.mark.parametrize("case", QUANT_CASES, ids=lambda c: c.name)
def test_node_case_bit_exact(case):
    session = refquant.Session(case.model)
    for inputs, expected in case.data_sets:
        feeds = {spec.name: to_array(value) for spec, value in zip(case.model.graph.input, inputs)}
        outputs = session.run(None, feeds)
        assert len(outputs) == len(expected)
        for spec, got, want in zip(case.model.graph.output, outputs, expected):
            assert_bit_exact(got, to_array(want), spec.name)
