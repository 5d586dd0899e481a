"""What this CPU's integer kernels can do exactly (read once from /proc/cpuinfo)."""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=1)
def u8s8_exact() -> bool:
    """Whether onnxruntime multiplies uint8 x int8 here without intermediate saturation: x86 with
    AVX512-VNNI or AVX-VNNI (vpdpbusd accumulates in int32). Without VNNI its AVX2 kernels add
    product pairs in saturating int16 (vpmaddubsw). False where unknown."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[1].split()) & {"avx512_vnni", "avx_vnni"})
    except OSError:
        pass
    return False
