"""Host steps of a P-frame decode at 1080p (mobilenvc): integer hyper-synthesis, warp and entropy
coding, previous implementation vs current one in the same process (ratios from one run), one
thread, interleaved calls (one block per kernel form where switching forms rebuilds sessions),
medians and spread over --runs. Outputs are checked bit-identical before timing.

Roofline, measured in the same run at the same single thread (`_common.roofline`), per step:
  integer hyper-synthesis (and its kernel forms)  int8 conv roofline (onnxruntime int8 QDQ 3x3 conv,
      1 thread): the step is int8 convolutions (u8 x s8/u8 integer GEMMs) and compute bound. Its
      MACs are the layers' own (a stride-2 transposed conv: every input pixel times every tap, as
      the polyphase split computes them); GMAC/s over the int8 rate, for both sides (the old side's
      float64 products are held to the rate the integer kernels aim at).
  warp  copy bandwidth (numpy copy, 1 thread): a gather that reads the stored frame and writes the
      warped one, float32 (plus the flow); its bytes are those, read and written once, and GB/s over
      the copy's GB/s is how close the warp comes to moving its data at memory speed (overlapping
      blocks read some pixels twice, which counts as work above the roofline's).
  entropy decoding, erfc estimate  copy bandwidth: there is no compute roofline for branchy scalar
      range decoding or per-symbol float64 erfc; their bytes are the arrays they read and write once
      (symbols int32, table indices), and the fraction says how far they are from being memory
      bound (a small fraction: bound by their per-symbol work), not an efficiency to approach.
Printed beside each step, written to the JSON per step (`roofline_kind`, `macs` or `bytes`, the
rates, `old_fraction_of_roofline`, `new_fraction_of_roofline`) and the roofline under `roofline`."""

from __future__ import annotations

import numpy as np

from _common import add_roofline_argument, add_runs_argument, calls, compare, conv_roof, copy_roof, emit, fraction, \
    padded_hw, parser, progress_counter, roofline, roofline_line, run_main


def old_new(old, new, runs: int, interleave: bool = True, tick=None) -> dict:
    """Both sides timed (interleaved rounds unless one evicts the other's caches): medians as old_s /
    new_s, spreads beside them. `tick`: called after every call (progress)."""
    c = compare({"old": old, "new": new}, runs, interleave, tick=tick)
    return {"old_s": c["old"]["median_s"], "new_s": c["new"]["median_s"], "old": c["old"], "new": c["new"]}


def int_hyper_macs(ih, z_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of an integer hyper-synthesis on hyper-latents of `z_shape` (N, C, h, w):
    per conv layer output pixels x out x in channels x taps; per transposed conv input pixels x in x
    out channels x taps (the polyphase split multiplies no inserted zeros)."""
    from mobilecodec.entropy.int_layers import KIND_CONV

    n, _, h, w = z_shape
    total = 0
    for layer in ih.layers:
        kh, kw = layer.kernel
        oh, ow = layer.out_size(h, w)
        pixels = oh * ow if layer.kind == KIND_CONV else h * w
        total += n * pixels * layer.in_ch * layer.out_ch * kh * kw
        h, w = oh, ow
    return total


def relate(step: dict, roof: dict | None, macs: int | None = None, nbytes: int | None = None) -> None:
    """Add a step's work (`macs`: against the int8 conv roofline; `nbytes`: against the copy
    bandwidth) and both sides' rates and fractions of that roofline to `step`."""
    for side in ("old", "new"):
        t = step[f"{side}_s"]
        if macs is not None:
            rate = macs / t / 1e9 if t else None
            step[f"{side}_gmacs_per_s"] = rate
            step[f"{side}_fraction_of_roofline"] = fraction(rate, conv_roof(roof, "int8"))
        else:
            rate = nbytes / t / 1e9 if t else None
            step[f"{side}_gb_per_s"] = rate
            step[f"{side}_fraction_of_roofline"] = fraction(rate, copy_roof(roof))
    if macs is not None:
        step.update(roofline_kind="int8 conv (onnxruntime int8 QDQ, 1 thread)", macs=int(macs))
    else:
        step.update(roofline_kind="copy bandwidth (numpy, 1 thread)", bytes=int(nbytes))


def main() -> None:
    p = parser(__doc__)
    add_runs_argument(p)
    p.add_argument("--size", type=padded_hw, default=(1088, 1920), metavar="HxW",
                   help="padded HxW, multiples of 64 (default 1088x1920)")
    add_roofline_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    from mobilecodec.cpu import u8s8_exact

    # the roofline at this run's one thread, before the steps (it sets torch's threads: to 1 again)
    roof = res["roofline"] = None if args.no_roofline else roofline(threads=1)
    # timed calls: hyper-synthesis, its kernel forms, warp, entropy decoding (two sides each), erfc (one)
    n_forms = 3 if u8s8_exact() else 2
    bar = progress_counter(calls(2, args.runs) * (3 + n_forms) + calls(1, args.runs), "host steps",
                           enabled=not args.no_progress)
    tick = bar.update

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
    hyper_macs = sum(int_hyper_macs(model.int_hyper(p), z.shape) for p, z in zs.items())
    bar.set_postfix_str("integer hyper-synthesis")
    res["steps"]["integer hyper-synthesis"] = old_new(lambda: hyper(False), lambda: hyper(True), args.runs,
                                                      tick=tick)
    relate(res["steps"]["integer hyper-synthesis"], roof, macs=hyper_macs)

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
        bar.set_postfix_str(f"hyper-synthesis, {label}")
        res["steps"][f"integer hyper-synthesis, {label} -> default"] = old_new(
            lambda kw=kw: hyper(True, **kw), lambda: hyper(True), args.runs, interleave=False, tick=tick)
        relate(res["steps"][f"integer hyper-synthesis, {label} -> default"], roof, macs=hyper_macs)

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
        bar.set_postfix_str("warp")
        res["steps"]["warp"] = old_new(warp_old, lambda: warp_frame(frame, flow, cfg), args.runs, tick=tick)
    # the stored frame read, the warped frame written (same size), the flow read
    relate(res["steps"]["warp"], roof, nbytes=2 * frame.numel() * frame.element_size() + flow.numel() * flow.element_size())

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
    bar.set_postfix_str("entropy decoding")
    res["steps"]["entropy decoding"] = {**old_new(ent_old, ent_new, args.runs, tick=tick),
                                        "symbols": int(sym.size + z_int.size)}
    # the latents: table indices read, int32 symbols written; the hyper-latents: int32 symbols written
    relate(res["steps"]["entropy decoding"], roof, nbytes=sym.size * (4 + idx.itemsize) + z_int.size * 4)

    # encoder side: the erfc estimate that used to run on every latent, now only when read
    from mobilecodec.codec.frame_coding import HyperpriorCoder
    coder = HyperpriorCoder(tm, "i")
    bar.set_postfix_str("erfc estimate")
    erfc = compare({"old": lambda: coder._model_bits(sym, idx)}, args.runs, interleave=False, tick=tick)["old"]
    res["steps"]["encoder erfc estimate (now on demand)"] = {"old_s": erfc["median_s"], "new_s": None, "old": erfc}
    bar.close()
    relate(res["steps"]["encoder erfc estimate (now on demand)"], roof, nbytes=sym.nbytes + idx.nbytes)  # read once

    print(f"host steps, mobilenvc {h}x{w} (entropy: tiny_b0.0064 latent), 1 thread, "
          f"medians of {args.runs} rounds (min-max), interleaved where the kernel forms allow; "
          f"'of roof': the rate as a fraction of the step's roofline (docstring), before -> after:")
    for k, v in res["steps"].items():
        v["ratio_old_over_new"] = v["old_s"] / v["new_s"] if v["new_s"] else None
        roof_cell = _roof_cell(v)
        old = v["old"]
        before = f"  {k:40s} before {1e3 * v['old_s']:8.1f} ms ({1e3 * old['min_s']:.1f}-{1e3 * old['max_s']:.1f})   "
        if v["new_s"] is None:
            print(f"{before}after: not run (only when asked for){roof_cell}")
            continue
        new = v["new"]
        print(f"{before}"
              f"after {1e3 * v['new_s']:8.1f} ms ({1e3 * new['min_s']:.1f}-{1e3 * new['max_s']:.1f})   "
              f"{v['ratio_old_over_new']:.1f}x{roof_cell}")
    print(roofline_line(roof))
    emit(res, args.json)


def _roof_cell(v: dict) -> str:
    """'   of roof <old> -> <new> (<rate> of <roofline>)' for a step's printed row, '' without a roofline."""
    if v.get("old_fraction_of_roofline") is None:
        return ""
    unit = "GMAC/s" if "macs" in v else "GB/s"
    rate = v.get("new_gmacs_per_s", v.get("new_gb_per_s")) if v["new_s"] else v.get("old_gmacs_per_s", v.get("old_gb_per_s"))
    new = f" -> {v['new_fraction_of_roofline']:.3f}" if v["new_s"] else ""
    return f"   of roof {v['old_fraction_of_roofline']:.3f}{new} ({rate:.2f} {unit}, {v['roofline_kind'].split(' (')[0]})"


if __name__ == "__main__":
    run_main(main)
