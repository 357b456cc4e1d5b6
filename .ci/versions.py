"""Print the package versions and the CPU features a CI step runs with (the closing note cites them)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = ("numpy", "onnx", "ml_dtypes", "protobuf", "onnxruntime", "openvino", "hypothesis", "pytest")
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_features() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    return " ".join(f for f in FEATURES if f in flags) or "none of " + ",".join(FEATURES)


def main() -> None:
    installed = []
    for name in PACKAGES:
        try:
            installed.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            installed.append(f"{name} -")
    print(f"== {sys.argv[1] if len(sys.argv) > 1 else 'environment'}: Python {platform.python_version()}; "
          + ", ".join(installed) + f"; CPU {platform.processor() or platform.machine()} [{cpu_features()}]")


if __name__ == "__main__":
    main()
