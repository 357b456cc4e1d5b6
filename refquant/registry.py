"""The one registry: (domain, op_type, since_version) -> kernel.

A kernel is a function ``kernel(node, *inputs) -> tuple[np.ndarray, ...]``.
Missing optional inputs arrive as ``None``. ``node`` (a :class:`Node`) gives
the attributes, the version the model imports, ``warn``, and ``node.options``:
the profile options of the family the kernel declares when it registers
(``options=``, a class of :mod:`refquant.kernel_options`; None without one).
One function serves every version of an op; it branches on ``node.version``.

A model importing opset *V* of a domain runs, for each op, the registered
version with the largest ``since_version <= V``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

__all__ = [
    "register", "lookup", "options_family", "supported_ops", "canonical_domain", "DEFAULT_DOMAIN", "MS_DOMAIN", "MAX_OPSET",
]

DEFAULT_DOMAIN = ""
MS_DOMAIN = "com.microsoft"

#: Newest opset of each domain whose semantics refquant knows.
MAX_OPSET = {DEFAULT_DOMAIN: 28, MS_DOMAIN: 1}

Kernel = Callable[..., tuple]

_KERNELS: dict[tuple[str, str], tuple[list[int], Kernel]] = {}
#: (domain, op_type) -> the options class its kernel declared
_OPTIONS: dict[tuple[str, str], type] = {}


def canonical_domain(domain: str) -> str:
    """The domain as refquant keys it: "ai.onnx" and "" are one domain, spelled ""."""
    return DEFAULT_DOMAIN if domain in ("", "ai.onnx") else domain


def register(op_type: str, since: Sequence[int], domain: str = DEFAULT_DOMAIN, *, options: type | None = None):
    """Register a kernel for every ``since_version`` of ``op_type`` in ``since``; ``options``: the class of
    :mod:`refquant.kernel_options` whose object the kernel reads as ``node.options`` (None: it reads none)."""

    def decorate(kernel: Kernel) -> Kernel:
        key = (canonical_domain(domain), op_type)
        if key in _KERNELS:
            raise RuntimeError(f"{domain or 'ai.onnx'}::{op_type} registered twice")
        _KERNELS[key] = (sorted(since), kernel)
        if options is not None:
            _OPTIONS[key] = options
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


def options_family(domain: str, op_type: str) -> type | None:
    """The options class the kernel of ``op_type`` declared (:func:`register`), or None."""
    return _OPTIONS.get((canonical_domain(domain), op_type))


def supported_ops() -> list[tuple[str, str, int]]:
    """Every (domain, op_type, since_version) triple refquant implements, sorted.

    Importing the package ``refquant`` (which any ``refquant.*`` import does first) imports
    :mod:`refquant.ops`, and that fills the registry before anything can ask it.
    """
    return sorted(
        (domain, op_type, v) for (domain, op_type), (versions, _) in _KERNELS.items() for v in versions
    )
