"""Narrow int8 convolutions padded to 16 output channels for onnxruntime (runtime.narrow_conv):
the rewritten graph gives the very same uint8 codes as the original on onnxruntime, and, with the
runtime's session options (exact int8 products on every x86 CPU), the codes of an integer
reference (int64 products, float64 requantization: at most one level off, rarely, where
onnxruntime's float32 multiplier rounds a .5 boundary the other way); graphs it cannot prove
are left alone. (The engine applies it to every CPU session: the stream hash and parity tests
run the packages' 2- and 6-channel output convs through it.)"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mobilecodec.runtime.narrow_conv import WIDTH, pad_narrow_convs
from mobilecodec.runtime.threads import session_options


def _qdq_conv(cin, cout, h, w, *, bias=True, per_channel=True, out_per_channel=False, out_dtype=np.uint8, seed=0):
    """uint8 input -> DQ -> Conv 3x3 (DQ int8 weights [per output channel], DQ int32 bias) -> Q, random
    weights drawn from `seed`; returns (model, wq, bq, ws, xs, ys) (bq zeros without bias)."""
    from models_for_tests import qdq_conv

    rng = np.random.default_rng(seed)
    wq = rng.integers(-127, 128, (cout, cin, 3, 3)).astype(np.int8)
    ws = rng.uniform(0.002, 0.02, cout if per_channel else ()).astype(np.float32)
    xs, ys = np.float32(0.02), np.float32(0.05)
    bq = rng.integers(-20000, 20000, cout).astype(np.int32) if bias else None
    y_scale = np.full(cout, ys, np.float32) if out_per_channel else ys
    y_zero = np.full(cout, 128, out_dtype) if out_per_channel else np.array(128, out_dtype)
    model = qdq_conv(wq, ws, bq, xs, y_scale, y_zero, in_shape=[1, cin, h, w], out_shape=[1, cout, h, w])
    return model, wq, np.zeros(cout, np.int32) if bq is None else bq, ws, xs, ys


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]


def _reference(x, wq, bq, ws, xs, ys):
    """3x3 'same' convolution by its definition in int64, requantized in float64 (zero point 128)."""
    xi = np.pad(x[0].astype(np.int64), ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[2:]
    acc = np.zeros((wq.shape[0], h, w), np.int64) + bq[:, None, None]
    for u in range(3):
        for v in range(3):
            acc += np.einsum("chw,oc->ohw", xi[:, u:u + h, v:v + w], wq[:, :, u, v].astype(np.int64))
    m = np.float64(xs) * np.broadcast_to(ws.astype(np.float64), (wq.shape[0],)) / np.float64(ys)
    return np.clip(np.rint(acc * m[:, None, None]) + 128, 0, 255)


@pytest.mark.parametrize("cin,cout,bias,per_channel", [(32, 6, True, True), (24, 2, True, True),
                                                        (40, 6, False, True), (16, 3, True, False)])
def test_padded_conv_gives_the_same_codes(cin, cout, bias, per_channel):
    model, wq, bq, ws, xs, ys = _qdq_conv(cin, cout, 23, 37, bias=bias, per_channel=per_channel, seed=cin + cout)
    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    assert pad_narrow_convs(wide) == 1
    onnx.checker.check_model(wide)
    conv = next(n for n in wide.graph.node if n.op_type == "Conv")
    w_dq = next(n for n in wide.graph.node if n.output[0] == conv.input[1])
    assert next(t for t in wide.graph.initializer if t.name == w_dq.input[0]).dims[0] == WIDTH
    x = np.random.default_rng(1).integers(0, 256, (1, cin, 23, 37)).astype(np.uint8)
    got, orig = _run(wide, x), _run(model, x)
    assert got.shape == orig.shape == (1, cout, 23, 37)
    assert np.array_equal(got, orig)
    levels = np.abs(got[0].astype(np.int64) - _reference(x, wq, bq, ws, xs, ys))
    assert levels.max() <= 1 and (levels > 0).mean() < 1e-3


def test_graphs_it_cannot_prove_are_left_alone():
    wide_enough, *_ = _qdq_conv(8, WIDTH, 5, 5)
    per_channel_out, *_ = _qdq_conv(8, 4, 5, 5, out_per_channel=True)
    sixteen_bit_out, *_ = _qdq_conv(8, 4, 5, 5, out_dtype=np.uint16)  # the W8A16 receiver's layers
    for model in (wide_enough, per_channel_out, sixteen_bit_out):
        before = [n.op_type for n in model.graph.node]
        assert pad_narrow_convs(model) == 0
        assert [n.op_type for n in model.graph.node] == before
    # a float conv (weights not from a DequantizeLinear) stays as well
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    assert pad_narrow_convs(helper.make_model(graph)) == 0
