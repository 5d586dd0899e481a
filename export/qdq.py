"""QDQ int8 graphs from onnxruntime's static quantizer, calibrated on given feeds: the stand-in for
graphs without aimet encodings (compile, NPU check, HTP parity). Graphs with aimet encodings get
their QDQ from `mobilecodec.export.aimet_qdq`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

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


def htp_type_overrides(proto: Any) -> dict[str, list[dict]]:
    """Per-tensor quantizer overrides for the weights the HTP takes only unsigned: LayerNormalization's
    scale (an int8 scale makes QNN refuse the op, "Unsupported input/output datatypes requested for the
    HTP Op LayerNorm"; a uint8 one compiles, `export.htp_probe`)."""
    from onnxruntime.quantization import QuantType

    return {n.input[1]: [{"quant_type": QuantType.QUInt8}]
            for n in proto.graph.node if n.op_type == "LayerNormalization" and len(n.input) > 1 and n.input[1]}


#: (op, input index) of the parameters onnxruntime's quantizer gives each consumer its own Q/DQ for
_PER_CONSUMER = {("Conv", 2), ("ConvTranspose", 2), ("Gemm", 2)} | {
    (op, i) for op in ("LayerNormalization", "InstanceNormalization", "BatchNormalization", "GroupNormalization")
    for i in (1, 2, 3, 4)}


#: how `unshare_parameters` names a copy: the parameter's name, this, a number
COPY_MARK = "__copy"


def copied_from(name: str) -> str:
    """The name of the parameter `name` is an `unshare_parameters` copy of (the quantizer's suffixes
    kept: `w__copy2_quantized` -> `w_quantized`); `name` itself otherwise."""
    import re

    return re.sub(re.escape(COPY_MARK) + r"\d+", "", name, count=1)


def _shared_parameters(proto: Any) -> dict[str, list[tuple[Any, int]]]:
    """Float initializer -> its (node, input index) uses, for those read by more than one input of
    which one is a bias or normalisation parameter (`_PER_CONSUMER`); graph inputs left out (their
    readers must keep reading what a caller feeds)."""
    import onnx

    inputs = {vi.name for vi in proto.graph.input}
    floats = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT} - inputs
    uses: dict[str, list[tuple[Any, int]]] = {}
    for node in proto.graph.node:
        for index, name in enumerate(node.input):
            if name in floats:
                uses.setdefault(name, []).append((node, index))
    return {name: where for name, where in uses.items()
            if len(where) > 1 and any((n.op_type, i) in _PER_CONSUMER for n, i in where)}


def unshare_parameters(proto: Any) -> int:
    """Give every consumer of a shared bias or normalisation parameter its own copy; the number of
    copies made. The exporter merges equal initializers (a fresh model's zero biases, ones scales), the
    quantizer then hangs duplicated int32 DequantizeLinear nodes on them, and the HTP refuses those (a
    freshly initialised Swin did not compile until its five shared LayerNorm parameters were copied)."""
    import onnx

    shared = _shared_parameters(proto)
    if not shared:
        return 0
    inits = {i.name: i for i in proto.graph.initializer}
    taken = set(inits) | {t for n in proto.graph.node for t in [*n.input, *n.output]} | {
        vi.name for vi in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]}
    made = 0
    for name, where in shared.items():
        for node, index in where[1:]:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[name])
            k = 1
            while f"{name}{COPY_MARK}{k}" in taken:
                k += 1
            copy.name = node.input[index] = f"{name}{COPY_MARK}{k}"
            taken.add(copy.name)
            proto.graph.initializer.append(copy)
            made += 1
    return made


def quantize_graph(float_path: str | Path, qdq_path: str | Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """Insert QuantizeLinear/DequantizeLinear pairs: uint8 activations, int8 per-channel weights
    (what the HTP runs; `htp_type_overrides` names the exceptions), calibrated by min/max over `feeds`;
    shared parameters are copied first (`unshare_parameters`)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from mobilecodec.fsutil import atomic_path

    if not feeds:
        raise InputError(f"no calibration inputs for {float_path}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns about pre-processing on every call
    try:
        with atomic_path(qdq_path) as tmp, tempfile.TemporaryDirectory(prefix="mobilecodec-qdq-") as work:
            proto = onnx.load(str(float_path), load_external_data=False)
            if _shared_parameters(proto):  # copied in a full load, weights and all
                proto = onnx.load(str(float_path))
                unshare_parameters(proto)
                float_path = Path(work) / "unshared.onnx"
                onnx.save(proto, str(float_path), save_as_external_data=True, location="unshared.onnx.data")
            overrides = htp_type_overrides(proto)  # after the copies: each is named in it
            del proto
            quantize_static(str(float_path), str(tmp), _Reader(feeds), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                           "TensorQuantOverrides": overrides})
    finally:
        root.setLevel(level)
    return Path(qdq_path)
