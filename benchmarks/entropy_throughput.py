"""Entropy coding throughput (symbols/s) of the Gaussian-conditional range coder, encode and
decode, on Laplacian-like symbols with mixed scale-table indices (as latents look)."""

from __future__ import annotations

import time

import numpy as np

from _common import emit, parser


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--symbols", type=int, default=200_000)
    args = p.parse_args()
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
    enc = RangeEncoder()
    t0 = time.perf_counter()
    g.encode(enc, sym, idx)
    data = enc.get_bytes()
    te = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec = RangeDecoder(data)
    out = g.decode(dec, idx)
    td = time.perf_counter() - t0
    assert np.array_equal(np.asarray(out).ravel(), sym), "decode does not invert encode"
    r = {"symbols": n, "bytes": len(data), "bits_per_symbol": 8 * len(data) / n,
         "encode_symbols_per_s": n / te, "decode_symbols_per_s": n / td, "decode_over_encode_time": td / te}
    print(f"{n} symbols, {r['bits_per_symbol']:.3f} bits/symbol: encode {r['encode_symbols_per_s'] / 1e6:.2f} "
          f"Msymbols/s, decode {r['decode_symbols_per_s'] / 1e6:.2f} Msymbols/s "
          f"(decode/encode time {r['decode_over_encode_time']:.2f})")
    emit(r, args.json)


if __name__ == "__main__":
    main()
