"""int8 with aimet: one QuantizationSimModel per network stage, PTQ calibration over real GOPs,
and a quantized VideoCodec that the PyTorch coding engine runs int8-simulated.

Import-light: aimet and torch load only when a function below is first used.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "QuantConfig": "quant.config",
    "load_layer_overrides": "quant.config",
    "build_sims": "quant.sim",
    "quantized_stage_names": "quant.sim",
    "QuantizedVideoCodec": "quant.qmodel",
    "PTQOptions": "quant.ptq",
    "run_ptq": "quant.ptq",
    "quantize_model": "quant.ptq",
    "save_quantized": "quant.ptq",
    "load_quantized": "quant.ptq",
    "calibrate": "quant.calibrate",
    "load_gops": "quant.calibrate",
    "QATOptions": "quant.qat",
    "run_qat": "quant.qat",
    "CheckOptions": "quant.check",
    "check_int8": "quant.check",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'quant' has no attribute {name!r}")
