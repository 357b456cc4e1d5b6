"""The one registry: (domain, op_type, since_version) -> kernel.

A kernel is a function ``kernel(node, *inputs) -> tuple[np.ndarray, ...]``.
Missing optional inputs arrive as ``None``. ``node`` (a :class:`Node`) gives
the attributes, the version the model imports, the profile and ``warn``.
One function serves every version of an op; it branches on ``node.version``.

A model importing opset *V* of a domain runs, for each op, the registered
version with the largest ``since_version <= V``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

__all__ = ["register", "lookup", "supported_ops", "canonical_domain", "DEFAULT_DOMAIN", "MS_DOMAIN", "MAX_OPSET"]

DEFAULT_DOMAIN = ""
MS_DOMAIN = "com.microsoft"

#: Newest opset of each domain whose semantics refquant knows.
MAX_OPSET = {DEFAULT_DOMAIN: 28, MS_DOMAIN: 1}

Kernel = Callable[..., tuple]

_KERNELS: dict[tuple[str, str], tuple[list[int], Kernel]] = {}


def canonical_domain(domain: str) -> str:
    """The domain as refquant keys it: "ai.onnx" and "" are one domain, spelled ""."""
    return DEFAULT_DOMAIN if domain in ("", "ai.onnx") else domain


def register(op_type: str, since: Sequence[int], domain: str = DEFAULT_DOMAIN):
    """Register a kernel for every ``since_version`` of ``op_type`` in ``since``."""

    def decorate(kernel: Kernel) -> Kernel:
        key = (canonical_domain(domain), op_type)
        if key in _KERNELS:
            raise RuntimeError(f"{domain or 'ai.onnx'}::{op_type} registered twice")
        _KERNELS[key] = (sorted(since), kernel)
        return kernel

    return decorate


def lookup(domain: str, op_type: str, opset: int) -> tuple[int, Kernel] | None:
    """(since_version, kernel) that runs ``op_type`` under ``opset``, or None."""
    entry = _KERNELS.get((canonical_domain(domain), op_type))
    if entry is None:
        return None
    versions, kernel = entry
    i = bisect.bisect_right(versions, opset)
    if i == 0:
        return None
    return versions[i - 1], kernel


def supported_ops() -> list[tuple[str, str, int]]:
    """Every (domain, op_type, since_version) triple refquant implements, sorted.

    Importing the package ``refquant`` (which any ``refquant.*`` import does first) imports
    :mod:`refquant.ops`, and that fills the registry before anything can ask it.
    """
    return sorted(
        (domain, op_type, v) for (domain, op_type), (versions, _) in _KERNELS.items() for v in versions
    )
