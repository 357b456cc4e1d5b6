"""Tensor contractions: Einsum, Det.

    Einsum: output[out-term] = sum over the labels not in out-term of the product of inputs[term_i]
    Det:    Y[...] = determinant of the square matrices X[..., :, :]

Floats: Einsum sums the products in float64 and rounds once to T (products of two float32, float16 or
bfloat16 values are exact in float64; longer products round in float64); Det is LAPACK's LU factorization in
float64 (numpy.linalg.det), rounded once to T. Integers (Einsum): the exact sum of products mod 2**64,
wrapped to T (two's complement), which equals an accumulator of T's width wrapping.

spec/ops/tensor.md states every choice these kernels make.
"""

from __future__ import annotations

import math
import re

import numpy as np
from onnx import TensorProto as T

from .. import arith
from ..checks import require_dtype
from ..dtypes import IEEE_FLOATS, NARROW_INTS, WIDE_INTS, dtype_name, types_at
from ..errors import AttributeValueError, DTypeError, ShapeError
from ..node import Node
from ..registry import register

__all__ = ["EinsumPlan", "einsum_plan"]

EINSUM_TYPES = {12: IEEE_FLOATS + WIDE_INTS + NARROW_INTS, 28: (T.BFLOAT16,)}
DET_TYPES = {11: IEEE_FLOATS, 22: (T.BFLOAT16,)}

_TERM = re.compile(r"^[A-Za-z]*(\.\.\.)?[A-Za-z]*$")


class EinsumPlan:
    """An equation resolved against operand shapes: explicit terms (``...`` replaced by labels of their own),
    every label's length, and the output term."""

    def __init__(self, inputs: list[str], output: str, lengths: dict[str, int]):
        self.inputs, self.output, self.lengths = inputs, output, lengths

    @property
    def equation(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.lengths[label] for label in self.output)

    @property
    def loop_size(self) -> int:
        """The product of every label's length: the multiply-adds of the direct evaluation."""
        return math.prod(self.lengths.values())


def einsum_plan(equation: str, shapes: list[tuple[int, ...]]) -> EinsumPlan:
    """The equation (spaces ignored) checked against ``shapes``; ShapeError / AttributeValueError naming the problem.

    Implicit output (no ``->``): the ellipsis dimensions, then the labels that occur once, in ASCII order
    (upper case before lower case), the ONNX text's rule."""
    text = equation.replace(" ", "")
    left, arrow, right = text.partition("->")
    terms = left.split(",")
    if len(terms) != len(shapes):
        raise AttributeValueError(f"equation {equation!r} has {len(terms)} input terms for {len(shapes)} inputs")
    if not all(_TERM.match(t) for t in terms) or (arrow and not _TERM.match(right)):
        raise AttributeValueError(f"equation {equation!r}: terms are letters and at most one '...' each")
    used = set("".join(terms).replace(".", ""))
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    spare = [c for c in letters if c not in used]  # labels for the ellipsis dimensions
    ellipsis_rank = 0
    for term, shape in zip(terms, shapes):
        letters = len(term.replace("...", ""))
        if "..." in term:
            if len(shape) < letters:
                raise ShapeError(f"term {term!r} names {letters} axes, its input has shape {shape}")
            ellipsis_rank = max(ellipsis_rank, len(shape) - letters)
        elif len(shape) != letters:
            raise ShapeError(f"term {term!r} names {letters} axes, its input has shape {shape}")
    if ellipsis_rank > len(spare):
        raise AttributeValueError(f"equation {equation!r} needs more than 52 labels")
    ellipsis = "".join(spare[:ellipsis_rank])
    lengths: dict[str, int] = {}
    explicit = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            own = len(shape) - len(term.replace("...", ""))
            term = term.replace("...", ellipsis[ellipsis_rank - own :])
        explicit.append(term)
        for label, n in zip(term, shape):
            if lengths.setdefault(label, n) != n:
                if lengths[label] == 1 and label in ellipsis:
                    lengths[label] = n  # ellipsis dimensions broadcast
                elif not (n == 1 and label in ellipsis):
                    raise ShapeError(f"label {label!r} has lengths {lengths[label]} and {n} in {equation!r}")
    if arrow:
        if right.count("...") and not ellipsis_rank and "..." not in left:
            raise AttributeValueError(f"equation {equation!r}: '...' in the output but not in the inputs")
        output = right.replace("...", ellipsis)
        if len(set(output)) != len(output) or not set(output) <= set(lengths):
            raise AttributeValueError(f"equation {equation!r}: the output term repeats or invents a label")
    else:
        counts = {label: "".join(terms).count(label) for label in used}
        output = ellipsis + "".join(sorted(label for label, c in counts.items() if c == 1))
    return EinsumPlan(explicit, output, lengths)


@register("Einsum", since=(12, 28))
def einsum(node: Node, *inputs):
    allowed = types_at(EINSUM_TYPES, node.version)
    if not inputs or any(x is None for x in inputs):
        raise ShapeError("needs one or more inputs")
    for i, x in enumerate(inputs):
        require_dtype(x, allowed, f"Inputs[{i}]")
    if len({x.dtype for x in inputs}) > 1:
        raise DTypeError("inputs must share one element type: " + ", ".join(dtype_name(x.dtype) for x in inputs))
    plan = einsum_plan(node.attr("equation", kind=str), [x.shape for x in inputs])
    dtype = inputs[0].dtype
    operands = [_broadcastable(x, term, plan) for x, term in zip(inputs, plan.inputs)]
    if dtype.kind in "iu":
        wide = np.uint64 if dtype.kind == "u" else np.int64
        with np.errstate(over="ignore"):
            result = np.einsum(plan.equation, *(x.astype(wide) for x in operands), optimize=False)
        return (np.asarray(result).astype(dtype),)
    result = np.einsum(plan.equation, *(x.astype(np.float64) for x in operands), optimize=len(operands) > 2)
    return (np.asarray(arith.narrow(np.asarray(result, np.float64), dtype)),)


def _broadcastable(x: np.ndarray, term: str, plan: EinsumPlan) -> np.ndarray:
    """x with its length-1 ellipsis axes broadcast to the label's length (numpy.einsum wants equal lengths)."""
    target = tuple(plan.lengths[label] for label in term)
    return x if x.shape == target else np.broadcast_to(x, target)


@register("Det", since=(11, 22))
def det(node: Node, x):
    require_dtype(x, types_at(DET_TYPES, node.version), "X")
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"X must be square matrices (..., M, M), got shape {x.shape}")
    if x.shape[-1] == 0:
        return (np.ones(x.shape[:-2], dtype=x.dtype),)
    with np.errstate(all="ignore"):
        value = np.linalg.det(x.astype(np.float64))
    return (np.asarray(arith.narrow(np.asarray(value, np.float64), x.dtype)),)
