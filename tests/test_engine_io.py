"""The onnxruntime session layer: buffer graph I/O at the storage dtypes (bit-identical to the
host's rounding), ping-pong buffer slots through IOBinding, and one thread count everywhere."""

from __future__ import annotations

import numpy as np
import pytest


def _identity_graph():
    """A float graph with buffer I/O: buffer_in.frame -> out_frame; v -> buffer_out.{frame,flow,
    residual_feat}; v -> plain (not a buffer output, stays float)."""
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    nodes = [helper.make_node("Identity", ["buffer_in.frame"], ["out_frame"]),
             helper.make_node("Identity", ["v"], ["buffer_out.frame"]),
             helper.make_node("Identity", ["v"], ["buffer_out.flow"]),
             helper.make_node("Identity", ["v"], ["buffer_out.residual_feat"]),
             helper.make_node("Identity", ["v"], ["plain"])]
    io = lambda n: helper.make_tensor_value_info(n, f, [None])  # noqa: E731
    g = helper.make_graph(nodes, "g", [io("buffer_in.frame"), io("v")],
                          [io("out_frame"), io("buffer_out.frame"), io("buffer_out.flow"),
                           io("buffer_out.residual_feat"), io("plain")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture(scope="module")
def wrapped():
    import onnxruntime as ort

    from mobilecodec.runtime.storage_io import storage_io_model

    m = _identity_graph()
    assert storage_io_model(m)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_storage_io_types(wrapped):
    types = {i.name: i.type for i in (*wrapped.get_inputs(), *wrapped.get_outputs())}
    assert types == {"buffer_in.frame": "tensor(uint8)", "v": "tensor(float)", "out_frame": "tensor(float)",
                     "buffer_out.frame": "tensor(uint8)", "buffer_out.flow": "tensor(int16)",
                     "buffer_out.residual_feat": "tensor(float16)", "plain": "tensor(float)"}


def test_storage_io_hand_values(wrapped):
    # frame: round(t*255) half to even, clipped to [0, 255]; flow: round(t*256) clipped to int16
    v = np.array([0.0, 1.0, -0.3, 1.7, 2.0 / 255, 0.5, 1 / 512, 3 / 512, -1 / 512, 200.0, -200.0],
                 dtype=np.float32)
    out = dict(zip([o.name for o in wrapped.get_outputs()],
                   wrapped.run(None, {"buffer_in.frame": np.array([0, 1, 128, 255], np.uint8), "v": v})))
    assert out["buffer_out.frame"].tolist() == [0, 255, 0, 255, 2, 128, 0, 1, 0, 255, 0]  # 127.5 -> 128
    assert out["buffer_out.flow"].tolist() == [0, 256, -77, 435, 2, 128, 0, 2, 0, 32767, -32768]
    assert out["out_frame"].tolist() == [0.0, np.float32(1) / np.float32(255), np.float32(128) / np.float32(255), 1.0]
    assert out["plain"].dtype == np.float32 and np.array_equal(out["plain"], v)


def test_storage_io_equals_snap_to_storage(wrapped):
    """On many values (random, on-grid, exact half steps, out of range) the graph's stored values
    are those of models.buffer.snap_to_storage, and the uint8 input prologue gives k/255 exactly."""
    import torch

    from mobilecodec.models.buffer import snap_to_storage

    rng = np.random.default_rng(0)
    v = np.concatenate([rng.uniform(-0.2, 1.2, 20000), (np.arange(256) + 0.5) / 255, np.arange(256) / 255,
                        rng.uniform(-140, 140, 20000), (np.arange(-600, 600) + 0.5) / 256]).astype(np.float32)
    k = np.arange(256, dtype=np.uint8)
    out = dict(zip([o.name for o in wrapped.get_outputs()], wrapped.run(None, {"buffer_in.frame": k, "v": v})))
    t = torch.from_numpy(v)
    assert np.array_equal(out["buffer_out.frame"].astype(np.float32) / np.float32(255),
                          snap_to_storage("frame", t).numpy())
    assert np.array_equal(out["buffer_out.flow"].astype(np.float32) / np.float32(256),
                          snap_to_storage("flow", t).numpy())
    assert np.array_equal(out["buffer_out.residual_feat"].astype(np.float32),
                          snap_to_storage("residual_feat", t).numpy())
    assert np.array_equal(out["out_frame"], snap_to_storage("frame", torch.arange(256.0) / 255.0).numpy())


def test_engine_storage_io_and_ping_pong(tiny_package, carphone):
    """Encoding 4 frames (I P P P) with storage-dtype I/O and with float I/O gives the same payloads
    and the same buffers; the buffer graph I/O uses two preallocated slots in turn, and the graphs
    that touch the buffer take it at uint8 / int16."""
    import torch

    from mobilecodec.io import open_video, pad_frame
    from mobilecodec.models.yuv import frame_to_tensor
    from mobilecodec.runtime.engine import OnnxEngine

    with open_video(carphone) as r:
        xs = [frame_to_tensor(pad_frame(f)) for _, f in zip(range(4), r)]
    runs = {}
    for io in (True, False):
        eng = OnnxEngine(tiny_package, storage_io=io, threads=1)
        slots = [{n: a.ctypes.data for n, a in s.items()} for s in eng._slots]
        pays, bufs, buf, used = [], [], None, []
        for k, x in enumerate(xs):
            src = eng.latent_encoder(x)
            with torch.no_grad():
                _, buf = eng.run_iframe(src) if k == 0 else eng.run_pframe(buf, src)
            pays.append(src.payload())
            bufs.append({n: buf[n].numpy().copy() for n in buf.names()})
            used.append(eng._slots[eng._cur]["frame"].ctypes.data)
        assert [{n: a.ctypes.data for n, a in s.items()} for s in eng._slots] == slots  # preallocated once
        runs[io] = pays, bufs, used, eng
    assert runs[True][0] == runs[False][0]
    for a, b in zip(runs[True][1], runs[False][1]):
        assert a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)
    used = runs[True][2]
    assert used[0] == used[2] != used[1] == used[3]  # ping-pong
    eng = runs[True][3]
    assert {"i_synthesis", "motion_predictor", "m_synthesis", "m_analysis", "r_synthesis"} <= eng.wrapped
    assert eng.io_dtypes["motion_predictor"]["buffer_in.flow"] == "int16"
    assert eng.io_dtypes["r_synthesis"]["buffer_out.frame"] == "uint8"
    assert eng.io_dtypes["m_analysis"]["buffer_in.frame"] == "uint8"
    assert eng.run_sessions["r_synthesis"].get_session_options().intra_op_num_threads == 1


@pytest.fixture(scope="module")
def module_set_threads(host_threads_at_start):
    """A module fixture that runs a command with --threads, as test_eval's shipped_anchor does."""
    from mobilecodec.runtime.threads import set_threads

    set_threads(host_threads_at_start[0] + 1)
    yield


def test_a_module_fixtures_threads_do_not_reach_the_tests(module_set_threads, host_threads_at_start):
    """The per-test restore put back the count a module fixture had set (recorded after it), so
    every later test ran at it."""
    from conftest import _host_threads

    assert _host_threads() == host_threads_at_start


def test_set_threads_reaches_every_library():
    import torch

    from mobilecodec.entropy import int_kernels
    from mobilecodec.errors import InputError
    from mobilecodec.runtime.threads import get_threads, session_options, set_threads

    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1 and int_kernels._THREADS == 1 and get_threads() == 1
        so = session_options()
        assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        with pytest.raises(InputError):
            set_threads(0)
    finally:
        set_threads(None)
        torch.set_num_threads(before)
        int_kernels.set_num_threads(0)


def test_int8_conv_is_exact_with_the_runtime_session_options(bikes):
    """The first I-frame analysis conv of a shipped checkpoint, int8 per-channel weights, on a real
    frame, through `session_options()`, against the integer definition (int64 sums, float64
    requantization): at most one level apart (float32 requantization). On x86 CPUs without VNNI
    onnxruntime's default u8 x s8 kernels saturate here (13.7 % of the outputs more than one level
    off, up to 22, on an AVX2 EPYC); the session options must select its exact kernels."""
    import onnxruntime as ort
    import torch

    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.io import open_video, pad_frame
    from mobilecodec.models.yuv import frame_to_tensor
    from mobilecodec.runtime.threads import session_options
    from models_for_tests import qdq_conv

    model, _ = load_checkpoint("tiny_b0.0032")
    conv = next(m for m in model.i_analysis.modules() if isinstance(m, torch.nn.Conv2d))
    with open_video(bikes, max_frames=1) as r:
        xq = np.rint(frame_to_tensor(pad_frame(next(iter(r)))).numpy() * 255).astype(np.uint8)
    w = conv.weight.detach().numpy().astype(np.float64)
    w_scale = (np.abs(w).reshape(len(w), -1).max(1) / 127).astype(np.float32)
    wq = np.rint(w / w_scale[:, None, None, None]).astype(np.int8)
    x_scale = 1 / 255
    bq = np.rint(conv.bias.detach().numpy() / (x_scale * w_scale.astype(np.float64))).astype(np.int32)
    acc = torch.nn.functional.conv2d(torch.from_numpy(xq.astype(np.float64)), torch.from_numpy(wq.astype(np.float64)),
                                     stride=conv.stride, padding=conv.padding).numpy() + bq[None, :, None, None]
    assert np.abs(acc).max() < 2 ** 52  # float64 sums of integers are exact here
    m = x_scale * w_scale.astype(np.float64)[None, :, None, None]
    y_scale = float((acc * m).max() - (acc * m).min()) / 255
    y_zero = int(np.clip(np.rint(-(acc * m).min() / y_scale), 0, 255))
    want = np.clip(np.rint(acc * m / y_scale) + y_zero, 0, 255)
    model = qdq_conv(wq, w_scale, bq, x_scale, y_scale, np.uint8(y_zero), stride=conv.stride[0], pad=conv.padding[0])
    sess = ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    diff = np.abs(sess.run(None, {"x": xq})[0].astype(np.int64) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 1).mean())
