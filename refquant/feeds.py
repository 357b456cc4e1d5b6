"""Seeded random feeds for a model's declared inputs: the data ``refquant run`` and ``refquant bench`` draw
when no input is given."""

from __future__ import annotations

import numpy as np

from .dtypes import qtype
from .errors import RefquantError

__all__ = ["MAX_RANDOM_ELEMENTS", "random_feeds"]

#: the most elements refquant draws for one random input (2**28 float32 values are 1 GiB)
MAX_RANDOM_ELEMENTS = 2**28


def random_feeds(inputs, *, seed: int, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded random feeds for the given input specs.

    Floats: standard normal. Integers: uniform over the whole type range. Strings: refused (a
    string input is not a number to draw). A symbolic or unknown dimension is taken from ``dims``
    (by name), else 1; an input of more than MAX_RANDOM_ELEMENTS elements is refused.
    """
    rng = np.random.default_rng(seed)
    dims = dims or {}
    feeds = {}
    for spec in inputs:
        if spec.shape is None:
            raise RefquantError(f"input '{spec.name}' has no declared shape; pass it with --input")
        if spec.dtype.kind in "OUS":
            raise RefquantError(f"input '{spec.name}' is a string tensor; refquant draws random numbers only")
        shape = tuple(d if isinstance(d, int) and d > 0 else dims.get(d, 1) for d in spec.shape)
        if np.prod(shape, dtype=object) > MAX_RANDOM_ELEMENTS:
            raise RefquantError(
                f"input '{spec.name}' of shape {list(shape)} has more than {MAX_RANDOM_ELEMENTS} elements to draw; "
                "choose smaller --dim values or pass it with --input"
            )
        dtype = spec.dtype
        if dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(np.bool_)
        elif dtype.kind in "iu" or (dtype.kind == "V" and not qtype(dtype).is_float):
            lo, hi = (np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype.kind in "iu" else (
                qtype(dtype).qmin,
                qtype(dtype).qmax,
            )
            feeds[spec.name] = rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
    return feeds
