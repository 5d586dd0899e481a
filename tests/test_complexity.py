"""Complexity counters against hand-computed MACs, torch's FlopCounterMode and ONNX/QDQ exports."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mobilecodec.errors import InputError
from mobilecodec.runtime.complexity import count_module, format_table, kmacs_per_pixel
from mobilecodec.runtime.onnx_complexity import count_onnx, format_onnx_table

torch.manual_seed(0)


def export(module: nn.Module, inputs: tuple, path, **kw) -> str:
    """Legacy (TorchScript) exporter, opset 17, static shapes: fast and deterministic."""
    module.eval()
    names = [f"in{i}" for i in range(len(inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=17,
                          input_names=names, **kw)
    return str(path)


def nparams(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class MatMulNet(nn.Module):
    """Batched, broadcasting matmul with a parameter: (2,3,4,5) @ (3,5,6)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 5, 6))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, self.w)


# Hand-computed cases: (module, input shape, MACs written out from the DESIGN.md formulas).
CASES = {
    # ConvTranspose: input elements x (Cout/groups) x kH x kW; output is 14x18.
    "convtranspose_strided": (nn.ConvTranspose2d(8, 4, 5, stride=2, padding=2, output_padding=1),
                              (1, 8, 7, 9), 7 * 9 * 8 * 4 * 25),
    # Depthwise: output 6x10x12 elements, Cin/groups = 1, 3x3 kernel.
    "depthwise": (nn.Conv2d(6, 6, 3, padding=1, groups=6), (1, 6, 10, 12), 6 * 10 * 12 * 1 * 9),
    # Grouped, strided: output 12 x 5 x 7, Cin/groups = 8/4 = 2.
    "grouped": (nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=4), (1, 8, 10, 14),
                12 * 5 * 7 * 2 * 9),
    # Grouped transposed conv: input 8x7x9 elements, Cout/groups = 8/4 = 2, 4x4 kernel.
    "convtranspose_grouped": (nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, groups=4),
                              (1, 8, 7, 9), 8 * 7 * 9 * 2 * 16),
    # Conv1d: batch 2, output length 20-5+1 = 16.
    "conv1d": (nn.Conv1d(4, 6, 5), (2, 4, 20), 2 * 6 * 16 * 4 * 5),
    # Linear on a 2-D input (exports as Gemm): M=4, N=10, K=16.
    "linear_2d": (nn.Linear(16, 10), (4, 16), 4 * 10 * 16),
    # Linear on a 3-D input (exports as MatMul + Add): 3*5 rows.
    "linear_3d": (nn.Linear(16, 10), (3, 5, 16), 3 * 5 * 10 * 16),
    # Broadcast batch 2x3, M=4, N=6, K=5.
    "batched_matmul": (MatMulNet(), (2, 3, 4, 5), 2 * 3 * 4 * 6 * 5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_counts_match_hand_computed(case):
    module, shape, expected = CASES[case]
    result = count_module(module, torch.randn(shape))
    assert result.macs == expected
    assert result.params == nparams(module)


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_counts_match_hand_computed(case, tmp_path):
    module, shape, expected = CASES[case]
    path = export(module, (torch.randn(shape),), tmp_path / f"{case}.onnx")
    result = count_onnx(path)
    assert result.macs == expected
    assert result.params == nparams(module)
    assert result.other_params == 0


def test_convtranspose_output_shape_and_breakdown():
    module = nn.Sequential(nn.ConvTranspose2d(8, 4, 5, stride=2, padding=2, output_padding=1))
    result = count_module(module, torch.randn(1, 8, 7, 9))
    rec = result.module("0")
    assert rec.type == "ConvTranspose2d"
    assert rec.output_shape == [1, 4, 14, 18]
    assert rec.macs == rec.self_macs == 50400
    assert rec.params == 8 * 4 * 25 + 4
    assert result.module("").macs == 50400 and result.module("").self_macs == 0


def test_bias_does_not_change_macs(tmp_path):
    x = torch.randn(1, 5, 9, 11)
    with_bias = nn.Conv2d(5, 7, 3, padding=1, bias=True)
    without = nn.Conv2d(5, 7, 3, padding=1, bias=False)
    a, b = count_module(with_bias, x), count_module(without, x)
    assert a.macs == b.macs == 7 * 9 * 11 * 5 * 9
    assert a.params - b.params == 7
    oa = count_onnx(export(with_bias, (x,), tmp_path / "b.onnx"))
    ob = count_onnx(export(without, (x,), tmp_path / "nb.onnx"))
    assert oa.macs == ob.macs == a.macs
    assert (oa.params, ob.params) == (a.params, b.params)


def test_shared_module_params_once_macs_twice():
    lin = nn.Linear(8, 8)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = lin, lin

        def forward(self, x):
            return self.b(self.a(x))

    result = count_module(Twice(), torch.randn(2, 8))
    assert result.params == 8 * 8 + 8
    assert result.macs == 2 * (2 * 8 * 8)
    assert result.module("a").calls == 2


def test_functional_ops_outside_modules_are_counted_and_attributed():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1, bias=False)
            self.w = nn.Parameter(torch.randn(4, 3, 3, 3))

        def forward(self, x):
            y = F.conv2d(x, self.w, padding=1)   # functional conv: 4*6*6 * 3 * 9
            return self.conv(x) + y              # 1x1 conv: 4*6*6 * 3

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()

        def forward(self, x):
            y = self.block(x)
            return torch.matmul(y, y.transpose(-1, -2))   # batch 4, 6x6x6

    result = count_module(Outer(), torch.randn(1, 3, 6, 6))
    conv_fn, conv_1x1, mm = 4 * 36 * 3 * 9, 4 * 36 * 3, 4 * 6 * 6 * 6
    assert result.macs == conv_fn + conv_1x1 + mm
    assert result.module("block").self_macs == conv_fn
    assert result.module("block").macs == conv_fn + conv_1x1
    assert result.module("block.conv").macs == conv_1x1
    assert result.module("").self_macs == mm
    assert result.elementwise == {"add": 4 * 36}


def test_elementwise_and_resampling_are_separate_from_macs():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 8, 1, bias=False)
            self.act = nn.ReLU()
            self.shuffle = nn.PixelShuffle(2)

        def forward(self, x, grid):
            y = self.shuffle(self.act(self.conv(x)))                       # (1, 2, 8, 10)
            up = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            warped = F.grid_sample(x, grid, align_corners=False)           # (1, 2, 4, 5)
            return up, warped

    grid = torch.rand(1, 4, 5, 2) * 2 - 1
    result = count_module(Net(), torch.randn(1, 2, 4, 5), grid)
    assert result.macs == 8 * 4 * 5 * 2
    assert result.elementwise == {"relu": 8 * 4 * 5}
    assert result.resampling == {
        "pixel_shuffle": 2 * 8 * 10,
        "upsample_bilinear2d": 2 * 16 * 20,
        "grid_sampler_2d": 2 * 4 * 5,
    }
    assert result.uncounted_module_types == {"ReLU": 1, "PixelShuffle": 1}
    json.dumps(result.to_dict())
    table = format_table(result, pixels=(8, 10))
    assert "shuffle" in table and "PixelShuffle" in table


def test_attention_counts_both_products():
    class Attention(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    result = count_module(Attention(), q, k, v)
    # Q K^T: 2 heads x 4 x 6 x 8, then softmax(.) V: 2 x 4 x 6 x 8.
    assert result.macs == 2 * 4 * 6 * 8 * 2
    with FlopCounterMode(display=False) as counter:
        Attention()(q, k, v)
    assert counter.get_total_flops() == 2 * result.macs


def test_count_module_restores_training_mode_and_bn_stats():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net.train()
    before = net[1].running_mean.clone()
    count_module(net, torch.randn(2, 3, 8, 8))
    assert net.training and net[1].training
    assert torch.equal(net[1].running_mean, before)


def test_count_module_rejects_non_module():
    with pytest.raises(InputError, match="nn.Module"):
        count_module(lambda x: x, torch.randn(2))


class SmallCodecNet(nn.Module):
    """Conv2d, depthwise conv, strided ConvTranspose2d, grouped ConvTranspose2d and Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 16, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.up = nn.ConvTranspose2d(16, 8, 5, stride=2, padding=2, output_padding=1)
        self.up_g = nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, groups=2, bias=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        y = F.relu(self.conv(x))                # (1, 16, 6, 8)
        y = F.relu(self.dw(y))                  # (1, 16, 6, 8)
        y = self.up(y)                          # (1, 8, 12, 16)
        y = self.up_g(y)                        # (1, 8, 24, 32)
        return self.fc(y.mean(dim=(2, 3)))      # (1, 3)


SMALL_NET_MACS = (
    16 * 6 * 8 * 6 * 9          # conv: output elements x Cin x 3x3
    + 16 * 6 * 8 * 1 * 9        # depthwise
    + 16 * 6 * 8 * 8 * 25       # strided convT: input elements x Cout x 5x5
    + 8 * 12 * 16 * 4 * 16      # grouped convT: input elements x Cout/2 x 4x4
    + 8 * 3                     # linear
)


def test_small_net_matches_flop_counter_mode_and_hand_count():
    net = SmallCodecNet().eval()
    x = torch.randn(1, 6, 12, 16)
    ours = count_module(net, x)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    assert ours.macs == SMALL_NET_MACS
    assert counter.get_total_flops() == 2 * ours.macs
    assert ours.params == nparams(net)
    # Per-layer agreement too, not only the total.
    assert ours.module("up").macs == 16 * 6 * 8 * 8 * 25
    assert ours.module("up_g").macs == 8 * 12 * 16 * 4 * 16


def test_small_net_onnx_matches_torch(tmp_path):
    net = SmallCodecNet().eval()
    x = torch.randn(1, 6, 12, 16)
    result = count_onnx(export(net, (x,), tmp_path / "small.onnx"))
    assert result.macs == SMALL_NET_MACS
    assert result.params == nparams(net)
    assert result.macs_by_op["ConvTranspose"] == 16 * 6 * 8 * 8 * 25 + 8 * 12 * 16 * 4 * 16
    assert result.elementwise["Relu"] == 2 * 16 * 6 * 8
    json.dumps(result.to_dict())
    assert "ConvTranspose" in format_onnx_table(result)


# ---- QDQ int8 ------------------------------------------------------------------------------


class QNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.up = nn.ConvTranspose2d(8, 4, 5, stride=2, padding=2, output_padding=1)

    def forward(self, x):
        return self.up(F.relu(self.dw(F.relu(self.conv(x)))))


def test_qdq_int8_counts_same_macs_as_float(tmp_path):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    net = QNet().eval()
    x = torch.rand(1, 6, 7, 9)
    float_path = export(net, (x,), tmp_path / "float.onnx")
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"in0": rng.random((1, 6, 7, 9), dtype=np.float32)}
                                 for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    qdq_path = str(tmp_path / "qdq.onnx")
    quantize_static(float_path, qdq_path, Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)

    fl, q = count_onnx(float_path), count_onnx(qdq_path)
    expected = 8 * 7 * 9 * 6 * 9 + 8 * 7 * 9 * 9 + 8 * 7 * 9 * 4 * 25
    assert fl.macs == q.macs == expected
    assert fl.macs_by_op == q.macs_by_op
    assert q.params == fl.params == nparams(net)
    # The quantized graph really is QDQ with int8 weights behind DequantizeLinear.
    graph = onnx.load(qdq_path).graph
    int8_weights = [i for i in graph.initializer
                    if i.data_type == TensorProto.INT8 and len(i.dims) == 4]
    assert len(int8_weights) == 3
    dq_inputs = {n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    assert {i.name for i in int8_weights} <= dq_inputs
    assert q.quant_nodes["DequantizeLinear"] >= 6 and q.quant_nodes["QuantizeLinear"] >= 1
    qdq_nodes = [n for n in q.nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq_nodes and all(n.macs == 0 and n.kind == "quant" for n in qdq_nodes)
    assert q.other_params > 0   # per-channel scales and zero points, not weights


def test_qdq_quantize_of_float_initializer_is_resolved():
    """W (float initializer) -> QuantizeLinear -> DequantizeLinear -> Conv, built by hand."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.int8), "zp")
    nodes = [
        helper.make_node("QuantizeLinear", ["w", "s", "zp"], ["wq"], name="q_w"),
        helper.make_node("DequantizeLinear", ["wq", "s", "zp"], ["wdq"], name="dq_w"),
        helper.make_node("Conv", ["x", "wdq"], ["y"], name="conv", pads=[0, 0, 0, 0],
                         strides=[1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[w, scale, zp])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = count_onnx(model)
    assert result.macs == 4 * 6 * 6 * 3 * 9
    assert result.params == 4 * 3 * 3 * 3
    assert result.other_params == 2
    assert result.node("q_w").macs == 0 and result.node("dq_w").macs == 0


# ---- hand-built ONNX graphs -----------------------------------------------------------------


def _graph(nodes, inputs, initializers=()):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_gemm_honours_transpose_flags():
    # A is stored (K, M) = (7, 3) with transA; B is stored (N, K) = (5, 7) with transB.
    b = numpy_helper.from_array(np.zeros((5, 7), np.float32), "b")
    model = _graph([helper.make_node("Gemm", ["a", "b"], ["y"], transA=1, transB=1)],
                   [("a", [7, 3])], [b])
    result = count_onnx(model)
    assert result.macs == 3 * 5 * 7
    assert result.params == 35


def test_shared_initializer_counted_once():
    w = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    model = _graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="m1"),
                    helper.make_node("MatMul", ["h", "w"], ["y"], name="m2")],
                   [("x", [2, 6, 4])], [w])
    result = count_onnx(model)
    assert result.macs == 2 * (2 * 6 * 4 * 4)
    assert result.params == 16
    assert result.node("m1").params == result.node("m2").params == 16


def test_resampling_and_unknown_ops_reported():
    model = _graph([helper.make_node("DepthToSpace", ["x"], ["d"], blocksize=2),
                    helper.make_node("Sigmoid", ["d"], ["s"]),
                    helper.make_node("Hardmax", ["s"], ["h"]),
                    helper.make_node("Det", ["h"], ["y"])],
                   [("x", [1, 8, 4, 4])])
    result = count_onnx(model)
    assert result.macs == 0
    assert result.resampling == {"DepthToSpace": 2 * 8 * 8}
    assert result.elementwise == {"Sigmoid": 128, "Hardmax": 128}
    assert result.unknown_ops == {"Det": 1}


def test_missing_shape_names_the_node(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    path = export(net, (torch.randn(1, 3, 8, 8),), tmp_path / "dyn.onnx",
                  dynamic_axes={"in0": {2: "h", 3: "w"}})
    with pytest.raises(InputError, match=r"Conv.*no static shape"):
        count_onnx(path)


def test_bad_onnx_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        count_onnx(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf\xff" * 7)
    with pytest.raises(InputError, match="cannot read ONNX"):
        count_onnx(junk)
    with pytest.raises(InputError):
        count_onnx(42)
    empty = tmp_path / "empty.onnx"  # onnx parses no bytes as an empty model: counted 0 MACs before
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.onnx is not an ONNX model"):
        count_onnx(empty)


def test_kmacs_per_pixel():
    assert kmacs_per_pixel(1080 * 1920 * 1000, 1080, 1920) == pytest.approx(1.0)
    assert kmacs_per_pixel(50400, 14, 18) == pytest.approx(50400 / 252 / 1000)
    with pytest.raises(InputError, match="frame size"):
        kmacs_per_pixel(10, 0, 5)
