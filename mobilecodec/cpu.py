"""What this CPU can do natively (read once from /proc/cpuinfo): exact uint8 x int8 products in
onnxruntime, bf16 arithmetic."""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The x86 feature flags of /proc/cpuinfo (empty where there is none, e.g. not Linux or not x86)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return frozenset()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def u8s8_exact() -> bool:
    """Whether onnxruntime multiplies uint8 x int8 here without intermediate saturation: x86 with
    AVX512-VNNI or AVX-VNNI (vpdpbusd accumulates in int32). Without VNNI its AVX2 kernels add
    product pairs in saturating int16 (vpmaddubsw). False where unknown."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni"})


def bf16_native() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX-BF16); elsewhere bf16 autocast is emulated, slowly."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
