"""onnxruntime releases whose quantization-tool rules refquant reproduces, and what changed in each.

The one place that says which onnxruntime release refquant follows by default
(:data:`LATEST`, the newest release) and how the older ones differ.
``refquant.params.compute_scale_zero_point(..., onnxruntime_version="1.31")``
and the calibration code read their rules from here; spec/calibration.md
("onnxruntime versions") states the same table in words.

A rule that changed in a release is a field of :class:`Rules`; :data:`CHANGES`
lists, per release, the fields it changed and a sentence saying how. A release
not listed here is not reproduced: asking for it is an error that names the
releases that are, and the known changes refquant does not reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .errors import RefquantError

__all__ = ["Rules", "RELEASES", "LATEST", "CHANGES", "rules", "resolve_version"]


@dataclass(frozen=True)
class Rules:
    """The rules of one release that change numbers.

    fp16_degenerate_scale:
        Step 5 of ``compute_scale_zp`` (and ``compute_scale_zp_blocked``) for a
        float16 range: ``"below-tiny"``: scale 1 and zero point 0 when the float64
        scale is below float16's smallest normal 2**-14 (float32 ranges always use
        their own smallest normal); ``"rounds-to-zero"``: only when the float64
        scale rounded to float16 is below its smallest subnormal 2**-24, i.e. is 0,
        so subnormal float16 scales are kept.
    """

    version: str
    fp16_degenerate_scale: Literal["below-tiny", "rounds-to-zero"]


#: release -> (fields it changed, what changed); the first entry is the oldest release reproduced
CHANGES: dict[str, tuple[dict, str]] = {
    "1.31": (
        {"fp16_degenerate_scale": "below-tiny"},
        "compute_scale_zp promotes rmin and rmax to float64 before subtracting (1.30 and earlier subtracted "
        "in the range's type first); a float16 scale below 2**-14 gives scale 1, zero point 0",
    ),
    "1.32": (
        {"fp16_degenerate_scale": "rounds-to-zero"},
        "float16 scales: degenerate (scale 1, zero point 0) only when float16(scale) is 0; subnormal float16 "
        "scales are kept (compute_scale_zp and compute_scale_zp_blocked). The calibrators (calibrate.py) are "
        "unchanged",
    ),
}

#: known changes of older releases that refquant does not reproduce (a version before the first entry)
NOT_REPRODUCED = (
    "1.30 and earlier subtract rmax - rmin in the range's type before widening (about 25% of float32 scales "
    "differ by 1 ulp); 1.20-1.23 use 0..254 / 0..65534 for symmetric uint8 / uint16 (zero point 127 / 32767)"
)

RELEASES: tuple[str, ...] = tuple(CHANGES)
#: the release refquant follows by default: the newest one
LATEST: str = RELEASES[-1]


def _build() -> dict[str, Rules]:
    table: dict[str, Rules] = {}
    current: Rules | None = None
    for version, (changed, _) in CHANGES.items():
        current = Rules(version=version, **changed) if current is None else replace(current, version=version, **changed)
        table[version] = current
    return table


_RULES = _build()


def resolve_version(version: str | None) -> str:
    """``version`` as a key of :data:`CHANGES` ("1.31", "1.31.1" -> "1.31"); None -> :data:`LATEST`."""
    if version is None:
        return LATEST
    text = str(version).strip()
    parts = text.split(".")
    if len(parts) >= 2 and all(p.isdigit() for p in parts):
        key = f"{int(parts[0])}.{int(parts[1])}"
        if key in _RULES:
            return key
        newer = tuple(map(int, key.split("."))) > tuple(map(int, LATEST.split(".")))
        if newer:
            raise RefquantError(
                f"onnxruntime {text} is newer than the releases refquant knows ({', '.join(RELEASES)}); "
                f"its rules are not known here: use onnxruntime_version={LATEST!r} or None (the newest)"
            )
        raise RefquantError(
            f"onnxruntime {text} is not reproduced; refquant follows releases {', '.join(RELEASES)}. "
            f"Known differences of older releases: {NOT_REPRODUCED}"
        )
    raise RefquantError(f"onnxruntime_version must look like '1.31', got {version!r}")


def rules(version: str | None = None) -> Rules:
    """The :class:`Rules` of onnxruntime ``version`` (default: :data:`LATEST`)."""
    return _RULES[resolve_version(version)]
