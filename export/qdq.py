"""QDQ int8 graphs from onnxruntime's static quantizer, calibrated on given feeds: the stand-in for
graphs without aimet encodings (compile, NPU check, HTP parity). Graphs with aimet encodings get
their QDQ from `mobilecodec.export.aimet_qdq`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np

from mobilecodec.errors import InputError


def random_feeds(onnx_path: str | Path, count: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Calibration inputs drawn uniformly from [0, 1) for every graph input (static shapes)."""
    import onnx

    from mobilecodec.export.onnx_common import tensor_info

    proto = onnx.load(str(onnx_path), load_external_data=False)
    rng = np.random.default_rng(seed)
    infos = [tensor_info(v) for v in proto.graph.input]
    return [{i["name"]: rng.random(i["shape"], dtype=np.float32) for i in infos} for _ in range(count)]


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self.feeds = list(feeds)
        self.it = iter(self.feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self) -> None:
        self.it = iter(self.feeds)


def quantize_graph(float_path: str | Path, qdq_path: str | Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """Insert QuantizeLinear/DequantizeLinear pairs: uint8 activations, int8 per-channel weights
    (what the HTP runs), calibrated by min/max over `feeds`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from mobilecodec.fsutil import atomic_path

    if not feeds:
        raise InputError(f"no calibration inputs for {float_path}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns about pre-processing on every call
    try:
        with atomic_path(qdq_path) as tmp:
            quantize_static(str(float_path), str(tmp), _Reader(feeds), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    finally:
        root.setLevel(level)
    return Path(qdq_path)
