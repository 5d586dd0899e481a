"""int8 convolutions with few output channels, padded to a width onnxruntime's GEMM handles well.

The synthesis and predictor graphs end in a convolution with 2 or 6 output channels (a flow, a
YUV420 frame). onnxruntime's CPU QLinearConv runs such a layer several times slower than the
same layer with 16 output channels (one thread, Sapphire Rapids-class Xeon: 32 -> 6 3x3 at
544x960, 58.8 ms; padded to 16, 20.4 ms; 160 -> 2 at 136x240, 8.1 ms against 3.9 ms; 8 or 32
channels gain less). `pad_narrow_convs` gives such a Conv zero weights for the extra output
channels and slices the quantized output back to the real ones. The output quantizer is
per-tensor, so every real channel is computed and quantized exactly as before: the outputs are
bit-identical (tests/test_narrow_conv.py), only the GEMM shape changes. Applied to the CPU EP's
sessions only, like `polyphase`; packages keep the original graphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobilecodec.export.onnx_common import GraphIndex
from mobilecodec.runtime.onnx_edit import attrs, drop_dead, splice

WIDTH = 16  # output channels a narrow conv is padded to (measured best of 8, 16, 32)


def pad_narrow_convs(proto: Any, width: int = WIDTH) -> int:
    """Rewrite, in place, every QDQ Conv of `proto` with fewer than `width` output channels
    (weights and optional bias DequantizeLinear'd from initializers, output read only by one
    per-tensor 8-bit QuantizeLinear with an explicit zero point) to `width` output channels followed by a Slice of the quantized
    output. Returns how many were rewritten; anything it cannot prove is left as it is."""
    from onnx import helper, numpy_helper

    g = proto.graph
    ix = GraphIndex(g)
    inits, consumers, outputs, dq_init = ix.inits, ix.consumers, ix.outputs, ix.dq_of_init

    def padded(a: np.ndarray, fill: Any) -> np.ndarray:
        out = np.full((width, *a.shape[1:]), fill, dtype=a.dtype)
        out[:a.shape[0]] = a
        return out

    rewritten = 0
    for node in list(g.node):
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w = dq_init(node.input[1])
        if w is None:
            continue
        w_dq, (wq, wscale, *wzp) = w
        cout = wq.shape[0]
        axis = attrs(w_dq).get("axis", 1)
        per_channel = wscale.ndim == 1 and wscale.size == cout and axis == 0
        if wq.ndim != 4 or cout >= width or wq.dtype not in (np.int8, np.uint8) or not (per_channel or wscale.size == 1):
            continue
        if attrs(node).get("group", 1) != 1:
            continue
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = dq_init(node.input[2])
            if bias is None or bias[1][0].shape != (cout,):
                continue
        cons = consumers.get(node.output[0], [])
        if len(cons) != 1 or node.output[0] in outputs or cons[0].op_type != "QuantizeLinear":
            continue
        q = cons[0]
        if q.input[1] not in inits or numpy_helper.to_array(inits[q.input[1]]).size != 1:
            continue
        zq = numpy_helper.to_array(inits[q.input[2]]) if len(q.input) > 2 and q.input[2] in inits else None
        if zq is None or zq.size != 1 or zq.dtype not in (np.uint8, np.int8):
            continue  # 8-bit codes only: that is the QLinearConv measured; 16-bit runs as a float conv
        base = node.name or node.output[0]
        zero = wzp[0] if wzp else np.zeros((), wq.dtype)
        wz_fill = zero.ravel()[0] if zero.size else 0
        new_inits = [numpy_helper.from_array(padded(wq, wz_fill), f"{base}/wide_w_q"),
                     numpy_helper.from_array(padded(wscale, wscale[0]) if per_channel else wscale, f"{base}/wide_w_scale")]
        w_inputs = [f"{base}/wide_w_q", f"{base}/wide_w_scale"]
        if wzp:
            new_inits.append(numpy_helper.from_array(padded(zero, wz_fill) if per_channel and zero.ndim else zero,
                                                     f"{base}/wide_w_zp"))
            w_inputs.append(f"{base}/wide_w_zp")
        new_nodes = [helper.make_node("DequantizeLinear", w_inputs, [f"{base}/wide_w"], name=f"{base}/wide_w_dq",
                                      **({"axis": 0} if per_channel else {}))]
        conv_in = [node.input[0], f"{base}/wide_w"]
        if bias is not None:
            b_dq, (bq, bscale, *bzp) = bias
            b_per = bscale.ndim == 1
            b_inputs = [f"{base}/wide_b_q", f"{base}/wide_b_scale"]
            new_inits += [numpy_helper.from_array(padded(bq, 0), f"{base}/wide_b_q"),
                          numpy_helper.from_array(padded(bscale, bscale[0]) if b_per else bscale, f"{base}/wide_b_scale")]
            if bzp:
                new_inits.append(numpy_helper.from_array(padded(bzp[0], 0) if b_per and bzp[0].ndim else bzp[0],
                                                         f"{base}/wide_b_zp"))
                b_inputs.append(f"{base}/wide_b_zp")
            new_nodes.append(helper.make_node("DequantizeLinear", b_inputs, [f"{base}/wide_b"], name=f"{base}/wide_b_dq",
                                              **({"axis": 0} if b_per else {})))
            conv_in.append(f"{base}/wide_b")
        new_inits += [numpy_helper.from_array(np.array([0], np.int64), f"{base}/wide_start"),
                      numpy_helper.from_array(np.array([cout], np.int64), f"{base}/wide_end"),
                      numpy_helper.from_array(np.array([1], np.int64), f"{base}/wide_axis")]
        new_nodes += [helper.make_node("Conv", conv_in, [f"{base}/wide"], name=f"{base}/wide_conv",
                                       **attrs(node)),
                      helper.make_node("QuantizeLinear", [f"{base}/wide", *q.input[1:]], [f"{base}/wide_q"],
                                       name=f"{base}/wide_quant",
                                       **attrs(q)),
                      helper.make_node("Slice", [f"{base}/wide_q", f"{base}/wide_start", f"{base}/wide_end",
                                                 f"{base}/wide_axis"], [q.output[0]], name=f"{base}/wide_slice")]
        splice(g, [node, q], new_nodes, new_inits)
        rewritten += 1
    if rewritten:
        drop_dead(proto)
    return rewritten
