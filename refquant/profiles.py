"""Profiles: every arithmetic choice a backend may make differently, by name.

A :class:`Profile` is a frozen set of options. ``"spec"`` is refquant's reading
of the ONNX specification (spec/profiles.md explains each choice); other
profiles emulate a backend, so that a difference between refquant and that
backend is *explained* by an option rather than tolerated. Kernels never read a
profile: each receives its op family's resolved options (:mod:`refquant.kernel_options`).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Literal

from . import host
from .errors import RefquantError

__all__ = [
    "Profile", "option_choices", "SPEC", "ONNXRUNTIME", "ONNX_REFERENCE", "OPENVINO", "PROFILES", "get_profile",
    "RequantizePrecision", "QuantizeOverflow", "NanRule", "Int32Overflow", "DequantizeFormula", "DequantizeSubnormals",
    "FloatPipeline", "DequantizeInt32",
]

# The values of the options that kernels receive as they are (refquant.kernel_options), written once here.
RequantizePrecision = Literal["float64", "float32", "mixed"]
QuantizeOverflow = Literal["saturate", "int32-indefinite"]
NanRule = Literal["error", "qmin", "zero_point"]
Int32Overflow = Literal["wrap", "saturate", "error"]
DequantizeFormula = Literal["exact", "distributed"]
DequantizeSubnormals = Literal["keep", "flush"]
FloatPipeline = Literal["exact", "mlas-float32", "numpy-float32"]
DequantizeInt32 = Literal["exact", "float32-first", "float32-input"]


@dataclass(frozen=True)
class Profile:
    """Arithmetic options of the reference.

    requantize_precision:
        Precision of ``acc * (x_scale * w_scale / y_scale)`` in QLinearConv and
        QLinearMatMul: ``"float64"`` (multiplier and product in float64),
        ``"float32"`` (``float32(acc) * float32(multiplier)``, onnxruntime CPU) or
        ``"mixed"`` (multiplier in the scales' own type, product in float64: onnx.reference).
        Also com.microsoft QGemm/QLinearConv, and the float outputs of QGemm,
        MatMulIntegerToFloat and DynamicQuantizeMatMul (spec/ops/contrib.md).
    requantize_zero_point:
        Where QLinearConv and QLinearMatMul add y_zero_point: ``"after-rounding"``
        (the spec: ``saturate(round_half_even(real) + zp)``) or ``"before-rounding"``
        (onnx.reference: ``saturate(round_half_even(real + zp))``). They differ only
        where ``real`` is a tie k + 1/2 and zp is odd (real -0.5, zp 255: 255 against 254),
        and where ``real`` is NaN (0 times a multiplier that overflowed the scales' type, under
        ``requantize_precision="mixed"``): onnx.reference's numpy cast makes it 0.
    quantize_overflow:
        QuantizeLinear to an integer type when ``round(x / scale)`` leaves the
        int32 range (|x/scale| >= 2**31, +-inf): ``"saturate"`` to qmin/qmax, or
        ``"int32-indefinite"``: the x86 float->int32 cast gives INT32_MIN, the
        zero point is added in wrapping int32, then the result is clipped
        (onnx.reference: 1e10 -> 0 for uint8). NaN takes the same path, so the
        ``nan`` option does not apply in this mode. A bfloat16 quotient is cast by
        ml_dtypes instead, which gives 0 (not INT32_MIN) for NaN, +-inf and values
        outside [-2**31, 2**31) (onnx.reference: bfloat16 3e38 / 1 -> zero point).
    nan:
        What QuantizeLinear / DynamicQuantizeLinear do with NaN input to an
        integer type: ``"error"`` raises :class:`~refquant.errors.NonFiniteError`;
        ``"qmin"`` / ``"zero_point"`` map it to that value.
    int32_overflow:
        Rule for an int32 *output* (MatMulInteger, ConvInteger) whose exact
        value does not fit: ``"wrap"`` (two's complement), ``"saturate"`` or
        ``"error"``. A warning names the node in the first two cases. Internal
        accumulators of QLinear ops are always exact (int64).
    avx2_u8s8_saturation:
        Emulate onnxruntime's U8S8 GEMM and symmetric-convolution kernels on CPUs without VNNI (MLAS
        families "avx2" and "avx512core", :mod:`refquant.host`): VPMADDUBSW adds adjacent products of
        the stored bytes along K in int16 with saturation; zero-point terms stay exact. Applies where
        onnxruntime runs a uint8 x int8 GEMM: MatMulInteger, QLinearMatMul, QLinearConv (K in
        onnxruntime's order: kernel tap, then input channel; not depthwise with one weight zero point), com.microsoft QGemm,
        MatMulIntegerToFloat, DynamicQuantizeMatMul and QLinearConv, and ConvInteger with uint8 weights
        (MLAS's A operand; K in im2col's order; int8 weights make an exact S8U8 GEMM). The "onnxruntime"
        profile sets it from the host.
    dynamic_zero_range_scale:
        Scale DynamicQuantizeLinear returns when min(x, 0) == max(x, 0), where
        the spec formula would divide by zero (onnxruntime: 1.0; onnx.reference: 1/255).
    dynamic_scale_out_of_range:
        DynamicQuantizeLinear when x's range is not [0, 0] but its float32 scale (max - min) / 255 is not a
        positive finite number: it underflows to 0 (max - min below about 3e-43) or max - min overflows to
        inf (|x| near float32's largest). ``"error"`` refuses (the zero point qmin - min / scale would
        divide by 0, or the scale would be infinite); ``"float32"`` returns the float32 formulas' values
        (onnxruntime, onnx.reference): scale 0 or inf, y from x / scale (+-inf saturate; 0 / 0 follows
        ``nan``; x / inf is 0), and a zero point of 0 / 0 clamped to qmax as C's std::min(255.f, NaN) does.
    qlinear_pipeline:
        Arithmetic of the com.microsoft QLinear elementwise and pooling ops (QLinearAdd,
        QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearConcat,
        QLinearWhere, QLinearAveragePool, QLinearGlobalAveragePool): ``"exact"`` dequantizes
        exactly, computes the function in float64 and quantizes once; ``"mlas-float32"``
        replays onnxruntime's MLAS kernels step by step in float32 (fused multiply-adds,
        lookup tables, MLAS's rational logistic; spec/ops/contrib.md lists each op's steps).
    quantize_formula:
        QuantizeLinear to an integer type: ``"exact"`` (one division, rounded half to
        even, then the zero point) or ``"fake-quantize"``: OpenVINO's FakeQuantize in
        float32, ``qmin + round(clip(x, il, ih) * isc - il * isc)`` with
        ``il, ih = scale * (qmin - zp), scale * (qmax - zp)`` and ``isc = (qmax - qmin) / (ih - il)``:
        it rounds after adding the zero point and multiplies by a rounded reciprocal
        (:func:`refquant.lowerings.fake_quantize`). Float types stay exact.
    dequantize_formula:
        DequantizeLinear of 8-, 16- and 32-bit integers: ``"exact"`` ((x - zp) * scale,
        rounded once) or ``"distributed"``: ``x * scale - zp * scale`` with ``zp * scale``
        rounded to the scale's type and one float32 fused multiply-add (OpenVINO).
    dequantize_subnormals:
        DequantizeLinear of 4-bit integers and float8/float4: ``"keep"`` subnormal
        results, or ``"flush"`` those below float32's normal range to zero (OpenVINO).
    quantize_division:
        The type of QuantizeLinear's division ``x / scale`` when the ONNX rule names
        float16 or bfloat16: ``"scale-type"`` (that type, the spec) or ``"float32"``
        (both widened to float32 and divided there: onnxruntime CPU).
    dynamic_quantize_formula:
        DynamicQuantizeLinear: ``"exact"`` (the ONNX function) or ``"reciprocal"``:
        every division is a product by a float32 reciprocal, y is computed from
        ``x * 255 / span`` rather than from the scale, and an all-zero input gives
        scale 0 (OpenVINO; :func:`refquant.lowerings.dynamic_quantize_reciprocal`).
    float_pipeline:
        Float32 MatMul, Gemm, Softmax, LayerNormalization and GlobalAveragePool: ``"exact"`` (float64,
        rounded once) or ``"mlas-float32"``: onnxruntime's MLAS kernels replayed operation by
        operation in float32 (:mod:`refquant.mlas`; SGEMM blocking and fused multiply-add chains,
        MLAS's exp polynomial and lane sums, the LayerNorm kernel's double-precision mean), or
        ``"numpy-float32"``: float32 MatMul, Gemm and Conv as onnx.reference computes them, numpy's own
        float32 products on this machine (np.matmul; np.dot then alpha, beta * C; Conv's im2col with a
        zero-filled dilated kernel, one product per group, then the bias), whatever their rounding.
    dequantize_int32:
        DequantizeLinear of int32 x: ``"exact"`` ((x - zp) * scale rounded once to the output type),
        ``"float32-first"``: ``x - zp`` (int32) rounded to float32, the product with float32(scale) rounded
        to float32, then to the output type (onnxruntime CPU; onnx.reference without a zero-point input), or
        ``"float32-input"``: ``x - zp`` rounded to float32, the product exact, rounded once to the output
        type (onnx.reference's float64 path when a zero-point input is given). Elements where x - zp is
        exact in float32 (|x - zp| <= 2**24, say) differ from "exact" only through "float32-first"'s second
        rounding into a float16/bfloat16 output.
    qlinear_requantize:
        QLinearMatMul and QLinearConv: ``"exact"`` (the spec's requantization of the exact accumulator)
        or ``"fake-quantize"``: OpenVINO's lowering, DequantizeLinear -> MatMul / Convolution in
        float32 -> FakeQuantize with its range folded in the scales' type, run by the CPU plugin as
        ``qmin + round_half_even(fma(clip(v, il, ih), isc, ish))`` (the zero point added before
        rounding; a range that overflows float16 gives qmin), with the dequantizing products folded
        into the range where every operand zero point is 0 (:mod:`refquant.ops.qlinear_lowered`).
        Applied only where it reproduces OpenVINO: per-tensor 8-bit operands, float32/float16 scales,
        no bias, a float32 accumulation exact in any order; elsewhere the spec's value.
    mlas_threads:
        Intra-op threads of the onnxruntime session being replayed (``float_pipeline="mlas-float32"``):
        MLAS splits a float GEMM of more than 65536 multiply-adds between threads, and each
        part picks its own K-block length, so the split changes the rounding.
    """

    name: str = "custom"
    requantize_precision: RequantizePrecision = "float64"
    requantize_zero_point: Literal["after-rounding", "before-rounding"] = "after-rounding"
    quantize_overflow: QuantizeOverflow = "saturate"
    nan: NanRule = "error"
    int32_overflow: Int32Overflow = "wrap"
    avx2_u8s8_saturation: bool = False
    dynamic_zero_range_scale: float = 1.0
    dynamic_scale_out_of_range: Literal["error", "float32"] = "error"
    qlinear_pipeline: Literal["exact", "mlas-float32"] = "exact"
    quantize_formula: Literal["exact", "fake-quantize"] = "exact"
    dequantize_formula: DequantizeFormula = "exact"
    dequantize_subnormals: DequantizeSubnormals = "keep"
    dynamic_quantize_formula: Literal["exact", "reciprocal"] = "exact"
    quantize_division: Literal["scale-type", "float32"] = "scale-type"
    float_pipeline: FloatPipeline = "exact"
    mlas_threads: int = 1
    dequantize_int32: DequantizeInt32 = "exact"
    qlinear_requantize: Literal["exact", "fake-quantize"] = "exact"

    def __post_init__(self):
        for key, values in option_choices().items():
            if getattr(self, key) not in values:
                raise RefquantError(
                    f"profile option {key}={getattr(self, key)!r} is not one of {values}"
                )
        if isinstance(self.mlas_threads, bool) or not (isinstance(self.mlas_threads, int) and self.mlas_threads >= 1):
            raise RefquantError(f"profile option mlas_threads must be an integer >= 1, got {self.mlas_threads!r}")
        if not self.dynamic_zero_range_scale > 0:
            raise RefquantError("profile option dynamic_zero_range_scale must be > 0")

    def with_options(self, **options) -> Profile:
        """A copy with some options changed (unknown names are an error)."""
        known = {f.name for f in fields(self)}
        unknown = set(options) - known
        if unknown:
            raise RefquantError(f"unknown profile option(s) {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **options)


@functools.cache
def option_choices() -> Mapping[str, tuple[str, ...]]:
    """{option: its allowed values} (read-only) for every option of :class:`Profile` declared as a ``Literal``,
    in declaration order; the values are the ``Literal``'s, so they are written once, on the field (or on the alias
    above that the field and the kernels' options both name)."""
    hints = typing.get_type_hints(Profile)
    return MappingProxyType({
        f.name: typing.get_args(hints[f.name]) for f in fields(Profile) if typing.get_origin(hints[f.name]) is Literal
    })


SPEC = Profile(name="spec")

#: onnxruntime CPU kernels on this host (spec/profiles.md gives the evidence for each option):
#: avx2_u8s8_saturation follows the MLAS integer kernels onnxruntime picks here (refquant.host)
ONNXRUNTIME = Profile(
    name="onnxruntime",
    requantize_precision="float32",
    nan="qmin",
    dynamic_scale_out_of_range="float32",
    avx2_u8s8_saturation=host.u8s8_pairs_saturate(),
    qlinear_pipeline="mlas-float32",
    float_pipeline="mlas-float32",
    quantize_division="float32",
    dequantize_int32="float32-first",
)

#: onnx.reference.ReferenceEvaluator (onnx 1.23)
ONNX_REFERENCE = Profile(
    name="onnx-reference",
    requantize_precision="mixed",
    requantize_zero_point="before-rounding",
    float_pipeline="numpy-float32",
    quantize_overflow="int32-indefinite",
    nan="qmin",
    dynamic_zero_range_scale=float(1 / 255),
    dynamic_scale_out_of_range="float32",
    dequantize_int32="float32-first",
)

#: OpenVINO's CPU plugin (2026.4) reading the ONNX model (spec/backends.md gives the evidence)
OPENVINO = Profile(
    name="openvino",
    quantize_formula="fake-quantize",
    dequantize_formula="distributed",
    dequantize_subnormals="flush",
    dynamic_quantize_formula="reciprocal",
    nan="qmin",
    qlinear_requantize="fake-quantize",
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SPEC, ONNXRUNTIME, ONNX_REFERENCE, OPENVINO)}


def get_profile(profile: str | Profile) -> Profile:
    """Resolve a profile name or pass a :class:`Profile` through."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except (KeyError, TypeError):
        raise RefquantError(
            f"unknown profile {profile!r}; available: {', '.join(sorted(PROFILES))}"
        ) from None
