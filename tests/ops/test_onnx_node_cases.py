"""ONNX backend node cases of the float kernels, every module together: refquant/ops/elementwise.py,
activations.py, linalg.py, reduce.py, tensor.py (Cast with conversion.py), shape.py, normalization.py, nn.py (ConvTranspose,
GlobalMaxPool) and resize.py (spec/ops/float.md, spec/ops/nn.md).

One loop over the single-node cases of these ops runs each case through ``refquant.Session``. It stays
in one file, not split by kernel module, so that its comparison rule, the table of cases skipped or
contradicting the spec, and the case counts (onnx 1.23.2) exist once. Conv and MaxPool's node cases are
in test_nn.py; each kernel module's other tests are in tests/ops/test_<module>.py.

Expected values come from independent sources:
- the ONNX backend node cases (expected outputs written by the ONNX test generators): bit for bit for the
  plain operators (spec/ops/float.md) and where the op moves, selects or compares values; within the
  case's tolerance for float math (MatMul and Gemm: the case's rtol and atol; the others: rtol at least 1e-6);
- where a generated Cast expectation contradicts the ONNX spec, the spec's value, computed here from the
  documents (spec/ops/float.md, "ONNX node cases that disagree with the spec").
"""

from __future__ import annotations

import copy
import dataclasses
import re

import ml_dtypes
import numpy as np
import onnx
import pytest

import refquant

from ..helpers import node_cases, to_array
from .helpers import (
    CONTRADICTS_THE_TEXT,
    assert_same_bits,
    spec_cast_to_float4e2m1,
    spec_cast_to_sub_byte_int,
)

#: the plain operators of spec/ops/float.md: node cases bit for bit, MatMul and Gemm within the case's tolerance
PLAIN_OPS = {
    "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Round", "Min", "Max", "MatMul", "Gemm", "ReduceMin", "ReduceMax",
    "Cast", "Identity", "Constant", "Flatten", "Reshape",
}  # fmt: skip
INDEXING_AND_LAYER_OPS = (
    "ConvTranspose Resize ArgMax TopK CumSum GatherElements InstanceNormalization LogSoftmax GlobalMaxPool Range"
).split()
#: the other float ops whole quantized models need
MODEL_OPS = (
    "Transpose Concat Split Slice Squeeze Unsqueeze Gather Shape Expand ConstantOfShape Pad "
    "Where Equal Less Greater Not "
    "Softmax ReduceMean ReduceSum Pow Sqrt Exp Erf Tanh Sigmoid LeakyRelu HardSigmoid HardSwish "
    "LayerNormalization Gelu GlobalAveragePool AveragePool BatchNormalization"
).split()
#: the element-wise ops of issue 13: comparisons, logic and bits, unary math, Sum/Mean/Mod, activations
ELEMENTWISE_OPS = (
    "LessOrEqual GreaterOrEqual And Or Xor BitwiseAnd BitwiseOr BitwiseXor BitwiseNot BitShift "
    "Abs Neg Sign Floor Ceil Reciprocal Log Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh IsNaN IsInf "
    "Sum Mean Mod PRelu Elu Selu Celu Softplus Softsign ThresholdedRelu Mish Swish Shrink"
).split()
#: the tensor, shape, indexing and reduction ops of issue 13 (spec/ops/tensor.md)
TENSOR_INDEXING_OPS = (
    "Tile DepthToSpace SpaceToDepth Size Dropout EyeLike Trilu GatherND ScatterND ScatterElements OneHot NonZero "
    "Compress ReverseSequence Unique Einsum Det ReduceProd ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSum "
    "ReduceLogSumExp ArgMin"
).split()
#: the recurrent layers of issue 13 (spec/ops/recurrent.md): float math, within the cases' rtol 1e-3, atol 1e-7
RECURRENT_OPS = ["RNN", "GRU", "LSTM"]
#: control flow with subgraphs (spec/ops/control.md); the Scan cases of opset 9 run at 10 (Scan's schema is 9's)
CONTROL_OPS = ["If", "Loop", "Scan"]
#: the normalization, pooling, image and signal ops of issue 13 (spec/ops/image.md): float math
IMAGE_OPS = (
    "GroupNormalization RMSNormalization LpNormalization MeanVarianceNormalization Hardmax LpPool HannWindow HammingWindow "
    "BlackmanWindow GridSample AffineGrid RoiAlign MaxRoiPool CenterCropPad Col2Im MaxUnpool DFT"
).split()
#: ops whose outputs are input elements, indices, comparisons or exact integers: node cases bit for bit
EXACT_OPS = {
    "ArgMax", "TopK", "GatherElements", "GlobalMaxPool",
    "Transpose", "Concat", "Split", "Slice", "Squeeze", "Unsqueeze", "Gather", "Shape", "Expand", "ConstantOfShape",
    "Pad", "Where", "Equal", "Less", "Greater", "Not",
    "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
    "BitShift", "Abs", "Neg", "Sign", "Floor", "Ceil", "Reciprocal", "IsNaN", "IsInf", "Mod", "Shrink",
    "Tile", "DepthToSpace", "SpaceToDepth", "Size", "Dropout", "EyeLike", "Trilu", "GatherND", "ScatterND",
    "ScatterElements", "OneHot", "NonZero", "Compress", "ReverseSequence", "Unique", "ArgMin", "CenterCropPad", "MaxUnpool",
}  # fmt: skip

_ALL_CASES = node_cases(r"^test_")
FLOAT_OP_CASES = [c for c in _ALL_CASES if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in PLAIN_OPS]
EXPANDED_DQL_CASES = [c for c in _ALL_CASES if re.fullmatch(r"test_dynamicquantizelinear\w*_expanded", c.name)]


def _from_opset_10(ops):
    return [
        c
        for c in _ALL_CASES
        if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in ops and c.model.opset_import[0].version >= 10
    ]


INDEXING_AND_LAYER_CASES = _from_opset_10(INDEXING_AND_LAYER_OPS)
MODEL_OP_CASES = _from_opset_10(MODEL_OPS)
ELEMENTWISE_CASES = _from_opset_10(ELEMENTWISE_OPS)
TENSOR_INDEXING_CASES = _from_opset_10(TENSOR_INDEXING_OPS)
RECURRENT_CASES = _from_opset_10(RECURRENT_OPS)
CONTROL_CASES = _from_opset_10(CONTROL_OPS)
IMAGE_CASES = _from_opset_10(IMAGE_OPS)
#: the Sequence and Optional ops (spec/ops/sequence.md): the single-node cases and SequenceMap's expanded ones
SEQUENCE_OPS = (
    "SequenceEmpty SequenceConstruct SequenceInsert SequenceAt SequenceErase SequenceLength SplitToSequence "
    "ConcatFromSequence SequenceMap Optional OptionalHasElement OptionalGetElement"
).split()
SEQUENCE_CASES = _from_opset_10(SEQUENCE_OPS) + [
    c for c in _ALL_CASES if re.fullmatch(r"test_sequence_map_\w+_expanded", c.name)
]


def _at_opset_10(case):
    """A case importing an opset below refquant's 10, importing 10 instead: only for ops whose schema is the
    same at 10 as at the case's opset (And, Or, Xor: 7; Shrink: 9; checked in test_raised_cases_keep_their_schema)."""
    raised = copy.deepcopy(case.model)
    raised.opset_import[0].version = 10
    return dataclasses.replace(case, model=raised)


#: node cases below opset 10 of ops unchanged since: run at opset 10 (the same schema, so the same case)
BELOW_10_CASES = [
    c
    for c in _ALL_CASES
    if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in ELEMENTWISE_OPS and c.model.opset_import[0].version < 10
]
RAISED_CASES = [_at_opset_10(c) for c in BELOW_10_CASES]
#: Scan's node cases at opset 9 (its schema at 10 is 9's; test_scan_sum is Scan-8, another op): run at opset 10
SCAN9_CASES = [_at_opset_10(c) for c in _ALL_CASES if re.fullmatch(r"test_scan9_\w+", c.name)]

#: cases using values refquant deliberately does not run
UNSUPPORTED: dict[str, str] = {}
#: cases of training graphs (refquant runs inference graphs)
TRAINING_MODE = {
    "test_batchnorm_example_training_mode": "training_mode=1 is not supported (inference graphs)",
    "test_batchnorm_epsilon_training_mode": "training_mode=1 is not supported (inference graphs)",
    **{
        name: "Dropout training_mode=True with ratio > 0 drops random elements: refused (spec/ops/tensor.md)"
        for name in (
            "test_training_dropout", "test_training_dropout_mask", "test_training_dropout_default",
            "test_training_dropout_default_mask",
        )
    },  # fmt: skip
}
#: control-flow cases over sequence and optional values (spec/ops/control.md, "ONNX node cases")
UNSUPPORTED_CONTROL: dict[str, str] = {}  # they run since the Sequence and Optional ops (spec/ops/sequence.md)
#: DFT cases whose float32-generated expectation holds rounding noise above the comparison's atol (1e-7) where the
#: exact value is 0: refquant's complex128 transform gives ~1e-16 there (spec/ops/image.md, DFT)
DFT_GENERATOR_NOISE = {
    name: "the expected imaginary parts 1.9e-7 are the generator's float32 rounding of an exact 0; refquant's "
    "float64 transform is within 1e-15 of 0 (spec/ops/image.md, DFT)"
    for name in ("test_dft_inverse", "test_dft_inverse_opset19")
}
SKIPPED = UNSUPPORTED | UNSUPPORTED_CONTROL | TRAINING_MODE | DFT_GENERATOR_NOISE | {
    name: "the expected value contradicts the ONNX text; see test_align_corners_divides_by_... (test_resize.py)"
    for name in CONTRADICTS_THE_TEXT
}


# -- node cases whose generated expectation disagrees with the ONNX specification -------------------------------
#
# onnx computes the Cast node cases' expected outputs when the cases are collected, with the installed
# ml_dtypes (np_from.astype(to_np_dtype) in onnx/backend/test/case/node/cast.py). Where ml_dtypes' conversion
# differs from ONNX's written rule, the case expects ml_dtypes' value. For those cases the test asserts
# refquant's output equals the spec's value, computed here from the documents, and that the generated output
# differs from it only at the elements the entry names, and there by the documented generator value: if onnx or
# ml_dtypes change again, the test says so. With an ml_dtypes that follows the spec nothing differs, and the
# case passes as any other (spec/ops/float.md, "ONNX node cases that disagree with the spec").


class SpecDisagreement:
    """Node cases whose generated output differs from the ONNX spec at the elements ``affected`` selects."""

    def __init__(self, cases, *, affected, spec_value, generated, generator, spec, why):
        self.cases = frozenset(cases)
        self.affected = affected  # float64 inputs, target dtype -> mask of the elements the entry is about
        self.spec_value = spec_value  # float input, target dtype -> the spec's value (Python number)
        self.generated = generated  # float64 generated outputs at affected elements -> True where documented
        self.generator, self.spec, self.why = generator, spec, why

    def spec_output(self, x: np.ndarray, dtype) -> np.ndarray:
        flat = [self.spec_value(float(v), dtype) for v in x.astype(np.float64).ravel()]
        return np.array(flat, np.float64).reshape(x.shape).astype(dtype)


def _out_of_range(x: np.ndarray, dtype) -> np.ndarray:
    info = ml_dtypes.iinfo(dtype)
    return ~np.isfinite(x) | (np.rint(x) < int(info.min)) | (np.rint(x) > int(info.max))


_SUB_BYTE_CAST_CASES = [
    f"{prefix}_{source}_to_{target}{suffix}"
    for prefix, suffix in (("test_cast", ""), ("test_castlike", "_expanded"))
    for source in ("FLOAT", "FLOAT16")
    for target in ("UINT4", "INT4", "UINT2", "INT2")
]
_FLOAT4_CAST_CASES = [
    f"{prefix}_{source}_to_FLOAT4E2M1{suffix}"
    for prefix, suffix in (("test_cast", ""), ("test_castlike", "_expanded"))
    for source in ("FLOAT", "FLOAT16")
]

SPEC_DISAGREEMENTS = (
    SpecDisagreement(
        _SUB_BYTE_CAST_CASES,
        affected=_out_of_range,
        spec_value=spec_cast_to_sub_byte_int,
        generated=lambda want: want == 0,
        generator="ml_dtypes >= 0.7 converts an out-of-range float to int4/uint4/int2/uint2 as 0 "
        "(0.5 and 0.6 kept the low bits, as the spec does)",
        spec="docs/docs/technical/int4.md and int2.md, section Cast: 'Cast to a 4 [2] bit type is done by rounding "
        "to the nearest-integer (with ties to even) nearest-even integer and truncating'; the Cast operator's "
        "own word for dropping bits is 'truncate' ('we truncate bits which can't be stored in the targeted type')",
        why="inputs -9..15 (int4/uint4) and -3..3 (int2/uint2) include values outside the target type",
    ),
    SpecDisagreement(
        _FLOAT4_CAST_CASES,
        affected=lambda x, dtype: np.isnan(x),
        spec_value=lambda value, dtype: spec_cast_to_float4e2m1(value),
        generated=lambda want: want == 0,
        generator="ml_dtypes converts NaN to float4e2m1 as a zero (-0 for +NaN in 0.7)",
        spec="docs/docs/technical/float4.md, section Cast, table row 'NaN | 6'",
        why="the cases' input holds a NaN",
    ),
)
DISAGREEMENT_OF = {name: entry for entry in SPEC_DISAGREEMENTS for name in entry.cases}


def test_the_node_case_lists_are_current():
    names = {c.name for c in FLOAT_OP_CASES}
    assert set(UNSUPPORTED) <= names and set(DISAGREEMENT_OF) <= names
    assert len(DISAGREEMENT_OF) == 20
    assert len(FLOAT_OP_CASES) == 258  # onnx 1.23.2
    assert sorted(c.name for c in EXPANDED_DQL_CASES) == [
        "test_dynamicquantizelinear_expanded",
        "test_dynamicquantizelinear_max_adjusted_expanded",
        "test_dynamicquantizelinear_min_adjusted_expanded",
    ]


@pytest.mark.parametrize(
    ("cases", "count"),
    [
        (INDEXING_AND_LAYER_CASES, 100),  # onnx 1.23.2: Resize 39, ArgMax 16, ConvTranspose 11, CumSum 9, ...
        (MODEL_OP_CASES, 210),  # onnx 1.23.2 (test_not_* import opset 1, below refquant's 10)
        (ELEMENTWISE_CASES, 144),  # onnx 1.23.2: BitShift 28, Mod 19, LessOrEqual 8, GreaterOrEqual 8, Bitwise* 15, ...
        (RAISED_CASES, 26),  # onnx 1.23.2: And, Or, Xor 8 each (opset 7), Shrink 2 (opset 9)
        (TENSOR_INDEXING_CASES, 159),  # onnx 1.23.2: Trilu 18, ArgMin 16, Dropout 12, the six Reduce* 50, ...
        (RECURRENT_CASES, 18),  # onnx 1.23.2: RNN 6, GRU 6, LSTM 6 (all opset 22)
        (CONTROL_CASES, 6),  # onnx 1.23.2: test_if, test_if_seq, test_if_opt, test_loop11, test_loop13_seq, test_loop16_seq_none
        (SCAN9_CASES, 3),  # onnx 1.23.2: test_scan9_sum, test_scan9_multi_state, test_scan9_scalar
        (IMAGE_CASES, 97),  # onnx 1.23.2: RMSNormalization 19, GridSample 18, DFT 10, LpPool 8, CenterCropPad 6, Col2Im 5, AffineGrid 4, RoiAlign 3, MaxUnpool 2, Hardmax 7, LpNormalization 6, windows 6, GroupNormalization 2, ...
        (SEQUENCE_CASES, 28),  # onnx 1.23.2: OptionalHasElement 7, OptionalGetElement 4, SequenceMap 7 + 7 expanded, SplitToSequence 3, SequenceInsert 2, ...
    ],
    ids=["indexing-and-layer-ops", "model-ops", "elementwise-ops", "raised-to-opset-10", "tensor-indexing-ops",
         "recurrent-ops", "control-ops", "scan9-raised-to-opset-10", "image-ops", "sequence-ops"],
)
def test_the_node_case_list_is_current(cases, count):
    assert len(cases) == count


def _check_disagreement(case, entry, x, got, want):
    """refquant == the spec's value; the generated output differs from it only where, and as, the entry says."""
    spec = entry.spec_output(x, want.dtype)
    assert_same_bits(got, spec, f"{case.name}: refquant vs the spec ({entry.spec})")
    spec_f, want_f = spec.astype(np.float64), want.astype(np.float64)
    differs = ~((spec_f == want_f) | (np.isnan(spec_f) & np.isnan(want_f)))
    affected = entry.affected(x.astype(np.float64), want.dtype)
    assert not (differs & ~affected).any(), (
        f"{case.name}: the generated output differs from the spec outside the documented disagreement at "
        f"{np.argwhere(differs & ~affected)[:3].tolist()}; the table in tests/ops/test_onnx_node_cases.py needs a look"
    )
    assert entry.generated(want_f[differs]).all(), (
        f"{case.name}: generated values {want[differs][:4]} where the spec has {spec[differs][:4]}; documented: "
        f"{entry.generator}"
    )


def _feed(value):
    """A case's input: a sequence as a list of arrays, an empty optional as None, a tensor as an array."""
    if value is None:
        return None
    return [np.asarray(to_array(x)) for x in value] if isinstance(value, list) else np.asarray(value)


def _flattened(specs, outputs, expected):
    """(spec, got, want) per tensor: a sequence output compared element by element (same length), an empty
    optional only with an empty optional."""
    for spec, got, want in zip(specs, outputs, expected):
        if want is None or got is None:
            assert got is None and want is None, f"{spec.name}: {got!r} vs {want!r}"
        elif isinstance(want, list):
            assert isinstance(got, list) and len(got) == len(want), f"{spec.name}: {got!r} vs {want!r}"
            yield from ((spec, g, w) for g, w in zip(got, want))
        else:
            yield spec, got, want


def _run_case(case):
    session = refquant.Session(case.model)
    op = case.model.graph.node[0].op_type
    entry = DISAGREEMENT_OF.get(case.name)
    for inputs, expected in case.data_sets:
        inputs = [to_array(v) for v in inputs]
        feeds = {spec.name: _feed(v) for spec, v in zip(case.model.graph.input, inputs)}
        outputs = session.run(None, feeds)
        assert len(outputs) == len(expected)
        for spec, got, want in _flattened(case.model.graph.output, outputs, expected):
            want = np.asarray(to_array(want))
            if entry is not None:
                _check_disagreement(case, entry, np.asarray(inputs[0]), got, want)
            elif op in ("MatMul", "Gemm"):
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)
            elif op in PLAIN_OPS or op in EXACT_OPS or got.dtype.kind != "f":
                assert_same_bits(got, want, spec.name)
            else:  # float math
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=max(case.rtol, 1e-6), atol=case.atol)


def test_raised_cases_keep_their_schema():
    for old, new in zip(BELOW_10_CASES, RAISED_CASES):
        op = old.model.graph.node[0].op_type
        before = onnx.defs.get_schema(op, old.model.opset_import[0].version, "").since_version
        assert onnx.defs.get_schema(op, 10, "").since_version == before, f"{old.name}: {op} changed by opset 10"


@pytest.mark.parametrize(
    "case",
    FLOAT_OP_CASES + INDEXING_AND_LAYER_CASES + MODEL_OP_CASES + ELEMENTWISE_CASES + RAISED_CASES + TENSOR_INDEXING_CASES
    + RECURRENT_CASES + CONTROL_CASES + SCAN9_CASES + IMAGE_CASES + SEQUENCE_CASES,
    ids=lambda c: c.name,
)
def test_onnx_node_case(case):
    if case.name in SKIPPED:
        pytest.skip(SKIPPED[case.name])
    _run_case(case)


@pytest.mark.parametrize("case", EXPANDED_DQL_CASES, ids=lambda c: c.name)
def test_expanded_dynamic_quantize_linear_is_bit_exact(case):
    _run_case(case)
