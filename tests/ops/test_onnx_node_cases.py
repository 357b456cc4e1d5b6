"""The ONNX backend node suite as a test: every node case of onnx.backend.test (1884 with onnx 1.23.2, built
in memory by tests/helpers.py) runs through ``refquant.Session``, one test per case (ids: the case names),
with one comparison rule and one table of exceptions. Each kernel module's own tests are in
tests/ops/test_<module>.py; the 45 quantization node cases also run bit for bit in tests/test_node_cases.py.

Expected values come from independent sources:
- the ONNX backend node cases (expected outputs written by the ONNX test generators), one rule for all:
  bit for bit (same dtype, shape and bits; two NaNs equal) where every op of the case's graph moves, selects,
  compares or is exact integer arithmetic, or is one of the plain correctly rounded operators of
  spec/ops/float.md (``EXACT_OPS``), and for every output that is not a float; float math within the case's own
  rtol and atol (onnx's backend runner's default, rtol 1e-3 and atol 1e-7, when the case gives none; all the
  cases of onnx 1.23.2 give none; bfloat16 outputs with rtol at least 2**-6, two bfloat16 ulps, as onnx's
  runner compares them); the random ops' cases (``RANDOM_OPS``) shape and dtype only: the generators
  draw their outputs from numpy's generator and say the values are "for informational purpose" (onnx's own
  runner compares them as any case, so backends exclude them);
- where a generated Cast expectation contradicts the ONNX spec, the spec's value, computed here from the
  documents (spec/ops/float.md, "ONNX node cases that disagree with the spec");
- onnx.reference.ReferenceEvaluator, run once per session on every case under the same rule, for the
  summary's comparison (test_the_suite_summary): refquant passes every case it passes, apart from the
  documented choices, the known failures and the ops refquant does not implement yet.

A case importing an opset below refquant's 10 (spec/model.md) runs at opset 10 when every op of its graph
has the same schema at 10 (Not: 1; And, Or, Xor: 7; Shrink, Scan, TfIdfVectorizer: 9); the others are a documented
choice. A case with an op refquant does not register at the case's opset (``refquant.registry.lookup``, at run
time) is skipped with "<op> not implemented" while the op is missing; test_the_suite_summary lists them by op.
Every other case not passing is in ``EXCEPTIONS``, by name: a documented spec choice (linked to its spec page)
or a known failure (a one-line reason), both xfail(strict=True, raises=the failure's type) so that a change is
noticed; the Cast cases whose generated output contradicts the spec (``SPEC_DISAGREEMENTS``) pass against the
spec's value and count with the documented choices. The summary prints the counts (``-s``) and records them
(``record_property``, in the JUnit XML).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import warnings

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import refquant
from refquant.errors import AttributeValueError, OpsetError, UnsupportedOpError
from refquant.model import MIN_OPSET
from refquant.registry import canonical_domain, lookup

from ..helpers import graph_nodes, node_case_as_run, node_cases, to_array
from .helpers import (
    CONTRADICTS_THE_TEXT,
    assert_same_bits,
    is_float,
    spec_cast_to_float4e2m1,
    spec_cast_to_sub_byte_int,
)

ALL_CASES = node_cases(r"^test_")
CASE_COUNT = 1884  # onnx 1.23.2

#: ops whose outputs are input elements, indices, comparisons, exact integers or one correctly rounded IEEE
#: operation (the plain operators of spec/ops/float.md): node cases bit for bit when every op of the graph is one
EXACT_OPS = frozenset(
    # the plain operators (spec/ops/float.md), less MatMul and Gemm (sums: float math)
    "Add Sub Mul Div Relu Clip Round Min Max ReduceMin ReduceMax Cast CastLike Identity Constant Flatten Reshape "
    # moving, selecting and comparing
    "ArgMax ArgMin TopK GatherElements GlobalMaxPool MaxPool MaxRoiPool MaxUnpool Transpose Concat Split Slice Squeeze "
    "Unsqueeze Gather Shape Expand ConstantOfShape Pad Where Equal Less Greater Not LessOrEqual GreaterOrEqual And Or "
    "Xor BitwiseAnd BitwiseOr BitwiseXor BitwiseNot BitShift Abs Neg Sign Floor Ceil Reciprocal IsNaN IsInf Mod Shrink "
    "Tile DepthToSpace SpaceToDepth Size Dropout EyeLike Trilu GatherND ScatterND ScatterElements Scatter OneHot "
    "NonZero Compress ReverseSequence Unique CenterCropPad BitCast TensorScatter Hardmax ThresholdedRelu "
    # control flow moves values: the ops of its bodies (in the case's op set) decide
    "If Loop Scan SequenceMap "
    # sequences and optionals move values
    "SequenceEmpty SequenceConstruct SequenceInsert SequenceAt SequenceErase SequenceLength SplitToSequence "
    "ConcatFromSequence Optional OptionalHasElement OptionalGetElement "
    # quantization: integer results, one rounding (spec/ops/quantize.md)
    "QuantizeLinear DequantizeLinear DynamicQuantizeLinear".split()
)
#: ops drawing random values: their cases are compared by shape and dtype only
RANDOM_OPS = frozenset("Bernoulli Multinomial RandomNormal RandomNormalLike RandomUniform RandomUniformLike".split())


# -- the graph of a case ----------------------------------------------------------------------------------------


def _ops(model) -> set[tuple[str, str]]:
    return {(canonical_domain(n.domain), n.op_type) for n in graph_nodes(model.graph)}


def _imports(model) -> dict[str, int]:
    return {canonical_domain(o.domain): o.version for o in model.opset_import}


def _default_opset(case) -> int | None:
    return _imports(case.model).get("")


BELOW_10 = [c for c in ALL_CASES if _default_opset(c) is not None and _default_opset(c) < MIN_OPSET]
#: cases below opset 10 whose ops keep their schema at 10: run at opset 10 (the same schema, so the same case)
RAISED = {c.name: raised for c in BELOW_10 if (raised := node_case_as_run(c)) is not c}
#: the cases as refquant runs them
RUN_AS = {c.name: RAISED.get(c.name, c) for c in ALL_CASES}
CASES = {c.name: c for c in ALL_CASES}
#: cases below opset 10 with an op whose schema changed by 10: refquant refuses their opset (in EXCEPTIONS)
DOCUMENTED_BELOW_10 = {c.name for c in BELOW_10} - set(RAISED)


def missing_ops(case) -> list[str]:
    """The ops of ``case`` (as refquant runs it) that refquant does not register at the case's opsets."""
    imports = _imports(case.model)
    missing = []
    for domain, op in sorted(_ops(case.model)):
        if domain not in imports or lookup(domain, op, imports[domain]) is None:
            missing.append(f"{domain}::{op}" if domain else op)
    return missing


def _rule(case) -> str:
    ops = {op for _, op in _ops(case.model)}
    if ops & RANDOM_OPS:
        return "shape and dtype"
    return "bit for bit" if ops <= EXACT_OPS else "within the case's tolerance"


# -- node cases whose generated expectation disagrees with the ONNX specification -------------------------------
#
# onnx computes the Cast (and CastLike) node cases' expected outputs when the cases are collected, with the installed
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
    for prefix, suffix in (("test_cast", ""), ("test_castlike", ""), ("test_castlike", "_expanded"))
    for source in ("FLOAT", "FLOAT16")
    for target in ("UINT4", "INT4", "UINT2", "INT2")
]
_FLOAT4_CAST_CASES = [
    f"{prefix}_{source}_to_FLOAT4E2M1{suffix}"
    for prefix, suffix in (("test_cast", ""), ("test_castlike", ""), ("test_castlike", "_expanded"))
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


# -- the table of exceptions ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Exceptional:
    """A case that does not pass: ``kind`` "documented" (a spec choice; ``spec``: the page that writes it) or
    "known failure" (a one-line reason; fixing it turns the strict xfail into a failure to remove the entry)."""

    kind: str
    why: str
    spec: str = ""
    raises: type[BaseException] = AssertionError  # how the case fails: a value (AssertionError) or a refusal


def _documented(why, spec, raises=AssertionError):
    return Exceptional("documented", why, spec, raises)


def _known(why, raises=AssertionError):
    return Exceptional("known failure", why, "", raises)


_TRAINING_DROPOUT = _documented(
    "Dropout training_mode=True with ratio > 0 drops random elements: refused (a training graph)",
    "spec/ops/tensor.md",
    AttributeValueError,
)
_TRAINING_BATCHNORM = _documented(
    "training_mode=1 (running statistics) is refused: refquant runs inference graphs",
    "spec/ops/nn.md (BatchNormalization)",
    AttributeValueError,
)
EXCEPTIONS: dict[str, Exceptional] = {
    # -- (a) documented spec choices: refquant deliberately differs from the case's expected output
    **{
        name: _documented(
            "align_corners divides by the output length - 1, the case by scale * D - 1 (checked against the text in "
            "test_resize.py::test_align_corners_divides_by_the_output_length_less_one)",
            "spec/ops/nn.md (Resize)",
        )
        for name in sorted(CONTRADICTS_THE_TEXT)
    },
    "test_batchnorm_example_training_mode": _TRAINING_BATCHNORM,
    "test_batchnorm_epsilon_training_mode": _TRAINING_BATCHNORM,
    "test_training_dropout": _TRAINING_DROPOUT,
    "test_training_dropout_mask": _TRAINING_DROPOUT,
    "test_training_dropout_default": _TRAINING_DROPOUT,
    "test_training_dropout_default_mask": _TRAINING_DROPOUT,
    **{
        name: _documented(
            "the expected imaginary parts 1.9e-7 are the generator's float32 rounding of an exact 0; refquant's "
            "float64 transform is within 1e-15 of 0, outside the case's atol 1e-7",
            "spec/ops/image.md (DFT)",
        )
        for name in ("test_dft_inverse", "test_dft_inverse_opset19")
    },
    "test_scan_sum": _documented(
        "opset 8 (Scan-8, batched) is below refquant's minimum opset 10",
        "spec/model.md, spec/ops/control.md",
        OpsetError,
    ),
    "test_upsample_nearest": _documented(
        "opset 9 (Upsample-9; Upsample-10 differs) is below refquant's minimum opset 10", "spec/model.md", OpsetError
    ),
    "test_attention_4d_causal_fp16_expanded": _documented(
        "the expanded graph's float16 Softmax is correctly rounded (onnx.reference's float16 arithmetic is 1 ulp "
        "off); 2 of the 192 outputs end 2 float16 ulps from the expected, outside rtol 1e-3",
        "spec/ops/nn.md (Softmax)",
    ),
    **{
        f"test_image_decoder_decode_{image}": _documented(
            "refquant decodes the lossless formats only: JPEG's pixels depend on the decoder's inverse DCT, which ONNX "
            "does not fix; JPEG 2000 and WebP need an image library's codec (UnsupportedOpError)",
            "spec/ops/image_decoder.md",
            UnsupportedOpError,
        )
        for image in "jpeg_rgb jpeg_grayscale jpeg_bgr jpeg2k_rgb webp_rgb".split()
    },
    # -- (c) known failures
    "test_nllloss_NCd1d2d3_none_no_weight_negative_ii_expanded": _known(
        "the expanded graph gives Neg(0) * 1 = -0 for an ignored index where the expectation (the op's numpy "
        "reference) has +0; onnx.reference gives -0 too"
    ),
}
#: the Cast cases checked against the spec's value (pass; counted with the documented choices)
DOCUMENTED = {name for name, e in EXCEPTIONS.items() if e.kind == "documented"} | set(DISAGREEMENT_OF)


def _marks(case):
    entry = EXCEPTIONS.get(case.name)
    if entry is None:
        return ()
    reason = f"{entry.kind}: {entry.why}" + (f" ({entry.spec})" if entry.spec else "")
    return (pytest.mark.xfail(strict=True, raises=entry.raises, reason=reason),)


# -- running a case ---------------------------------------------------------------------------------------------


def _feed(value):
    """A case's input: a sequence as a list of arrays, an empty optional as None, a tensor as an array."""
    if value is None:
        return None
    return [np.asarray(to_array(x)) for x in value] if isinstance(value, list) else np.asarray(to_array(value))


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


def _compare(case, rule, inputs, outputs, expected, spec_entry=None):
    """The one comparison rule (module docstring)."""
    assert len(outputs) == len(expected), f"{len(outputs)} outputs, expected {len(expected)}"
    for spec, got, want in _flattened(case.model.graph.output, outputs, expected):
        got, want = np.asarray(got), np.asarray(to_array(want))
        if spec_entry is not None:
            _check_disagreement(case, spec_entry, np.asarray(to_array(inputs[0])), got, want)
            continue
        assert got.dtype == want.dtype, f"{spec.name}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{spec.name}: shape {got.shape} != {want.shape}"
        if rule == "shape and dtype":
            continue
        if rule == "bit for bit" or not is_float(want.dtype):
            assert_same_bits(got, want, spec.name)
        else:
            # bfloat16: rtol at least two bfloat16 ulps, as onnx's runner (assert_similar_outputs)
            rtol = max(case.rtol, 2.0**-6) if want.dtype == ml_dtypes.bfloat16 else case.rtol
            with np.errstate(invalid="ignore"):
                g, w = got.astype(np.float64), want.astype(np.float64)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=case.atol, err_msg=spec.name)


def _run(case, session, spec_entry=None):
    rule = _rule(case)
    for inputs, expected in case.data_sets:
        feeds = {spec.name: _feed(v) for spec, v in zip(case.model.graph.input, inputs)}
        outputs = session.run(None, feeds)
        _compare(case, rule, inputs, outputs, expected, spec_entry)


@dataclasses.dataclass
class Outcome:
    status: str  # "pass", "fail" or "skip"
    message: str = ""
    error: BaseException | None = None


@functools.cache
def refquant_outcome(name: str) -> Outcome:
    """``name`` run through refquant.Session (once per session: the case's test and the summary share it)."""
    case = RUN_AS[name]
    missing = missing_ops(case) if name not in DOCUMENTED_BELOW_10 else []
    if missing:
        return Outcome("skip", f"{', '.join(missing)} not implemented")
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _run(case, refquant.Session(case.model), DISAGREEMENT_OF.get(name))
    except Exception as error:  # noqa: BLE001 - a failing case is an outcome; its test re-raises it
        return Outcome("fail", f"{type(error).__name__}: {error}", error)
    return Outcome("pass")


def _reference_passes(case) -> bool:
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _run(case, ReferenceEvaluator(case.model))
    except Exception:  # noqa: BLE001 - onnx.reference failing a case is counted, not raised
        return False
    return True


@functools.cache
def reference_outcomes() -> dict[str, bool]:
    """Whether onnx.reference passes each case (as written, its own opset) under the same rule: once per session."""
    return {case.name: _reference_passes(case) for case in ALL_CASES}


# -- the tests --------------------------------------------------------------------------------------------------


def test_the_case_lists_are_current():
    assert len(ALL_CASES) == CASE_COUNT
    assert len(CASES) == CASE_COUNT  # names are unique
    assert set(EXCEPTIONS) <= set(CASES) and set(DISAGREEMENT_OF) <= set(CASES)
    assert not set(EXCEPTIONS) & set(DISAGREEMENT_OF)
    assert len(DISAGREEMENT_OF) == 30  # Cast, CastLike and CastLike expanded: 8 + 2 each
    assert len(BELOW_10) == 41 and len(RAISED) == 39  # onnx 1.23.2 (all but Scan-8's test_scan_sum, Upsample-9's case)
    assert set(DOCUMENTED_BELOW_10) == {c.name for c in BELOW_10} - set(RAISED)


def test_raised_cases_keep_their_schema():
    for name, raised in RAISED.items():
        for domain, op in _ops(raised.model):
            before = onnx.defs.get_schema(op, _default_opset(CASES[name]), "").since_version
            assert onnx.defs.get_schema(op, MIN_OPSET, "").since_version == before, f"{name}: {op} changed by opset 10"


@pytest.mark.parametrize("case", [pytest.param(c, marks=_marks(c), id=c.name) for c in ALL_CASES])
def test_onnx_node_case(case):
    outcome = refquant_outcome(case.name)
    if outcome.status == "skip":
        pytest.skip(outcome.message)
    if outcome.error is not None:
        raise outcome.error


def test_the_suite_summary(record_property):
    """Counts every case's outcome, lists the ops not implemented yet, and asserts that refquant passes every
    case onnx.reference passes, apart from the documented choices, the known failures and the missing ops."""
    outcomes = {name: refquant_outcome(name) for name in CASES}
    reference = reference_outcomes()
    passed = {n for n, o in outcomes.items() if o.status == "pass"} - DOCUMENTED
    skipped = {n: o.message for n, o in outcomes.items() if o.status == "skip"}
    failed = {n for n, o in outcomes.items() if o.status == "fail"}
    known = {n for n, e in EXCEPTIONS.items() if e.kind == "known failure"}
    by_op = collections.defaultdict(list)
    for name, message in skipped.items():
        by_op[message.removesuffix(" not implemented")].append(name)
    counts = {
        "cases": len(CASES),
        "refquant passes": len(passed),
        "documented choices": len(DOCUMENTED),
        "known failures": len(known),
        "skipped (not implemented)": len(skipped),
        "failing outside the table": len(failed - set(EXCEPTIONS)),
        "onnx.reference passes": sum(reference.values()),
    }
    print("\nONNX node suite:", ", ".join(f"{k} {v}" for k, v in counts.items()))
    for op, names in sorted(by_op.items()):
        print(f"not implemented: {op} ({len(names)}): {', '.join(sorted(names))}")
    for key, value in counts.items():
        record_property(key, value)
    record_property("not implemented", {op: sorted(names) for op, names in by_op.items()})

    # every case that does not pass is in the table (or skipped while its op is missing)
    assert failed - set(EXCEPTIONS) == set(), f"cases failing outside EXCEPTIONS: {sorted(failed - set(EXCEPTIONS))}"
    assert set(EXCEPTIONS) <= failed | set(skipped), f"table entries that pass: {sorted(set(EXCEPTIONS) - failed)}"
    # refquant passes every implemented case onnx.reference passes, apart from the documented choices
    implemented = set(CASES) - set(skipped)
    reference_passed = {n for n, ok in reference.items() if ok} & implemented
    behind = reference_passed - passed - DOCUMENTED
    print(
        f"implemented cases outside the documented choices: refquant passes {len(passed)}, onnx.reference "
        f"{len(reference_passed - DOCUMENTED)}; onnx.reference passes and refquant fails: {sorted(behind)}; "
        f"refquant passes and onnx.reference fails: {sorted(passed - reference_passed)}"
    )
    assert behind <= known, f"onnx.reference passes, refquant fails: {sorted(behind - known)}"
    assert len(passed) >= len(reference_passed - DOCUMENTED)
