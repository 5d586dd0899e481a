"""The static HTP op check (`export.npu_check`) against the real compile: every probe graph of
`export.htp_probe` (one op after a conv, W8A8 QDQ, onnxruntime-qnn's HTP backend with CPU fallback
off) is allowed by the check exactly when it compiles. The list once came from the QNN EP's
documentation and rejected ops the HTP runs (mobilenet_v3's HardSigmoid: 9 false rejections, and the
NPU estimate's label repeated them) while allowing Asin and ReduceProd, which it refuses."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def probes() -> dict:
    from mobilecodec.export.htp_probe import probe

    return probe(progress=False)


def test_the_static_check_allows_what_compiles_and_refuses_what_does_not(probes):
    wrong = {n: r for n, r in probes.items() if (not r["static"]) != r["compiles"]}
    assert wrong == {}, wrong
    # both kinds are there: the check refuses something and the compile fails on it
    refused = {n for n, r in probes.items() if r["static"] and not r["compiles"]}
    assert {"Erf", "Reciprocal", "Asin", "rank6", "rank6shuffle_last", "rank7shuffle",
            "LayerNormalization_hw"} <= refused, refused
    allowed = ("HardSigmoid", "Softplus", "LSTM", "GRU", "Conv3d", "rank5", "LayerNormalization", "rank6shuffle")
    assert {n for n in allowed if probes[n]["compiles"]} == set(allowed)
    # the EP leaves Erf to the CPU; it takes Reciprocal and fails to finalize: each said as it is
    assert probes["Erf"]["error"].startswith("the QNN EP does not take the op (left to the CPU EP)")
    assert probes["Reciprocal"]["error"].startswith("the QNN EP took the op but could not finalize the graph")
    assert "QNN_COMMON_ERROR_MEM_ALLOC" in probes["Reciprocal"]["static"][0]


def test_mobilenet_v3_compiles_whole_and_the_check_says_so(tmp_path):
    """The audit's case: torchvision's mobilenet_v3_small had 9 HardSigmoid 'op not supported' issues;
    its int8 graph compiles whole on the HTP, and the check now finds nothing."""
    import onnx
    import torch
    import torchvision

    from mobilecodec.export.npu_check import check_graph, static_issues

    path = tmp_path / "mnv3.onnx"
    torch.onnx.export(torchvision.models.mobilenet_v3_small().eval(), (torch.rand(1, 3, 64, 64),), str(path),
                      dynamo=False, opset_version=17)
    assert "HardSigmoid" in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert static_issues(onnx.load(str(path)), "mnv3") == []
    rep = check_graph(path, workdir=tmp_path)
    assert rep.compiled is True, rep.compile_error


def test_a_vision_transformer_compiles_whole_and_the_check_says_so(tmp_path):
    """LayerNormalization compiles on the HTP with a uint8 scale, not with the int8 one the W8A8 recipe
    gave every weight ('Unsupported input/output datatypes requested for the HTP Op LayerNorm'): the
    check refused every transformer's LayerNorms. torchvision's ViT (LayerNorm, MatMul, Softmax, and
    Gelu as one op at opset 20) now compiles whole, and the check finds nothing."""
    import onnx
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    from mobilecodec.export.npu_check import check_graph, static_issues

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                              num_classes=10).eval()
    path = tmp_path / "vit.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, opset_version=20)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"LayerNormalization", "Gelu", "Softmax", "MatMul"} <= ops
    assert static_issues(onnx.load(str(path)), "vit") == []
    rep = check_graph(path, workdir=tmp_path)
    assert rep.compiled is True, rep.compile_error


def test_weights_listed_as_graph_inputs_are_refused_and_do_not_compile(tmp_path):
    """`torch.onnx.export(keep_initializers_as_inputs=True)` lists the weights among the graph inputs; to
    onnxruntime they are then inputs a caller may replace, not constants, and the HTP compile of a
    Conv + BatchNorm graph fails. The check passed such graphs (and `profile --module`, which exported
    that way, called torchvision's mobilenet_v3_small fine for the HTP, whose compile failed). The same
    graph with its weights as constants compiles."""
    import onnx
    import pytest
    import torch

    from mobilecodec.errors import ToolError
    from mobilecodec.export.npu_check import check_graph, static_issues
    from mobilecodec.export.qdq import quantize_graph, random_feeds
    from mobilecodec.export.qnn import htp_session

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU()).eval()
    paths = {}
    for keep in (True, False):
        paths[keep] = tmp_path / f"keep_{keep}.onnx"
        torch.onnx.export(net, (torch.rand(1, 3, 8, 8),), str(paths[keep]), dynamo=False, opset_version=17,
                          do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                          keep_initializers_as_inputs=keep)
    issues = [str(i) for i in static_issues(onnx.load(str(paths[True])), "kept")]
    assert issues == [issues[0]] and issues[0].startswith("kept: 6 weights are also graph inputs ("), issues
    with pytest.raises(ToolError, match="could not compile"):  # what the check now says before compiling
        htp_session(quantize_graph(paths[True], tmp_path / "kept.qdq.onnx", random_feeds(paths[True])))
    rep = check_graph(paths[False], workdir=tmp_path)
    assert rep.issues == [] and rep.compiled is True, rep.compile_error


def test_a_swin_window_partition_compiles_whole_and_the_check_says_so(tmp_path):
    """A Swin transformer partitions its windows through rank-6 Reshape / Transpose tensors. The check
    refused every tensor of rank > 5 (swin_t: 48 issues), but no op computes on them and the HTP compiles
    such a shuffle when it keeps the first and last axes in place (swin_t whole, 224x224: docs/results/
    complexity.md; `htp_probe`'s rank6shuffle). A freshly initialised one also has merged zero biases
    and unit scales, which `quantize_graph` copies per consumer (`unshare_parameters`)."""
    import onnx
    import torch
    from torchvision.models.swin_transformer import SwinTransformer

    from mobilecodec.export.npu_check import check_graph, static_issues
    from mobilecodec.export.onnx_common import infer_static_shapes

    torch.manual_seed(0)
    model = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=[4, 4],
                            num_classes=10).eval()
    path = tmp_path / "swin.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), str(path), dynamo=False, opset_version=20)
    proto = onnx.load(str(path))
    ranks = [len(vi.type.tensor_type.shape.dim) for vi in infer_static_shapes(proto)[0].graph.value_info]
    assert max(ranks) == 6
    assert static_issues(proto, "swin") == []
    rep = check_graph(path, workdir=tmp_path)
    assert rep.compiled is True, rep.compile_error


def test_a_quantized_graph_is_checked_without_the_quantizers_leftovers(tmp_path):
    """onnxruntime's quantizer folds a ReLU after a LayerNorm into the Q/DQ pair and leaves the
    LayerNorm's old output in value_info (with torch's symbolic dimensions), a tensor no node writes
    or reads: the check called it a tensor of unknown shape and refused the repo's own QDQ graph,
    which compiles (profile audit)."""
    import onnx
    import torch
    from torch import nn

    from mobilecodec.export.npu_check import check_graph, static_issues
    from mobilecodec.export.qdq import quantize_graph, random_feeds

    class LnRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.ln, self.lin = nn.Conv2d(3, 16, 4, 4), nn.LayerNorm(16), nn.Linear(16, 8)

        def forward(self, x):
            return self.lin(torch.relu(self.ln(self.conv(x).flatten(2).transpose(1, 2))))

    torch.manual_seed(0)
    torch.onnx.export(LnRelu().eval(), (torch.randn(1, 3, 32, 32),), str(tmp_path / "f.onnx"), dynamo=False,
                      opset_version=17)
    qdq = quantize_graph(tmp_path / "f.onnx", tmp_path / "q.onnx", random_feeds(tmp_path / "f.onnx"))
    proto = onnx.load(str(qdq))
    used = {t for n in proto.graph.node for t in [*n.input, *n.output]}
    assert [vi.name for vi in proto.graph.value_info if vi.name not in used] == ["/ln/LayerNormalization_output_0"]
    assert static_issues(proto, "q") == []
    assert check_graph(qdq, workdir=tmp_path).compiled is True


def test_the_compile_logs_only_what_explains_a_failure(tmp_path, capfd):
    """A ConvNeXt that compiles whole printed onnxruntime's red "Unsupported nodes in QNN EP: {Add}
    {Transpose}" (a layout pass's) beside its "ok" (profile audit); a compile that fails said only that
    some node was left to the CPU. Now a success prints nothing of the log, and a failure names the nodes."""
    import torch
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    from mobilecodec.errors import ToolError
    from mobilecodec.export.npu_check import check_graph, unsupported_nodes
    from mobilecodec.export.qdq import quantize_graph, random_feeds
    from mobilecodec.export.qnn import htp_session
    from mobilecodec.nativeio import native_stderr_captured

    torch.manual_seed(0)
    model = ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10).eval()
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(tmp_path / "cnx.onnx"), dynamo=False, opset_version=20)
    capfd.readouterr()
    assert check_graph(tmp_path / "cnx.onnx", workdir=tmp_path).compiled is True
    assert "Unsupported nodes" not in capfd.readouterr().err
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU()).eval()
    torch.onnx.export(net, (torch.rand(1, 3, 8, 8),), str(tmp_path / "bn.onnx"), dynamo=False, opset_version=17,
                      do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                      keep_initializers_as_inputs=True)
    qdq = quantize_graph(tmp_path / "bn.onnx", tmp_path / "bn.qdq.onnx", random_feeds(tmp_path / "bn.onnx"))
    with native_stderr_captured() as log:  # as check_graph compiles
        with pytest.raises(ToolError):
            htp_session(qdq)
    said = unsupported_nodes(log)  # what check_graph adds to a failed compile's error
    assert said.startswith("; QNN: Unsupported nodes in QNN EP: ") and "type: BatchNormalization" in said


def test_shared_parameters_are_copied_under_names_of_their_own():
    """`unshare_parameters` (review): a copy named like a tensor the graph already had made the graph
    invalid ("initializer name is not unique"), and a shared parameter that is also a graph input had
    its later readers cut off from what a caller feeds: names are now free ones, graph inputs stay shared."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mobilecodec.export.qdq import unshare_parameters

    def graph(extra_inputs: list) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(np.ones(16, np.float32), "s"),
                 numpy_helper.from_array(np.zeros(16, np.float32), "b"),
                 numpy_helper.from_array(np.ones(16, np.float32), "s__copy1")]  # a name the copy would take
        nodes = [helper.make_node("LayerNormalization", ["x", "s", "b"], ["h"]),
                 helper.make_node("LayerNormalization", ["h", "s", "b"], ["h2"]),
                 helper.make_node("Add", ["h2", "s__copy1"], ["y"])]
        vi = helper.make_tensor_value_info
        g = helper.make_graph(nodes, "g", [vi("x", TensorProto.FLOAT, [1, 4, 16]), *extra_inputs],
                              [vi("y", TensorProto.FLOAT, [1, 4, 16])], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    proto = graph([])
    assert unshare_parameters(proto) == 2
    onnx.checker.check_model(proto)
    second = proto.graph.node[1]
    assert list(second.input[1:]) == ["s__copy2", "b__copy1"] and proto.graph.node[2].input[1] == "s__copy1"
    proto = graph([helper.make_tensor_value_info("b", TensorProto.FLOAT, [16])])  # b may be fed by a caller
    assert unshare_parameters(proto) == 1 and list(proto.graph.node[1].input[1:]) == ["s__copy2", "b"]


def test_the_torchvision_script_checks_and_compiles_a_model(tmp_path):
    """`scripts/htp_torchvision.py` (docs/results/complexity.md's table): torchvision's mobilenet_v3_small
    as `profile --module` exports it passes the check and compiles whole; an unknown model: argparse's usage and
    one line, exit 2."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "htp_torchvision.py"
    res = subprocess.run([sys.executable, str(script), "--models", "mobilenet_v3_small", "--no-progress",
                          "--json", "-"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)["rows"][0]
    assert row["model"] == "mobilenet_v3_small" and row["issues"] == 0 and row["compiled"] is True
    bad = subprocess.run([sys.executable, str(script), "--models", "lenet"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "lenet" in bad.stderr.strip().splitlines()[-1] and "Traceback" not in bad.stderr
