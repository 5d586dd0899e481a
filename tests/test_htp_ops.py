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
    assert {"Erf", "Reciprocal", "Asin", "LayerNormalization", "rank6"} <= refused, refused
    assert {n for n in ("HardSigmoid", "Softplus", "LSTM", "GRU", "Conv3d", "rank5") if probes[n]["compiles"]} == \
        {"HardSigmoid", "Softplus", "LSTM", "GRU", "Conv3d", "rank5"}
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
