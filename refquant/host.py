"""The host's x86 instruction sets, and the MLAS integer kernels onnxruntime picks from them.

onnxruntime chooses its U8S8 integer GEMM and symmetric-convolution kernels once, from CPUID
(``onnxruntime/core/mlas/lib/platform.cpp``, ``MLAS_PLATFORM::MLAS_PLATFORM``): AVX2, then AVX-VNNI,
then AVX-512 core (BW/DQ/VL), then AVX-512 VNNI, then AMX. The families without a VNNI instruction
(``"avx2"``, ``"avx512core"``) multiply unsigned by signed bytes with VPMADDUBSW, whose adjacent-pair
int16 sums saturate; the others accumulate exactly. refquant reads the same facts from
``/proc/cpuinfo`` (Linux flag names), so that the ``"onnxruntime"`` profile describes onnxruntime on
this machine (spec/profiles.md, spec/ops/integer.md).
"""

from __future__ import annotations

import functools

__all__ = ["MLAS_INTEGER_KERNELS", "SATURATING_KERNELS", "cpu_flags", "mlas_integer_kernels", "u8s8_pairs_saturate"]

#: the U8S8 kernel families of MLAS on x86-64, in the order platform.cpp tries them ("unknown": no x86 flags read)
MLAS_INTEGER_KERNELS = ("unknown", "avx2", "avxvnni", "avx512core", "avx512vnni", "amx")
#: the families built on VPMADDUBSW (u8 x s8 pairs added in int16 with saturation)
SATURATING_KERNELS = frozenset({"avx2", "avx512core"})


def _read_flags(path: str) -> frozenset[str]:
    try:
        with open(path, encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=None)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first processor's flags in ``path`` (empty when unreadable: not Linux, or not x86)."""
    return _read_flags(path)


def mlas_integer_kernels(flags: frozenset[str] | set[str] | None = None) -> str:
    """The MLAS U8S8 kernel family onnxruntime selects on a CPU with ``flags`` (default: this host).

    Mirrors platform.cpp: "avx2" needs AVX2 and FMA; AVX-VNNI replaces it with "avxvnni"; AVX512F with
    AVX512BW/DQ/VL gives "avx512core", and with AVX512_VNNI "avx512vnni"; AMX-TILE with AMX-INT8 gives
    "amx" (its U8S8 GEMM). "unknown": no AVX2 (or no flags read); MLAS's portable kernels are exact.
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    if not {"avx2", "fma"} <= flags:
        return "unknown"
    family = "avx2"
    if "avx_vnni" in flags:
        family = "avxvnni"
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        family = "avx512vnni" if ("avx512_vnni" in flags or "avx512vnni" in flags) else "avx512core"
    if {"amx_tile", "amx_int8"} <= flags:
        family = "amx"
    return family


def u8s8_pairs_saturate(flags: frozenset[str] | set[str] | None = None) -> bool:
    """Whether onnxruntime's U8S8 kernels on a CPU with ``flags`` (default: this host) saturate pair sums."""
    return mlas_integer_kernels(flags) in SATURATING_KERNELS
