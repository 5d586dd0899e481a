"""Entropy coding throughput (symbols/s) of the Gaussian-conditional range coder, encode and
decode, on Laplacian-like symbols with mixed scale-table indices (as latents look); interleaved
rounds after warm-up calls (first-call kernel compilation and table building), medians and spread.

Roofline: the copy bandwidth of one thread measured in the same run (`_common.copy_bandwidth`),
the only one that applies: range coding is branchy scalar code on one thread, with no
multiply-accumulates to set against the conv roofline. Its per-symbol form is the rate at which the
machine could merely stream the coder's arrays once (the int32 symbols and the int32 table
indices: 8 bytes a symbol; the coded bytes, under a byte a symbol, left out): copy GB/s / 8 B.
The printed fraction is symbols/s over that rate. It is not an efficiency to approach: it says
how far the coder is from being memory bound (a small fraction: bound by its per-symbol work)."""

from __future__ import annotations

import numpy as np

from _common import add_roofline_argument, add_runs_argument, compare, copy_roof, emit, fraction, parser, \
    roofline, roofline_line, run_main

from mobilecodec.cli.common import positive_int

MAX_SYMBOLS = 50_000_000


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--symbols", type=positive_int, default=200_000, help="symbols coded per call (default 200000)")
    add_runs_argument(p)
    add_roofline_argument(p)
    args = p.parse_args()
    if args.symbols > MAX_SYMBOLS:  # its arrays take about 8 bytes a symbol: 10^10 asked for 75 GB
        p.error(f"--symbols at most {MAX_SYMBOLS:,} (about 8 bytes each in memory), got {args.symbols:,}")
    import torch

    from mobilecodec.entropy.coder import RangeDecoder, RangeEncoder
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny"))
    model.update()
    g = model.gaussian
    rng = np.random.default_rng(0)
    n = args.symbols
    levels = len(g.table.scales())
    idx = rng.integers(0, levels, n).astype(np.int32)
    sym = g.clamp_symbols(np.rint(rng.laplace(0, 1.5, n)).astype(np.int32), idx)
    def encode() -> bytes:
        enc = RangeEncoder()
        g.encode(enc, sym, idx)
        return enc.get_bytes()

    data = encode()

    def decode():
        return g.decode(RangeDecoder(data), idx)

    assert np.array_equal(np.asarray(decode()).ravel(), sym), "decode does not invert encode"
    c = compare({"encode": encode, "decode": decode}, args.runs)
    roof = None if args.no_roofline else roofline(conv=False)
    te, td = c["encode"]["median_s"], c["decode"]["median_s"]
    r = {"symbols": n, "bytes": len(data), "bits_per_symbol": 8 * len(data) / n, "runs": args.runs,
         "encode_symbols_per_s": n / te, "decode_symbols_per_s": n / td, "decode_over_encode_time": td / te,
         "spread": c}
    print(f"{n} symbols, {r['bits_per_symbol']:.3f} bits/symbol: encode {r['encode_symbols_per_s'] / 1e6:.2f} "
          f"Msymbols/s, decode {r['decode_symbols_per_s'] / 1e6:.2f} Msymbols/s "
          f"(decode/encode time {r['decode_over_encode_time']:.2f}; medians of {args.runs} rounds, encode "
          f"{1e3 * c['encode']['min_s']:.1f}-{1e3 * c['encode']['max_s']:.1f} ms, decode "
          f"{1e3 * c['decode']['min_s']:.1f}-{1e3 * c['decode']['max_s']:.1f} ms)")
    per_symbol = sym.itemsize + idx.itemsize  # bytes of the arrays the coder reads or writes, per symbol
    bw = copy_roof(roof)
    r.update({"roofline": roof, "array_bytes_per_symbol": per_symbol,
              "symbols_per_s_at_copy_roofline": bw * 1e9 / per_symbol if bw else None,
              "encode_fraction_of_copy_roofline": fraction(r["encode_symbols_per_s"] * per_symbol / 1e9, bw),
              "decode_fraction_of_copy_roofline": fraction(r["decode_symbols_per_s"] * per_symbol / 1e9, bw)})
    print(roofline_line(roof))
    if bw:
        print(f"as symbols: {r['symbols_per_s_at_copy_roofline'] / 1e6:.0f} Msymbols/s at the copy bandwidth "
              f"({per_symbol} bytes of symbol and index a symbol); encode reaches "
              f"{r['encode_fraction_of_copy_roofline']:.1%}, decode {r['decode_fraction_of_copy_roofline']:.1%} "
              f"of it (branchy scalar coding: a distance from memory-bound, not a target)")
    emit(r, args.json)


if __name__ == "__main__":
    run_main(main)
