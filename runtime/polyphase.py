"""int8 transposed convolutions at integer-GEMM speed on the onnxruntime CPU EP.

onnxruntime's CPU EP has no quantized ConvTranspose: in a QDQ graph, DequantizeLinear ->
ConvTranspose -> QuantizeLinear runs as a float32 ConvTranspose, which took 85 % of the int8
synthesis time (`benchmarks/decode_speed.py`). A stride-s transposed convolution is s x s
ordinary convolutions on the same input, one per output phase, interleaved: output pixel
(s*i + r) only sees the kernel taps t = s*d + r + pad. `polyphase_conv_transpose` rewrites each
int8 ConvTranspose of a QDQ graph into one Conv whose s*s*C_out output channels are the phases
(the int8 weights rearranged, per-channel scales and int32 biases repeated per phase), followed
by the original activation and QuantizeLinear, then DepthToSpace on the quantized codes, which
only moves bytes. onnxruntime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv.

The rewrite changes nothing a quantized backend computes: the same weights meet the same uint8
activations, with the same scales, zero points and biases; taps outside the kernel are zero
weights. How the weights are stored depends on the CPU (`mobilecodec.cpu.u8s8_exact`): onnxruntime's
u8 x s8 kernels on AVX2 without VNNI add product pairs in saturating int16 (vpmaddubsw), so there
the weights become uint8 codes with zero point 128 (the same values; its u8 x u8 path widens to
16 bits first). With VNNI (AVX512-VNNI or AVX-VNNI) u8 x s8 accumulates in int32 exactly and is
onnxruntime's fast path, so the int8 codes stay as they are: on a Sapphire Rapids-class Xeon
the u8 x u8 form ran the mobilenvc residual synthesis' phase convolutions at 47-71 GMAC/s
against 254 GMAC/s for a u8 x s8 3x3 convolution (one thread). Only the CPU EP's sessions are
rewritten; packages keep ConvTranspose, which the QNN HTP runs natively.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobilecodec.export.onnx_common import GraphIndex
from mobilecodec.runtime.onnx_edit import attrs, drop_dead, splice


def _phase_taps(k: int, s: int, p: int) -> tuple[int, int]:
    """(dmin, dmax): output phase r of a stride-s transposed convolution reads input i - d for
    every d with 0 <= s*d + r + p < k, r in [0, s)."""
    ds = [d for r in range(s) for d in range(-k, k + 1) if 0 <= s * d + r + p < k]
    return min(ds), max(ds)


def polyphase_weights(w: np.ndarray, stride: tuple[int, int], pads: tuple[int, int],
                      zero: int | float = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Conv weights (s_h*s_w*C_out, C_in, L_h, L_w) and pads (top, left, bottom, right) that
    compute the phases of a ConvTranspose with weights `w` (C_in, C_out, k_h, k_w), in
    DepthToSpace DCR channel order (r_h, r_w, c). Missing taps hold `zero` (the weights' zero point)."""
    cin, cout, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, pads
    (dh0, dh1), (dw0, dw1) = _phase_taps(kh, sh, ph), _phase_taps(kw, sw, pw)
    lh, lw = dh1 - dh0 + 1, dw1 - dw0 + 1
    out = np.full((sh, sw, cout, cin, lh, lw), zero, dtype=w.dtype)
    wt = np.transpose(w, (1, 0, 2, 3))  # (C_out, C_in, k_h, k_w)
    for rh in range(sh):
        for uh in range(lh):
            th = sh * (dh1 - uh) + rh + ph  # correlation tap u reads input i + u - dh1, i.e. d = dh1 - u
            if not 0 <= th < kh:
                continue
            for rw in range(sw):
                for uw in range(lw):
                    tw = sw * (dw1 - uw) + rw + pw
                    if 0 <= tw < kw:
                        out[rh, rw, :, :, uh, uw] = wt[:, :, th, tw]
    return out.reshape(sh * sw * cout, cin, lh, lw), (dh1, dw1, -dh0, -dw0)


def polyphase_conv_transpose(proto: Any, signed_weights: bool | None = None) -> int:
    """Rewrite, in place, every int8 ConvTranspose of QDQ graph `proto` whose output is exactly
    `s` times its input (DequantizeLinear'd uint8/int8 input, per-channel int8 weights, optional
    int32 bias; followed by an optional Relu and one 8-bit QuantizeLinear) into Conv -> [Relu] ->
    QuantizeLinear -> DepthToSpace. `signed_weights`: keep the int8 weight codes (True) or store
    them as uint8 with zero point 128 (False); None picks `mobilecodec.cpu.u8s8_exact()`. Returns how
    many were rewritten; others are left as they are."""
    from onnx import TensorProto, helper, numpy_helper

    if signed_weights is None:
        from mobilecodec.cpu import u8s8_exact

        signed_weights = u8s8_exact()

    g = proto.graph
    ix = GraphIndex(g)
    inits, producer, only_consumer, dq_of_init = ix.inits, ix.producer, ix.only_consumer, ix.dq_of_init

    rewritten = 0
    for node in list(g.node):
        if node.op_type != "ConvTranspose":
            continue
        a = attrs(node)
        k = list(a.get("kernel_shape", []))
        s = list(a.get("strides", [1, 1]))
        p = list(a.get("pads", [0, 0, 0, 0]))
        op = list(a.get("output_padding", [0, 0]))
        if (a.get("group", 1) != 1 or list(a.get("dilations", [1, 1])) != [1, 1] or len(k) != 2
                or "output_shape" in a or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                or p[0] != p[2] or p[1] != p[3] or s[0] != s[1] or s[0] < 2
                or any(2 * p[i] != k[i] + op[i] - s[i] for i in range(2))):  # output = s x input
            continue
        w = dq_of_init(node.input[1])
        bias = dq_of_init(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        x_dq = producer.get(node.input[0])
        if w is None or x_dq is None or x_dq.op_type != "DequantizeLinear" or \
                (len(node.input) > 2 and node.input[2] and bias is None):
            continue
        w_dq, (wq, wscale, *wzp) = w
        axis = attrs(w_dq).get("axis", 1)
        if wq.dtype != np.int8 or wscale.ndim != 1 or axis != 1 or (wzp and np.any(wzp[0] != 0)):
            continue
        chain = [node]
        nxt = only_consumer(node.output[0])
        if nxt is not None and nxt.op_type == "Relu":
            chain.append(nxt)
            nxt = only_consumer(nxt.output[0])
        if nxt is None or nxt.op_type != "QuantizeLinear":
            continue
        q = nxt
        scale = inits.get(q.input[1])
        if scale is None or numpy_helper.to_array(scale).size != 1:
            continue  # a per-channel output quantizer would need its own phase layout
        zp = inits.get(q.input[2]) if len(q.input) > 2 else None
        if zp is not None and zp.data_type not in (TensorProto.UINT8, TensorProto.INT8):
            continue  # 16-bit codes: no integer conv kernel and no uint16 DepthToSpace (measured no faster in float)
        phases = s[0] * s[1]
        kq, pads = polyphase_weights(wq, (s[0], s[1]), (p[0], p[1]))
        base = node.name or node.output[0]
        # Without VNNI: uint8 codes with zero point 128 (the same weights): onnxruntime's u8s8 GEMM
        # on AVX2 sums product pairs in int16 and saturates with full-range int8 weights (up to 208
        # levels off on a Zen 3); its u8u8 path does not. With VNNI u8s8 is exact and fast.
        codes, zero = (kq, np.int8(0)) if signed_weights else ((kq.astype(np.int16) + 128).astype(np.uint8), np.uint8(128))
        new_inits = [numpy_helper.from_array(codes, f"{base}/poly_w_q"),
                     numpy_helper.from_array(np.tile(wscale, phases).astype(wscale.dtype), f"{base}/poly_w_scale"),
                     numpy_helper.from_array(np.full(kq.shape[0], zero, codes.dtype), f"{base}/poly_w_zp")]
        new_nodes = [helper.make_node("DequantizeLinear", [f"{base}/poly_w_q", f"{base}/poly_w_scale", f"{base}/poly_w_zp"],
                                      [f"{base}/poly_w"], axis=0, name=f"{base}/poly_w_dq")]
        conv_in = [node.input[0], f"{base}/poly_w"]
        if bias is not None:
            b_dq, (bq, bscale, *bzp) = bias
            new_inits += [numpy_helper.from_array(np.tile(bq, phases), f"{base}/poly_b_q"),
                          numpy_helper.from_array(np.tile(bscale, phases) if bscale.ndim else bscale, f"{base}/poly_b_scale"),
                          numpy_helper.from_array(np.tile(bzp[0], phases) if bzp and bzp[0].ndim else
                                                  (bzp[0] if bzp else np.zeros((), np.int32)), f"{base}/poly_b_zp")]
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{base}/poly_b_q", f"{base}/poly_b_scale",
                                                                   f"{base}/poly_b_zp"],
                                              [f"{base}/poly_b"], axis=0, name=f"{base}/poly_b_dq"))
            conv_in.append(f"{base}/poly_b")
        new_nodes.append(helper.make_node("Conv", conv_in, [f"{base}/poly"], kernel_shape=list(kq.shape[2:]),
                                          pads=list(pads), strides=[1, 1], name=f"{base}/poly_conv"))
        last = f"{base}/poly"
        if len(chain) == 2:
            new_nodes.append(helper.make_node("Relu", [last], [f"{base}/poly_relu"], name=f"{base}/poly_relu"))
            last = f"{base}/poly_relu"
        new_nodes += [helper.make_node("QuantizeLinear", [last, *q.input[1:]], [f"{base}/poly_q"],
                                       name=f"{base}/poly_quant", **attrs(q)),
                      helper.make_node("DepthToSpace", [f"{base}/poly_q"], [q.output[0]], blocksize=s[0],
                                       mode="DCR", name=f"{base}/poly_d2s")]
        splice(g, [*chain, q], new_nodes, new_inits)
        rewritten += 1
    if rewritten:
        drop_dead(proto)
    return rewritten
