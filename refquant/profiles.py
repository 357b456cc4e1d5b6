"""Profiles: every arithmetic choice a backend may make differently, by name.

A :class:`Profile` is a frozen set of options. ``"spec"`` is refquant's reading
of the ONNX specification (spec/profiles.md explains each choice); other
profiles emulate a backend, so that a difference between refquant and that
backend is *explained* by an option rather than tolerated.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

from .errors import RefquantError

__all__ = ["Profile", "SPEC", "ONNXRUNTIME", "ONNX_REFERENCE", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Arithmetic options of the reference.

    requantize_precision:
        Precision of ``acc * (x_scale * w_scale / y_scale)`` in QLinearConv and
        QLinearMatMul: ``"float64"`` (multiplier and product in float64),
        ``"float32"`` (``float32(acc) * float32(multiplier)``, onnxruntime CPU) or
        ``"mixed"`` (multiplier in the scales' own type, product in float64: onnx.reference).
    quantize_overflow:
        QuantizeLinear to an integer type when ``round(x / scale)`` leaves the
        int32 range (|x/scale| >= 2**31, +-inf): ``"saturate"`` to qmin/qmax, or
        ``"int32-indefinite"``: the x86 float->int32 cast gives INT32_MIN, the
        zero point is added in wrapping int32, then the result is clipped
        (onnx.reference: 1e10 -> 0 for uint8). NaN takes the same path, so the
        ``nan`` option does not apply in this mode.
    nan:
        What QuantizeLinear / DynamicQuantizeLinear do with NaN input to an
        integer type: ``"error"`` raises :class:`~refquant.errors.NonFiniteError`;
        ``"qmin"`` / ``"zero_point"`` map it to that value.
    int32_overflow:
        Rule for an int32 *output* (MatMulInteger, ConvInteger) whose exact
        value does not fit: ``"wrap"`` (two's complement), ``"saturate"`` or
        ``"error"``. A warning names the node in the first two cases. Internal
        accumulators of QLinear ops are always exact (int64).
    dynamic_zero_range_scale:
        Scale DynamicQuantizeLinear returns when min(x, 0) == max(x, 0), where
        the spec formula would divide by zero (onnxruntime: 1.0; onnx.reference: 1/255).
    qlinear_pipeline:
        Arithmetic of the com.microsoft QLinear elementwise and pooling ops (QLinearAdd,
        QLinearMul, QLinearSigmoid, QLinearLeakyRelu, QLinearSoftmax, QLinearConcat,
        QLinearWhere, QLinearAveragePool, QLinearGlobalAveragePool): ``"exact"`` dequantizes
        exactly, computes the function in float64 and quantizes once; ``"mlas-float32"``
        replays onnxruntime's MLAS kernels step by step in float32 (fused multiply-adds,
        lookup tables, MLAS's rational logistic; spec/ops/contrib.md lists each op's steps).
    """

    name: str = "custom"
    requantize_precision: Literal["float64", "float32", "mixed"] = "float64"
    quantize_overflow: Literal["saturate", "int32-indefinite"] = "saturate"
    nan: Literal["error", "qmin", "zero_point"] = "error"
    int32_overflow: Literal["wrap", "saturate", "error"] = "wrap"
    dynamic_zero_range_scale: float = 1.0
    qlinear_pipeline: Literal["exact", "mlas-float32"] = "exact"

    def __post_init__(self):
        allowed = {
            "requantize_precision": ("float64", "float32", "mixed"),
            "quantize_overflow": ("saturate", "int32-indefinite"),
            "nan": ("error", "qmin", "zero_point"),
            "int32_overflow": ("wrap", "saturate", "error"),
            "qlinear_pipeline": ("exact", "mlas-float32"),
        }
        for key, values in allowed.items():
            if getattr(self, key) not in values:
                raise RefquantError(
                    f"profile option {key}={getattr(self, key)!r} is not one of {values}"
                )
        if not self.dynamic_zero_range_scale > 0:
            raise RefquantError("profile option dynamic_zero_range_scale must be > 0")

    def with_options(self, **options) -> Profile:
        """A copy with some options changed (unknown names are an error)."""
        known = {f.name for f in fields(self)}
        unknown = set(options) - known
        if unknown:
            raise RefquantError(f"unknown profile option(s) {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **options)


SPEC = Profile(name="spec")

#: onnxruntime CPU kernels (spec/profiles.md gives the evidence for each option)
ONNXRUNTIME = Profile(name="onnxruntime", requantize_precision="float32", nan="qmin", qlinear_pipeline="mlas-float32")

#: onnx.reference.ReferenceEvaluator (onnx 1.23)
ONNX_REFERENCE = Profile(
    name="onnx-reference",
    requantize_precision="mixed",
    quantize_overflow="int32-indefinite",
    nan="qmin",
    dynamic_zero_range_scale=float(1 / 255),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SPEC, ONNXRUNTIME, ONNX_REFERENCE)}


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
