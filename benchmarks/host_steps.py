"""Host steps of a P-frame decode at 1080p (mobilenvc): integer hyper-synthesis, warp and entropy
coding, previous implementation vs current one in the same process (ratios from one run), one
thread, interleaved calls (one block per kernel form where switching forms rebuilds sessions),
medians and spread over --runs. Outputs are checked bit-identical before timing."""

from __future__ import annotations

import numpy as np

from _common import add_runs_argument, compare, emit, median_time, padded_hw, parser, run_main


def old_new(old, new, runs: int, interleave: bool = True) -> dict:
    """Both sides timed (interleaved rounds unless one evicts the other's caches): medians as old_s /
    new_s, spreads beside them."""
    c = compare({"old": old, "new": new}, runs, interleave)
    return {"old_s": c["old"]["median_s"], "new_s": c["new"]["median_s"], "old": c["old"], "new": c["new"]}


def main() -> None:
    p = parser(__doc__)
    add_runs_argument(p)
    p.add_argument("--size", type=padded_hw, default=(1088, 1920), metavar="HxW",
                   help="padded HxW, multiples of 64 (default 1088x1920)")
    args = p.parse_args()
    import torch

    from entropy_speed import old_gaussian_decode, old_gaussian_encode, real_latents
    from mobilecodec.entropy import int_kernels
    from mobilecodec.entropy.coder import RangeDecoder, RangeEncoder
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.models.warp import _block_warp_reference, warp_frame
    from mobilecodec.models.yuv import pack_yuv, unpack_yuv

    torch.set_num_threads(1)
    int_kernels.set_num_threads(1)
    h, w = args.size
    torch.manual_seed(0)
    model = VideoCodec(get_config("mobilenvc")).eval()
    model.update()
    shapes = model.latent_shapes(h, w)
    res: dict = {"config": "mobilenvc", "size": [h, w], "runs": args.runs, "threads": 1, "steps": {}}

    # integer hyper-synthesis of a P-frame: motion and residual AEs, on real-range hyper-latents
    rng = np.random.default_rng(0)
    zs = {p: np.clip(np.rint(rng.laplace(0, 2.0, shapes[p][1])), -model.cfg.z_bound,
                     model.cfg.z_bound).astype(np.int32) for p in ("m", "r")}

    def hyper(fast: bool, gemm: bool | None = None, signed: bool | None = None):
        out = []
        for p, z in zs.items():
            ih = model.int_hyper(p)
            ih.use_int_gemm, ih.int_gemm, ih.int_signed = fast, gemm, signed
            out.append(ih(z))
            ih.use_int_gemm, ih.int_gemm, ih.int_signed = True, None, None
        return out

    for a, b in zip(hyper(True), hyper(False)):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    res["steps"]["integer hyper-synthesis"] = old_new(lambda: hyper(False), lambda: hyper(True), args.runs)
    from mobilecodec.cpu import u8s8_exact

    # the integer kernel forms against the default: ConvInteger u8 x u8 (NCHW, the only form before
    # the channels-last path), MatMulInteger u8 x u8 (the default without VNNI) and, with VNNI,
    # MatMulInteger u8 x s8 (the default there)
    forms = {"ConvInteger u8u8": dict(gemm=False), "MatMulInteger u8u8": dict(gemm=True, signed=False)}
    if u8s8_exact():
        forms["MatMulInteger u8s8 (VNNI)"] = dict(gemm=True, signed=True)
    for label, kw in forms.items():
        for a, b in zip(hyper(True, **kw), hyper(True)):
            assert all(np.array_equal(x, y) for x, y in zip(a, b))
        # switching the kernel form rebuilds the integer sessions: time each form in its own block
        res["steps"][f"integer hyper-synthesis, {label} -> default"] = old_new(
            lambda kw=kw: hyper(True, **kw), lambda: hyper(True), args.runs, interleave=False)

    # warp of the stored frame (uint8 levels) with a fractional block flow
    cfg = model.cfg.warp
    g = torch.Generator().manual_seed(0)
    frame = torch.round(torch.rand(1, 6, h // 2, w // 2, generator=g) * 255) / 255
    flow = torch.randn(1, 2, h // cfg.block_size, w // cfg.block_size, generator=g) * 4

    def warp_old():
        y, uv = unpack_yuv(frame)
        o = cfg.effective_overlap
        return pack_yuv(_block_warp_reference(y, flow, cfg.block_size, o),
                        _block_warp_reference(uv, flow * 0.5, cfg.block_size // 2, o // 2))

    with torch.no_grad():
        assert torch.equal(warp_old(), warp_frame(frame, flow, cfg))
        res["steps"]["warp"] = old_new(warp_old, lambda: warp_frame(frame, flow, cfg), args.runs)

    # entropy decoding of a real 1080p latent (shipped tiny checkpoint), hyper-latent included
    tm, y, z_int, means, idx = real_latents(size=(h, w))
    gc, prior = tm.gaussian, tm.i_z_prior
    sym = gc.clamp_symbols(np.rint(y - means).astype(np.int32), idx)
    enc = RangeEncoder()
    prior.encode(enc, z_int)
    gc.encode(enc, sym.ravel(), idx.ravel())
    data = enc.get_bytes()
    enc3 = RangeEncoder()  # format 3: every latent range-coded, the certain tables' too
    prior.encode(enc3, z_int)
    old_gaussian_encode(gc, enc3, sym.ravel(), idx.ravel())
    data3 = enc3.get_bytes()

    def ent_new():
        d = RangeDecoder(data)
        prior.decode(d, z_int.shape)
        return gc.decode(d, idx.ravel())

    def ent_old():  # format 3, tables validated and constriction models rebuilt on every call
        d = RangeDecoder(data3)
        t = prior._build_coding()
        for c in range(prior.channels):
            d.decode(z_int[:, c].size, t.pmfs[c], prior.precision)
        return old_gaussian_decode(gc, d, idx.ravel())

    assert np.array_equal(ent_new(), sym.ravel()) and np.array_equal(ent_old(), sym.ravel())
    res["steps"]["entropy decoding"] = {**old_new(ent_old, ent_new, args.runs), "symbols": int(sym.size + z_int.size)}

    # encoder side: the erfc estimate that used to run on every latent, now only when read
    from mobilecodec.codec.frame_coding import HyperpriorCoder
    coder = HyperpriorCoder(tm, "i")
    res["steps"]["encoder erfc estimate (now on demand)"] = {
        "old_s": median_time(lambda: coder._model_bits(sym, idx), args.runs), "new_s": None}

    print(f"host steps, mobilenvc {h}x{w} (entropy: tiny_b0.0064 latent), 1 thread, "
          f"medians of {args.runs} rounds (min-max), interleaved where the kernel forms allow:")
    for k, v in res["steps"].items():
        v["ratio_old_over_new"] = v["old_s"] / v["new_s"] if v["new_s"] else None
        if v["new_s"] is None:
            print(f"  {k:40s} before {1e3 * v['old_s']:8.1f} ms   after: not run (only when asked for)")
            continue
        old, new = v["old"], v["new"]
        print(f"  {k:40s} before {1e3 * v['old_s']:8.1f} ms ({1e3 * old['min_s']:.1f}-{1e3 * old['max_s']:.1f})   "
              f"after {1e3 * v['new_s']:8.1f} ms ({1e3 * new['min_s']:.1f}-{1e3 * new['max_s']:.1f})   "
              f"{v['ratio_old_over_new']:.1f}x")
    emit(res, args.json)


if __name__ == "__main__":
    run_main(main)
