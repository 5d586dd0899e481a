"""Host-side runtime: streaming encoder/decoder, profiler and complexity counters.

Kept import-light on purpose: submodules import torch / onnx / onnxruntime lazily, so importing
`runtime` (e.g. from the CLI parser) costs nothing.
"""

from typing import Any

__all__ = ["count_module", "count_onnx"]

_LAZY = {"count_module": "mobilecodec.runtime.complexity", "count_onnx": "mobilecodec.runtime.onnx_complexity"}


def __getattr__(name: str) -> Any:
    """`mobilecodec.runtime.count_module` / `mobilecodec.runtime.count_onnx`, imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
