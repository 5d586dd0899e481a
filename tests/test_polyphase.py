"""int8 ConvTranspose -> polyphase QLinearConv rewrite for the onnxruntime CPU EP (runtime.polyphase).

The expected values come from an independent definition: a transposed convolution written as a
scatter-add of integer products (int64, exact), requantized in float64. onnxruntime requantizes
with a float32 multiplier, so an output lying within float32 rounding of a .5 boundary may land
one level away; everything else must be identical.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from mobilecodec.cpu import u8s8_exact
from mobilecodec.runtime.polyphase import polyphase_conv_transpose, polyphase_weights
from mobilecodec.runtime.threads import session_options

GEOMETRIES = [(5, 2, 2, 1), (3, 2, 1, 1), (4, 2, 1, 0), (6, 3, 2, 1)]  # kernel, stride, pad, output_padding


@pytest.mark.parametrize("k,s,p,op", GEOMETRIES)
def test_phase_weights_reproduce_conv_transpose(k, s, p, op):
    """Conv with the phase weights, then pixel shuffle, is the transposed convolution (float)."""
    g = torch.Generator().manual_seed(k * 10 + s)
    w, x = torch.randn(5, 4, k, k, generator=g), torch.randn(1, 5, 7, 9, generator=g)
    ref = torch.nn.functional.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op)
    kern, (top, left, bottom, right) = polyphase_weights(w.numpy(), (s, s), (p, p))
    phases = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (left, right, top, bottom)), torch.from_numpy(kern))
    y = torch.nn.functional.pixel_shuffle(_dcr_to_crd(phases, s), s)
    assert y.shape == ref.shape
    assert torch.allclose(y, ref, atol=1e-4), (y - ref).abs().max()


def _dcr_to_crd(t: torch.Tensor, s: int) -> torch.Tensor:
    """ONNX DepthToSpace DCR channel order (r_h, r_w, c) -> pixel_shuffle's (c, r_h, r_w)."""
    n, c4, h, w = t.shape
    c = c4 // (s * s)
    return t.view(n, s, s, c, h, w).permute(0, 3, 1, 2, 4, 5).reshape(n, c4, h, w)


def _qdq_convt_graph(wq, w_scale, bq, x_scale, y_scale, k, s, p, op, h, w, relu):
    """A QDQ graph as aimet exports it: uint8 input -> DQ -> ConvTranspose(DQ int8 weights per
    output channel, DQ int32 bias) [-> Relu] -> Q uint8 -> DQ."""
    cin, cout = wq.shape[:2]
    inits = [numpy_helper.from_array(np.array(x_scale, np.float32), "xs"),
             numpy_helper.from_array(np.array(128 if not relu else 0, np.uint8), "xz"),
             numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(w_scale, "ws"),
             numpy_helper.from_array(np.zeros(cout, np.int8), "wz"),
             numpy_helper.from_array(bq, "bq"),
             numpy_helper.from_array((x_scale * w_scale).astype(np.float32), "bs"),
             numpy_helper.from_array(np.zeros(cout, np.int32), "bz"),
             numpy_helper.from_array(np.array(y_scale, np.float32), "ys"),
             numpy_helper.from_array(np.array(0 if relu else 128, np.uint8), "yz")]
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wf"], axis=1),
             helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bf"], axis=0),
             helper.make_node("ConvTranspose", ["xf", "wf", "bf"], ["c"], kernel_shape=[k, k], strides=[s, s],
                              pads=[p, p, p, p], output_padding=[op, op])]
    last = "c"
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["r"]))
        last = "r"
    nodes += [helper.make_node("QuantizeLinear", [last, "ys", "yz"], ["yq"]),
              helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, "convt", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, cin, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, s * h, s * w])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _reference(x, x_zero, wq, bq, m, y_zero, k, s, p, relu):
    """Transposed convolution by its definition (scatter-add), exact in int64, requantized in float64."""
    cin, cout = wq.shape[:2]
    h, w = x.shape[2:]
    full = np.zeros((cout, (h - 1) * s + k, (w - 1) * s + k), np.int64)
    xi = x[0].astype(np.int64) - x_zero
    wi = wq.astype(np.int64)
    for i in range(h):
        for j in range(w):
            full[:, i * s:i * s + k, j * s:j * s + k] += np.einsum("c,cokl->okl", xi[:, i, j], wi)
    acc = full[:, p:p + s * h, p:p + s * w] + bq[:, None, None]
    y = np.rint(acc * m[:, None, None]) + y_zero
    if relu:
        y = np.maximum(y, y_zero)
    return np.clip(y, 0, 255)


@pytest.mark.parametrize("signed", [False, True], ids=["u8-weights", "s8-weights"])
@pytest.mark.parametrize("k,s,p,op,relu", [(5, 2, 2, 1, True), (5, 2, 2, 1, False), (4, 2, 1, 0, True)])
def test_rewritten_graph_runs_qlinearconv_and_matches_integer_reference(k, s, p, op, relu, signed, tmp_path):
    """Both weight storages against the integer reference: uint8 codes with zero point 128 and the
    int8 codes (onnxruntime's fast u8 x s8 path with VNNI; without VNNI the runtime's session
    options make onnxruntime store them as uint8 itself, since its u8 x s8 kernels saturate there)."""
    rng = np.random.default_rng(k + relu)
    cin, cout, h, w = 16, 8, 11, 13
    wq = rng.integers(-127, 128, (cin, cout, k, k)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    x_scale, y_scale = np.float32(0.02), np.float32(0.05)
    bq = rng.integers(-20000, 20000, cout).astype(np.int32)
    proto = _qdq_convt_graph(wq, w_scale, bq, x_scale, y_scale, k, s, p, op, h, w, relu)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(proto)
    assert polyphase_conv_transpose(rewritten, signed_weights=signed) == 1
    onnx.checker.check_model(rewritten)
    w_codes = next(t for t in rewritten.graph.initializer if t.name.endswith("poly_w_q"))
    assert w_codes.data_type == (TensorProto.INT8 if signed else TensorProto.UINT8)
    assert "ConvTranspose" not in {n.op_type for n in rewritten.graph.node}

    so = session_options()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    sess = ort.InferenceSession(rewritten.SerializeToString(), so, providers=["CPUExecutionProvider"])
    assert "QLinearConv" in {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}

    x = rng.integers(0, 256, (1, cin, h, w)).astype(np.uint8)
    x_zero, y_zero = (0, 0) if relu else (128, 128)
    m = (np.float64(x_scale) * w_scale.astype(np.float64)) / np.float64(y_scale)
    want = _reference(x, x_zero, wq, bq, m, y_zero, k, s, p, relu)
    for model in (rewritten, proto):  # the rewrite, and onnxruntime's own float ConvTranspose
        got = ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x})[0][0] / y_scale + y_zero
        levels = np.abs(np.rint(got) - want)
        assert levels.max() <= 1 and (levels > 0).mean() < 1e-3, (levels.max(), (levels > 0).mean())
    got = sess.run(None, {"x": x})[0]
    assert got.shape == (1, cout, s * h, s * w)


def test_graphs_it_cannot_prove_are_left_alone():
    """A float ConvTranspose (no int8 weights) and one whose output is not s x its input stay."""
    w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    for pads, op in (([1, 1, 1, 1], [1, 1]), ([0, 0, 0, 0], [0, 0])):
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                pads=pads, output_padding=op)
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
        model = helper.make_model(graph)
        assert polyphase_conv_transpose(model) == 0
        assert [n.op_type for n in model.graph.node] == ["ConvTranspose"]


def test_weight_storage_follows_the_cpu():
    """Without an explicit choice the rewrite keeps int8 weight codes exactly when the CPU has VNNI
    (read here from /proc/cpuinfo independently of the implementation)."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags on this system")
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    assert u8s8_exact() is vnni
    rng = np.random.default_rng(0)
    proto = _qdq_convt_graph(rng.integers(-127, 128, (4, 2, 5, 5)).astype(np.int8), np.full(2, 0.01, np.float32),
                             np.zeros(2, np.int32), np.float32(0.02), np.float32(0.05), 5, 2, 2, 1, 6, 6, True)
    assert polyphase_conv_transpose(proto) == 1
    w_codes = next(t for t in proto.graph.initializer if t.name.endswith("poly_w_q"))
    assert w_codes.data_type == (TensorProto.INT8 if vnni else TensorProto.UINT8)
