"""The profile options each op family's kernels use, resolved once and named in the kernels' terms.

A kernel declares its family's class when it registers (``register(..., options=QuantizeOptions)``); the
session builds that object from its profile (``QuantizeOptions.of(profile)``) and binds it to the node as
``node.options``. A kernel thus sees the options of its own family only, never the whole
:class:`~refquant.profiles.Profile`. spec/profiles.md lists which family receives which object, and
what each profile option decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .profiles import (
    DequantizeFormula,
    DequantizeInt32,
    DequantizeSubnormals,
    FloatPipeline,
    Int32Overflow,
    NanRule,
    Profile,
    QuantizeOverflow,
    RequantizePrecision,
)

__all__ = [
    "QuantizeOptions", "DequantizeOptions", "DynamicQuantizeOptions", "IntegerProductOptions", "RequantizeOptions",
    "DynamicQuantizeMatMulOptions", "QLinearElementwiseOptions", "FloatPipelineOptions",
]


@dataclass(frozen=True)
class QuantizeOptions:
    """QuantizeLinear to an integer type (ai.onnx and com.microsoft).

    fake_quantize: compute it as OpenVINO's FakeQuantize in float32 (``quantize_formula="fake-quantize"``).
    widen_half_division: divide x / scale in float32 where the ONNX rule names float16 or bfloat16
        (``quantize_division="float32"``).
    overflow: what a quotient outside int32 (and NaN) gives (``quantize_overflow``).
    nan: what NaN input gives (``nan``).
    """

    fake_quantize: bool
    widen_half_division: bool
    overflow: QuantizeOverflow
    nan: NanRule

    @classmethod
    def of(cls, profile: Profile) -> QuantizeOptions:
        return cls(
            fake_quantize=profile.quantize_formula == "fake-quantize",
            widen_half_division=profile.quantize_division == "float32",
            overflow=profile.quantize_overflow,
            nan=profile.nan,
        )


@dataclass(frozen=True)
class DequantizeOptions:
    """ai.onnx DequantizeLinear.

    formula: ``"exact"`` ((x - zp) * scale rounded once) or ``"distributed"`` (OpenVINO's fused
        multiply-add) for 8-, 16- and 32-bit x (``dequantize_formula``).
    subnormals: ``"keep"`` or ``"flush"`` results below float32's normal range (``dequantize_subnormals``).
    int32_formula: how int32 x's ``x - zp`` is rounded before the product (``dequantize_int32``).
    """

    formula: DequantizeFormula
    subnormals: DequantizeSubnormals
    int32_formula: DequantizeInt32

    @classmethod
    def of(cls, profile: Profile) -> DequantizeOptions:
        return cls(
            formula=profile.dequantize_formula,
            subnormals=profile.dequantize_subnormals,
            int32_formula=profile.dequantize_int32,
        )


@dataclass(frozen=True)
class DynamicQuantizeOptions:
    """DynamicQuantizeLinear (and the quantization of com.microsoft DynamicQuantizeMatMul's A).

    reciprocal: every division a product by a float32 reciprocal, as OpenVINO
        (``dynamic_quantize_formula="reciprocal"``).
    zero_range_scale: the scale returned when min(x, 0) == max(x, 0) (``dynamic_zero_range_scale``).
    refuse_out_of_range_scale: refuse a float32 scale that underflows to 0 or overflows to inf, rather than
        return the float32 formulas' values (``dynamic_scale_out_of_range="error"``).
    nan: what NaN input gives (``nan``).
    """

    reciprocal: bool
    zero_range_scale: float
    refuse_out_of_range_scale: bool
    nan: NanRule

    @classmethod
    def of(cls, profile: Profile) -> DynamicQuantizeOptions:
        return cls(
            reciprocal=profile.dynamic_quantize_formula == "reciprocal",
            zero_range_scale=profile.dynamic_zero_range_scale,
            refuse_out_of_range_scale=profile.dynamic_scale_out_of_range == "error",
            nan=profile.nan,
        )


@dataclass(frozen=True)
class IntegerProductOptions:
    """MatMulInteger and ConvInteger, whose output is the int32 accumulator.

    int32_overflow: an exact value outside int32 wraps, saturates or is refused (``int32_overflow``).
    saturate_u8s8_pairs: add uint8 x int8 products in adjacent pairs with int16 saturation, as onnxruntime's
        MLAS kernels without VNNI (``avx2_u8s8_saturation``).
    """

    int32_overflow: Int32Overflow
    saturate_u8s8_pairs: bool

    @classmethod
    def of(cls, profile: Profile) -> IntegerProductOptions:
        return cls(int32_overflow=profile.int32_overflow, saturate_u8s8_pairs=profile.avx2_u8s8_saturation)


@dataclass(frozen=True)
class RequantizeOptions:
    """The requantizing integer products: QLinearMatMul, QLinearConv (ai.onnx and com.microsoft), and
    com.microsoft QGemm and MatMulIntegerToFloat (which scale the accumulator to a float).

    precision: the type of ``acc * multiplier`` and of the multiplier (``requantize_precision``).
    zero_point_first: add y_zero_point before rounding (``requantize_zero_point="before-rounding"``).
    fake_quantize_lowering: QLinearMatMul and QLinearConv as OpenVINO lowers them, where that reproduces
        it (``qlinear_requantize="fake-quantize"``).
    saturate_u8s8_pairs: as :class:`IntegerProductOptions` (``avx2_u8s8_saturation``).
    """

    precision: RequantizePrecision
    zero_point_first: bool
    fake_quantize_lowering: bool
    saturate_u8s8_pairs: bool

    @classmethod
    def of(cls, profile: Profile) -> RequantizeOptions:
        return cls(
            precision=profile.requantize_precision,
            zero_point_first=profile.requantize_zero_point == "before-rounding",
            fake_quantize_lowering=profile.qlinear_requantize == "fake-quantize",
            saturate_u8s8_pairs=profile.avx2_u8s8_saturation,
        )


@dataclass(frozen=True)
class DynamicQuantizeMatMulOptions:
    """com.microsoft DynamicQuantizeMatMul: A quantized as DynamicQuantizeLinear, then MatMulIntegerToFloat.

    quantize_a: the options of A's DynamicQuantizeLinear.
    product: the options of the integer product and its scaling to float.
    """

    quantize_a: DynamicQuantizeOptions
    product: RequantizeOptions

    @classmethod
    def of(cls, profile: Profile) -> DynamicQuantizeMatMulOptions:
        return cls(quantize_a=DynamicQuantizeOptions.of(profile), product=RequantizeOptions.of(profile))


@dataclass(frozen=True)
class QLinearElementwiseOptions:
    """The com.microsoft QLinear elementwise and pooling ops (QLinearAdd, QLinearMul, QLinearSigmoid,
    QLinearLeakyRelu, QLinearSoftmax, QLinearConcat, QLinearWhere, QLinearAveragePool, QLinearGlobalAveragePool).

    mlas_float32: replay onnxruntime's MLAS float32 kernels step by step rather than evaluate exactly
        (``qlinear_pipeline="mlas-float32"``).
    """

    mlas_float32: bool

    @classmethod
    def of(cls, profile: Profile) -> QLinearElementwiseOptions:
        return cls(mlas_float32=profile.qlinear_pipeline == "mlas-float32")


@dataclass(frozen=True)
class FloatPipelineOptions:
    """The float kernels a backend computes its own way: MatMul, Gemm, Conv, Softmax, LayerNormalization,
    GlobalAveragePool, Tanh, Sigmoid, Erf, Gelu
    and com.microsoft Gelu and BiasGelu.

    pipeline: ``"exact"``, ``"mlas-float32"`` or ``"numpy-float32"`` (``float_pipeline``); kernels ask
        :meth:`replays_mlas_float32` and :meth:`replays_numpy_float32` rather than compare it.
    threads: the intra-op threads of the onnxruntime session replayed under ``"mlas-float32"`` (``mlas_threads``).
    """

    pipeline: FloatPipeline
    threads: int

    @classmethod
    def of(cls, profile: Profile) -> FloatPipelineOptions:
        return cls(pipeline=profile.float_pipeline, threads=profile.mlas_threads)

    def replays_mlas_float32(self, dtype) -> bool:
        """Whether a float computation on ``dtype`` values replays onnxruntime's MLAS kernels operation by
        operation (``"mlas-float32"``, :mod:`refquant.mlas`): only float32 values do."""
        return self.pipeline == "mlas-float32" and np.dtype(dtype) == np.float32

    def replays_numpy_float32(self, dtype) -> bool:
        """Whether a float computation on ``dtype`` values takes numpy's own float32 products, as onnx.reference
        calls them (``"numpy-float32"``: whatever rounding this machine's numpy and BLAS give): only float32
        values do."""
        return self.pipeline == "numpy-float32" and np.dtype(dtype) == np.float32
