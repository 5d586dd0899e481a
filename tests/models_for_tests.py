"""Models the tests build themselves (not shipped, not part of the package)."""

from __future__ import annotations


#: what a random model's scale-table indices are raised by: its hyper-syntheses give the smallest,
#: certain scale everywhere, whose latents stream format 4 does not code, so without this a test
#: would code hyper-latents alone and never range-code or compare a latent
INDEX_SHIFT = 16


def code_latents(model, gain: float = 16.0, index_shift: int = INDEX_SHIFT):
    """Make a random model range-code its latents: the analyses' outputs scaled by `gain` (nonzero
    symbols: 34 % of the I-frame latents of carphone's first frame at 16, none at 4) and the
    hyper-syntheses' scale indices raised by `index_shift`. In place, before `update()`; returns it."""
    import torch

    with torch.no_grad():
        for prefix in ("i", "m", "r"):
            if not hasattr(model, f"{prefix}_analysis"):  # warp 'none' codes no motion
                continue
            getattr(model, f"{prefix}_analysis").out.weight *= gain
            getattr(model, f"{prefix}_analysis").out.bias *= gain
            hs = getattr(model, f"{prefix}_hyper_synthesis")
            hs[-1].bias[hs.latent:] += index_shift
    return model


def random_tiny(variant: str = "low", **overrides):
    """A random-init `tiny` (seed 0) that codes: I-frame output bias at mid-grey so reconstructions
    are not black; 'low' range-codes its latents (`code_latents` with gain 1); 'cheap' scales the analyses' latents by 1/4 and keeps the
    certain scale, so it codes hyper-latents alone (the fewest bits: below every shipped
    checkpoint). NOT a trained codec: a deterministic model whose RD point differs from the shipped
    ones. `overrides` replace config fields (e.g. buffering)."""
    import torch

    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    gain, shift, bias = {"low": (1.0, INDEX_SHIFT, 0.5), "cheap": (0.25, 0, 0.5)}[variant]
    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny", **overrides))
    with torch.no_grad():
        model.i_synthesis.out.bias[:6] += bias
    code_latents(model, gain, shift)
    model.update()
    return model


def walk_shipped_pframes(clip, frames: int, quantize, on_warp=None, checkpoint: str = "tiny_b0.0064"):
    """Code the first `frames` frames of `clip` with a shipped checkpoint, I-frame then P-steps in
    frame_coding.run_pframe's order, without grad; the motion analysis gets the predicted flow as
    its hint (no sender-side motion search: any real decoded flow serves these tests). `quantize(model, prefix, y) -> y_hat` codes each
    latent (the test chooses how, and records what it needs); `on_warp(frame, flow)` sees each P-step's
    stored reference frame and decoded flow before the warp. Returns the model."""
    import torch

    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.io import open_video, pad_frame
    from mobilecodec.models.yuv import frame_to_tensor

    model, _ = load_checkpoint(checkpoint)
    model.eval()
    with open_video(clip, max_frames=frames) as r:
        xs = [frame_to_tensor(pad_frame(f)) for f in r]
    with torch.no_grad():
        x_hat, feat = model.i_synthesis(quantize(model, "i", model.i_analysis(xs[0])))
        buf = model.initial_buffer(x_hat, feat)
        for x in xs[1:]:
            flow_pred = model.motion_predictor(model.motion_state(buf))
            m_hat = quantize(model, "m", model.m_analysis(x, model.motion_reference(buf), flow_pred))
            flow, motion_feat = model.m_synthesis(m_hat, flow_pred)
            if on_warp is not None:
                on_warp(buf["frame"], flow)
            warped = model.warp(buf, flow)
            pred, cond = model.predict(warped), model.condition(warped)
            r_hat = quantize(model, "r", model.r_analysis(x, pred, *cond))
            x_hat, res_feat = model.r_synthesis(r_hat, pred, *cond)
            buf = model.make_buffer(x_hat, res_feat, flow, motion_feat)
    return model


def qdq_conv(wq, ws, bq, xs, ys, yz, *, stride: int = 1, pad: int | None = None, in_shape=None, out_shape=None):
    """uint8 x -> DequantizeLinear -> Conv (DequantizeLinear of int8 weights `wq`, per output channel
    when `ws` is a vector; int32 bias `bq` unless None) -> QuantizeLinear(ys, yz), per output channel
    when `ys` is a vector, to yz's dtype: the pattern of every aimet int8 graph, which onnxruntime
    fuses into QLinearConv. Input 'x', output 'y'; returns the onnx ModelProto."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    ws, ys, yz = np.asarray(ws, np.float32), np.asarray(ys, np.float32), np.asarray(yz)
    cout, k = wq.shape[0], wq.shape[-1]
    pad = k // 2 if pad is None else pad
    inits = {"xs": np.array(xs, np.float32), "xz": np.array(0, np.uint8), "wq": wq, "ws": ws,
             "wz": np.zeros(ws.shape, np.int8), "ys": ys, "yz": yz}
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wf"], **({"axis": 0} if ws.ndim else {}))]
    conv_in = ["xf", "wf"]
    if bq is not None:
        inits.update(bq=bq, bs=(np.float32(xs) * ws * np.ones(cout, np.float32)).astype(np.float32),
                     bz=np.zeros(cout, np.int32))
        nodes.append(helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bf"], axis=0))
        conv_in.append("bf")
    nodes += [helper.make_node("Conv", conv_in, ["c"], kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4,
                               name="out"),
              helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["y"], **({"axis": 1} if ys.ndim else {}))]
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.UINT8, in_shape)],
                              [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(yz.dtype), out_shape)],
                              [numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
