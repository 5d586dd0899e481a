"""The integer-GEMM hyper-synthesis (onnxruntime ConvInteger, polyphase transposed convs) against
the float64 per-tap reference and an independent int64 numpy implementation: real hyper-latents
of carphone coded with a shipped checkpoint, and worst-case inputs at every bound."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from mobilecodec.codec.frame_coding import HyperpriorCoder, RateStats
from mobilecodec.entropy.coder import RangeEncoder
from mobilecodec.entropy.int_kernels import IntConvKernel, _axis_phases
from mobilecodec.models.codec import VideoCodec
from mobilecodec.models.configs import get_config
from models_for_tests import walk_shipped_pframes

# --------------------------------------------------------------------------------------------
# independent int64 reference: transposed conv as zero insertion + flipped-kernel correlation


def _corr_int64(x: np.ndarray, w: np.ndarray, stride, pads, dil) -> np.ndarray:
    """Direct correlation in int64, x (N,Ci,H,W), w (Co,Ci,kh,kw), pads (t, b, l, r)."""
    n, ci, h, wd = x.shape
    co, _, kh, kw = w.shape
    xp = np.zeros((n, ci, h + pads[0] + pads[1], wd + pads[2] + pads[3]), dtype=np.int64)
    xp[:, :, pads[0]:pads[0] + h, pads[2]:pads[2] + wd] = x
    ho = (xp.shape[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (xp.shape[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, co, ho, wo), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dil[0], kx * dil[1]
            tap = xp[:, :, y0:y0 + (ho - 1) * stride[0] + 1:stride[0],
                     x0:x0 + (wo - 1) * stride[1] + 1:stride[1]]
            out += np.einsum("nchw,oc->nohw", tap, w[:, :, ky, kx].astype(np.int64))
    return out


def _layer_int64(layer, x: np.ndarray) -> np.ndarray:
    """acc = conv(x, w_q) + b_q of one integer layer, x int64 NCHW."""
    w = layer.weight.astype(np.int64)
    if layer.kind == 0:
        acc = _corr_int64(x, w, layer.stride, layer.pads, layer.dilation)
    else:
        (sh, sw), (dh, dw), (kh, kw) = layer.stride, layer.dilation, layer.kernel
        n, ci, h, wd = x.shape
        up = np.zeros((n, ci, (h - 1) * sh + 1, (wd - 1) * sw + 1), dtype=np.int64)
        up[:, :, ::sh, ::sw] = x
        ph, pw = dh * (kh - 1) - layer.pads[0], dw * (kw - 1) - layer.pads[2]
        oph, opw = layer.output_padding
        wf = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        acc = _corr_int64(up, wf, (1, 1), (ph, ph + oph, pw, pw + opw), layer.dilation)
    return acc + layer.bias.reshape(1, -1, 1, 1)


def _int64_reference(ih, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    amax = 2**ih.act_bits - 1
    x = z.astype(np.int64)
    for i, layer in enumerate(ih.layers):
        acc = _layer_int64(layer, x)
        c = (1, -1, 1, 1)
        q = (acc * layer.mult.reshape(c) + (1 << (layer.shift.reshape(c) - 1))) >> layer.shift.reshape(c)
        x = np.clip(q, 0, amax) if i < len(ih.layers) - 1 else q
    c = ih.latent_channels
    return (np.clip(x[:, :c], -ih.mean_limit, ih.mean_limit), np.clip(x[:, c:], 0, ih.num_levels - 1))


def _both_paths(ih, z):
    ih.use_int_gemm = True
    fast = ih(z)
    ih.use_int_gemm = False
    ref = ih(z)
    ih.use_int_gemm = True
    return fast, ref


def _assert_same(a, b):
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert np.array_equal(np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# real hyper-latents: carphone through the shipped checkpoint (I-frame, motion and residual AEs)


@pytest.fixture(scope="module")
def shipped_latents(carphone):
    zs = {"i": [], "m": [], "r": []}
    enc, stats = RangeEncoder(), RateStats()

    def z_of(model, prefix, y):  # codes y as the encoder does, keeping the hyper-latent symbols
        coder = HyperpriorCoder(model, prefix)
        z = getattr(model, f"{prefix}_hyper_analysis")(y).numpy()
        zs[prefix].append(coder.prior.clamp_symbols(np.rint(z).astype(np.int32)))
        return coder.encode_latents(y.numpy(), z, enc, stats)

    return walk_shipped_pframes(carphone, 3, z_of), zs


@pytest.mark.parametrize("prefix", ["i", "m", "r"])
def test_real_hyper_latents_bit_exact(shipped_latents, prefix):
    model, zs = shipped_latents
    ih = model.int_hyper(prefix)
    for z in zs[prefix]:
        assert np.abs(z).max() > 0  # real, non-trivial hyper-latents
        fast, ref = _both_paths(ih, z)
        _assert_same(fast, ref)
        _assert_same(fast, _int64_reference(ih, z))
        assert len(np.unique(fast[0])) > 3  # a non-trivial comparison
    assert all(k.verified for k in ih._int_kernels)  # the integer-GEMM path really ran


# --------------------------------------------------------------------------------------------
# worst cases: every value at its bound, for tiny and mobilenvc


def _worst_inputs(ih, shape, seed=0):
    zb = ih.z_bound
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    checker = np.where((np.arange(h)[:, None] + np.arange(w)) % 2 == 0, zb, -zb)
    # sign of the first layer's weights per input channel: drives the accumulators to extremes
    w0 = ih.layers[0].weight
    sgn = np.sign(w0.sum(axis=(1, 2, 3) if ih.layers[0].kind else (0, 2, 3))).reshape(1, -1, 1, 1)
    return [np.full(shape, zb), np.full(shape, -zb), np.broadcast_to(checker, shape).copy(),
            np.broadcast_to(np.where(sgn >= 0, zb, -zb), shape).copy(),
            np.broadcast_to(np.where(sgn >= 0, -zb, zb), shape).copy(),
            rng.choice([-zb, zb], size=shape), rng.integers(-zb, zb + 1, size=shape)]


@pytest.fixture(scope="module", params=["tiny", "mobilenvc"])
def random_model(request):
    torch.manual_seed(3)
    model = VideoCodec(get_config(request.param))
    model.update()
    return model


@pytest.mark.parametrize("prefix", ["i", "r"])
def test_worst_case_hyper_latents_bit_exact(random_model, prefix):
    ih = random_model.int_hyper(prefix)
    for z in _worst_inputs(ih, (1, ih.in_channels, 3, 4)):
        fast, ref = _both_paths(ih, z.astype(np.int32))
        _assert_same(fast, ref)
        _assert_same(fast, _int64_reference(ih, z))


@functools.lru_cache(maxsize=None)
def _frame_sized_case(prefix: str) -> tuple:
    """The int64 references (the slow part: ~12 s each) of the frame-sized test's inputs, computed once
    for both weight forms: they depend on the weights (seed 5) and the inputs, not on `int_signed`."""
    torch.manual_seed(5)
    model = VideoCodec(get_config("mobilenvc"))
    model.update()
    ih = model.int_hyper(prefix)
    zs = _worst_inputs(ih, (1, ih.in_channels, 9, 15))[::2]
    return tuple((z, _int64_reference(ih, z)) for z in zs)


@pytest.mark.parametrize("signed", [None, False], ids=["default", "matmulinteger-u8u8"])
@pytest.mark.parametrize("prefix", ["m", "r"])
def test_frame_sized_hyper_latents_bit_exact(prefix, signed):
    """mobilenvc at the hyper-latent size of a 576x960 frame, where the channels-last path builds
    patches and requantizes with the compiled (numba) loops: worst-case and random inputs equal
    the float64 path and the int64 reference, means and indices as contiguous int32; with this
    CPU's default weights (int8 with VNNI) and with uint8 weights (the form of CPUs without)."""
    from mobilecodec.cpu import u8s8_exact
    from mobilecodec.entropy import int_hyper, int_kernels

    if signed is False and not u8s8_exact():
        pytest.skip("without VNNI this CPU's default weights are uint8: the 'default' case ran this path")
    torch.manual_seed(5)
    model = VideoCodec(get_config("mobilenvc"))
    model.update()
    ih = model.int_hyper(prefix)
    ih.int_signed = signed
    shape = (1, ih.in_channels, 9, 15)
    sizes = []
    for i, layer in enumerate(ih.layers):
        shape_i = layer.out_size(*(shape[2:] if i == 0 else sizes[-1]))
        sizes.append(shape_i)
    assert all(h * w * 192 >= int_hyper._COMPILED_MIN_OUTPUTS for h, w in sizes)  # really compiled
    assert sizes[0][0] * sizes[0][1] * 9 * 192 >= int_kernels._COMPILED_MIN_BYTES
    for z, ref64 in _frame_sized_case(prefix):
        fast, ref = _both_paths(ih, z.astype(np.int32))
        _assert_same(fast, ref)
        _assert_same(fast, ref64)
        assert all(a.dtype == np.int32 and a.flags.c_contiguous for a in fast)
        assert len(np.unique(fast[1])) > 1
    want_signed = u8s8_exact() if signed is None else signed
    assert all(k.gemm and k.signed is want_signed and k.verified for k in ih._int_kernels)


def test_compiled_requantization_matches_numpy():
    """`compiled` against `requantize` (numpy int64) at the extremes the network allows:
    |acc + b| * M near 2^63, shifts 1-62, negative accumulators (arithmetic shift), strided
    output views (polyphase parts)."""
    from mobilecodec.entropy.compiled import patches, requantize_hidden, requantize_output
    from mobilecodec.entropy.int_conv64 import requantize

    rng = np.random.default_rng(7)
    c = 6
    acc = rng.integers(-2**31, 2**31, (2, 5, 7, 2 * c), dtype=np.int64).astype(np.int32)
    acc[0, 0, 0] = -2**31
    acc[0, 0, 1] = 2**31 - 1
    bias = rng.integers(-2**20, 2**20, 2 * c)
    mult = rng.integers(2**15, 2**16, 2 * c)
    shift = np.array([1, 2, 16, 30, 40, 62] * 2)
    want = requantize(acc.astype(np.int64) + bias, mult, shift)
    assert want.min() < -2**40 and want.max() > 0  # the extremes really occur
    out = np.zeros((2, 10, 14, 2 * c), np.uint8)
    requantize_hidden(acc, bias, mult, shift, 255, out[:, 1::2, ::2], threads=2)
    assert np.array_equal(out[:, 1::2, ::2], np.clip(want, 0, 255))
    assert not out[:, ::2].any() and not out[:, :, 1::2].any()  # nothing outside the view
    means = np.zeros((2, c, 5, 7), np.int32)
    idx = np.zeros_like(means)
    requantize_output(acc, bias, mult, shift, 1000, 64, means, idx, threads=3)
    assert np.array_equal(means, np.clip(want[..., :c], -1000, 1000).transpose(0, 3, 1, 2))
    assert np.array_equal(idx, np.clip(want[..., c:], 0, 63).transpose(0, 3, 1, 2))
    x = rng.integers(0, 256, (1, 6, 8, 3)).astype(np.uint8)
    got = patches(x, (3, 3), (1, 1), (1, 1), (1, 1), (6, 8), 17, threads=2).reshape(1, 6, 8, 9, 3)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=17)
    for u in range(3):
        for v in range(3):
            assert np.array_equal(got[:, :, :, u * 3 + v], xp[:, u:u + 6, v:v + 8])


@pytest.mark.parametrize("gemm,signed", [(False, None), (True, False), (True, True)],
                         ids=["convinteger-u8u8", "matmulinteger-u8u8", "matmulinteger-u8s8"])
@pytest.mark.parametrize("prefix", ["i", "m", "r"])
def test_every_kernel_exact_at_activation_bounds(random_model, prefix, gemm, signed):
    """Each layer's kernel alone, every form (ConvInteger u8 x u8; MatMulInteger on im2col
    patches with uint8 weights, or int8 weights, exact and used only on CPUs with VNNI, so tested
    only there), with inputs at 0 / 255 laid out to maximise the accumulators of some output
    channels, against the int64 reference (odd sizes: uneven phases)."""
    from mobilecodec.cpu import u8s8_exact

    if prefix not in random_model.ae_prefixes():
        pytest.skip("no such autoencoder")
    if signed and not u8s8_exact():
        pytest.skip("u8 x s8 is exact in onnxruntime only on CPUs with VNNI; this one has none")
    ih = random_model.int_hyper(prefix)
    rng = np.random.default_rng(1)
    for i, layer in enumerate(ih.layers):
        zp, xmax = (ih.z_bound, 2 * ih.z_bound) if i == 0 else (0, 255)
        kern = IntConvKernel(layer, zp, xmax, gemm=gemm, signed=signed)
        assert kern.gemm is gemm and (not gemm or kern.signed is signed)
        shape = (1, layer.in_ch, 3, 5)
        co = rng.integers(0, layer.out_ch, 4)  # channels whose positive / negative sum is maximal
        wsel = layer.weight[:, co] if layer.kind else layer.weight[co].transpose(1, 0, 2, 3)
        for c in range(len(co)):
            sgn = np.sign(wsel[:, c].sum(axis=(1, 2))).reshape(1, -1, 1, 1)
            for hi in (xmax, 0):
                x = np.broadcast_to(np.where(sgn > 0, hi, xmax - hi), shape).astype(np.uint8)
                got = kern(x)
                want = _layer_int64(layer, x.astype(np.int64) - zp) - layer.bias.reshape(1, -1, 1, 1)
                assert np.array_equal(got.astype(np.int64), want)
        x = np.full(shape, xmax, dtype=np.uint8)
        assert np.array_equal(kern(x).astype(np.int64),
                              _layer_int64(layer, x.astype(np.int64) - zp) - layer.bias.reshape(1, -1, 1, 1))
        assert kern.verified


def test_polyphase_split_hand_values():
    """k=5, s=2, p=2, output_padding=1 (the hyper-synthesis' up-sampling): even outputs use taps
    4, 2, 0 at input offsets -1, 0, +1; odd outputs taps 3, 1 at offsets 0, +1."""
    even, odd = _axis_phases(4, 5, 2, 2, 1, 1)
    assert (even.r, even.taps, even.pad_begin, even.pad_end, even.start, even.count) == (0, (4, 2, 0), 1, 1, 0, 4)
    assert (odd.r, odd.taps, odd.pad_begin, odd.pad_end, odd.start, odd.count) == (1, (3, 1), 0, 1, 0, 4)
