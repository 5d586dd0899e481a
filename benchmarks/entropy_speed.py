"""Entropy coding speed on a real 1080p latent tensor (carphone upscaled to 1088x1920 through the
shipped tiny_b0.0064 checkpoint): symbols/s of the codec's Gaussian-conditional
coder (tables and constriction models cached; stream format 4, whose certain tables are not
range-coded) against constriction's own throughput on the very same coded symbols and models,
against constriction coding every symbol (what format 3 needed at best) and against the per-call
path before that (format 3, tables re-validated and constriction models rebuilt for every coder
call), and whether two constriction decodes on two threads overlap (they would if constriction
released the GIL). Symbols/s count every latent symbol, coded or not. One thread; medians over
--runs.

Roofline: the copy bandwidth of one thread measured in the same run (`_common.copy_bandwidth`),
the only one that applies: range coding is branchy scalar code on one thread, with no
multiply-accumulates to set against the conv roofline. Its per-symbol form is the rate at which the
machine could merely stream the coder's arrays once (the int32 symbols and the int64 table
indices: 12 bytes a symbol; the coded bytes, under a byte a symbol, left out): copy GB/s / 12 B.
Every row's symbols/s (over every latent symbol) is written as a fraction of that rate, on one
scale for all rows: the constriction-alone rows touch only the range-coded symbols' segments, so
theirs is an equivalent, not bytes they moved. It is not an efficiency to approach: a small
fraction says the coder is bound by its per-symbol work, not by memory."""

from __future__ import annotations


import numpy as np

from _common import add_roofline_argument, add_runs_argument, compare, copy_roof, emit, fraction, parser, \
    roofline, roofline_line, run_main


def real_latents(checkpoint: str = "tiny_b0.0064", size: tuple[int, int] = (1088, 1920)):
    """(model, y, z_int, means, idx): the I-frame latent of carphone's first frame, upscaled to
    `size` (padded HxW), through a shipped (trained) checkpoint."""
    import torch
    import torch.nn.functional as F

    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.frame_coding import HyperpriorCoder
    from mobilecodec.io import open_video, pad_frame, sample_clip
    from mobilecodec.models.yuv import frame_to_tensor

    model, _ = load_checkpoint(checkpoint)
    model.eval()
    with open_video(sample_clip("carphone"), max_frames=1) as r:
        x = frame_to_tensor(pad_frame(next(iter(r))))
    x = F.interpolate(x, size=(size[0] // 2, size[1] // 2), mode="bilinear", align_corners=False)
    with torch.no_grad():
        y = model.i_analysis(x)
        z = model.i_hyper_analysis(y)
    coder = HyperpriorCoder(model, "i")
    z_int = coder.prior.clamp_symbols(np.rint(z.numpy()).astype(np.int32))
    means, idx = coder.params(z_int)
    return model, y.numpy(), z_int, means, idx



def old_gaussian_encode(g, enc, sym, idx) -> None:
    """`GaussianConditional.encode` before session 12 (format 3: every table coded): validate
    tables, build a model per call."""
    t = g._build_coding()
    order, uniq, bounds = g._groups(idx)
    for j, i in enumerate(uniq):
        seg = sym[order[bounds[j]:bounds[j + 1]]] - t.offsets[i]
        enc.encode(seg, t.pmfs[i], g.precision)


def old_gaussian_decode(g, dec, idx) -> np.ndarray:
    t = g._build_coding()
    out = np.empty(idx.size, dtype=np.int32)
    order, uniq, bounds = g._groups(idx)
    for j, i in enumerate(uniq):
        lo, hi = bounds[j], bounds[j + 1]
        out[order[lo:hi]] = dec.decode(hi - lo, t.pmfs[i], g.precision) + t.offsets[i]
    return out


def measure(runs: int = 8) -> dict:
    import constriction
    import torch

    from mobilecodec.entropy.coder import RangeDecoder, RangeEncoder

    torch.set_num_threads(1)
    model, y, z_int, means, idx = real_latents()
    g = model.gaussian
    idx = idx.ravel().astype(np.int64)
    sym = g.clamp_symbols(np.rint(y - means).astype(np.int32), idx.reshape(y.shape)).ravel()
    n = sym.size
    tables = g.coding_tables()
    order, uniq, bounds = g._groups(idx)
    every = [(int(i), (sym[order[bounds[j]:bounds[j + 1]]] - tables.offsets[i]).astype(np.int32))
             for j, i in enumerate(uniq)]
    groups = [(i, seg) for i, seg in every if not tables.certain[i]]  # what format 4 range-codes
    models = {i: tables.model(i) for i, _ in every}
    coded = sum(seg.size for _, seg in groups)

    def ours_enc():
        e = RangeEncoder()
        g.encode(e, sym, idx)
        return e.get_bytes()

    def old_enc():
        e = RangeEncoder()
        old_gaussian_encode(g, e, sym, idx)
        return e.get_bytes()

    def ours_enc_then_bits():  # the encoder's step until session 21: code, then count the bits again
        e = RangeEncoder()
        g.encode(e, sym, idx)
        g.bits(sym, idx)

    def own_enc(which=groups):  # constriction alone: same symbols, same prebuilt models, same order
        e = constriction.stream.queue.RangeEncoder()
        for i, seg in which:
            e.encode(seg, models[i])
        return e.get_compressed()

    def own_enc_all():
        return own_enc(every)

    data = ours_enc()
    data3 = old_enc()
    assert own_enc().astype("<u4").tobytes() == data and own_enc_all().astype("<u4").tobytes() == data3
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    words3 = np.frombuffer(data3, dtype="<u4").astype(np.uint32)

    def ours_dec():
        return g.decode(RangeDecoder(data), idx)

    def old_dec():
        return old_gaussian_decode(g, RangeDecoder(data3), idx)

    def own_dec(w=words, which=groups):
        d = constriction.stream.queue.RangeDecoder(w)
        for i, seg in which:
            d.decode(models[i], seg.size)

    def own_dec_all():
        own_dec(words3, every)

    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(2)  # made once, outside the timed calls

    def own_dec_two_threads():  # two independent decodes at once: does constriction release the GIL?
        for f in [pool.submit(own_dec), pool.submit(own_dec)]:
            f.result()

    assert np.array_equal(ours_dec(), sym) and np.array_equal(old_dec(), sym)
    stats = compare({"encode": ours_enc, "encode_then_bits": ours_enc_then_bits, "encode_old": old_enc,
                     "encode_constriction": own_enc,
                     "encode_constriction_every_symbol": own_enc_all, "decode": ours_dec,
                     "decode_old": old_dec, "decode_constriction": own_dec,
                     "decode_constriction_every_symbol": own_dec_all,
                     "decode_constriction_2x_on_2_threads": own_dec_two_threads}, runs)
    pool.shutdown()
    t = {k: v["median_s"] for k, v in stats.items()}
    symbols = {k: (2 * n if k.endswith("_2x_on_2_threads") else n) for k in t}  # that one decodes twice
    return {"symbols": int(n), "coded_symbols": int(coded), "shape": list(y.shape),
            "distinct_tables": int(len(uniq)), "bits_per_symbol": 8 * len(data) / n,
            "bits_per_symbol_format3": 8 * len(data3) / n, "runs": runs, "spread": stats,
            "seconds": t, "symbols_per_s": {k: symbols[k] / v for k, v in t.items()},
            "array_bytes_per_symbol": int(sym.itemsize + idx.itemsize),
            "ours_over_constriction": {"encode": t["encode_constriction"] / t["encode"],
                                       "decode": t["decode_constriction"] / t["decode"]}}


def main() -> None:
    p = parser(__doc__)
    add_runs_argument(p)
    add_roofline_argument(p)
    args = p.parse_args()
    r = measure(args.runs)
    roof = None if args.no_roofline else roofline(conv=False)
    bw, per_symbol = copy_roof(roof), r["array_bytes_per_symbol"]
    r["roofline"] = roof
    r["symbols_per_s_at_copy_roofline"] = bw * 1e9 / per_symbol if bw else None
    r["fraction_of_copy_roofline"] = {k: fraction(v * per_symbol / 1e9, bw) for k, v in r["symbols_per_s"].items()}
    sps = r["symbols_per_s"]
    print(f"latent {r['shape']} ({r['symbols']} symbols, {r['coded_symbols']} range-coded, "
          f"{r['distinct_tables']} tables, {r['bits_per_symbol']:.4f} bits/symbol, format 3 "
          f"{r['bits_per_symbol_format3']:.4f}), medians of {r['runs']}, Msym/s over every symbol:")
    for op in ("encode", "decode"):
        print(f"  {op}: ours {sps[op] / 1e6:.2f}, constriction alone on the same coded symbols "
              f"{sps[op + '_constriction'] / 1e6:.2f} (ours reach {100 * r['ours_over_constriction'][op]:.0f}%); "
              f"format 3: constriction coding every symbol {sps[op + '_constriction_every_symbol'] / 1e6:.2f}, "
              f"the per-call path {sps[op + '_old'] / 1e6:.2f}")
    sec = r["seconds"]
    print(f"  the encoder's step: encode counting the bits of what it codes {1e3 * sec['encode']:.2f} ms, "
          f"encode then bits() over every symbol (until session 21) {1e3 * sec['encode_then_bits']:.2f} ms")
    two = r["two_decodes_on_two_threads_over_one"] = (r["seconds"]["decode_constriction_2x_on_2_threads"]
                                                     / r["seconds"]["decode_constriction"])  # printed: in the JSON too
    print(f"  two constriction decodes on two threads at once take {two:.2f}x one decode "
          f"(1.0 if they ran in parallel, 2.0 if one after the other)")
    print(roofline_line(roof))
    if bw:
        f = r["fraction_of_copy_roofline"]
        print(f"  as symbols: {r['symbols_per_s_at_copy_roofline'] / 1e6:.0f} Msym/s at the copy bandwidth "
              f"({per_symbol} bytes of symbol and index a symbol); ours reach {f['encode']:.2%} (encode), "
              f"{f['decode']:.2%} (decode), constriction alone {f['encode_constriction']:.2%}, "
              f"{f['decode_constriction']:.2%} of it (branchy scalar coding: a distance from memory-bound, "
              f"not a target)")
    emit(r, args.json)


if __name__ == "__main__":
    run_main(main)
