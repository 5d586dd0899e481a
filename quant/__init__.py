"""int8 with aimet: one QuantizationSimModel per network stage, PTQ calibration over real GOPs,
and a quantized VideoCodec that the PyTorch coding engine runs int8-simulated.

Import-light: aimet and torch load only when a function below is first used.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "QuantConfig": "mobilecodec.quant.config",
    "load_layer_overrides": "mobilecodec.quant.config",
    "build_sims": "mobilecodec.quant.sim",
    "quantized_stage_names": "mobilecodec.quant.sim",
    "QuantizedVideoCodec": "mobilecodec.quant.qmodel",
    "PTQOptions": "mobilecodec.quant.ptq",
    "run_ptq": "mobilecodec.quant.ptq",
    "quantize_model": "mobilecodec.quant.ptq",
    "save_quantized": "mobilecodec.quant.ptq",
    "load_quantized": "mobilecodec.quant.ptq",
    "calibrate": "mobilecodec.quant.calibrate",
    "load_gops": "mobilecodec.quant.calibrate",
    "QATOptions": "mobilecodec.quant.qat",
    "run_qat": "mobilecodec.quant.qat",
    "CheckOptions": "mobilecodec.quant.check",
    "check_int8": "mobilecodec.quant.check",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'quant' has no attribute {name!r}")
