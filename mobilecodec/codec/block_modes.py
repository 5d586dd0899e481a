"""P-frame block modes: per block of the frame the sender picks what the decoder outputs, as a
classical encoder picks skip blocks.

  full  the prediction plus the decoded residual (the codec's own output)
  pred  the prediction alone: the decoded residual is dropped in this block
  copy  the reference frame's co-located block (zero motion, no residual)

Why: the residual coder of the shipped codecs adds noise where a frame needs nothing (docs/results/rd.md,
"A static scene drifts as much"), and the noise integrates along the intra period. The sender
sees the source, so it can tell block by block whether the residual helps. The choice minimises
SSE + lambda * bits with lambda the P-frame rate weight the codec was trained with (2 beta),
the SSE weighted Y:U:V 6:1:1 as PSNR-YUV is.

Only the blocks that meet the picture are chosen and coded; those wholly in the padding (up to 63
rows and columns: 31 % of a 176x144 frame's 8x8 blocks) keep the codec's output, as without modes.
Nobody sees the padding: choosing there against the replicated edge took half the map's bits on a
176x144 probe and made the next frames' residuals dearer (`ModeMap`). (`pred` there instead left
the padding stale, and the residual analysis paid for it at the picture's border.)

Coding, after the frame's latents: the visible blocks' modes along the anti-diagonals from the top
left, each with the adaptive model of its context, the modes of its left and top neighbours
(counts start at 1 and grow by 4 per coded mode, after each anti-diagonal: every block of one
diagonal is coded in one call, so a 1080p map costs 374 calls, not 32,400). Maps are spatially
coherent (a still background copies, a moving face keeps its residual): against one pmf per frame
the maps took 7-35 % fewer bits on the probes (docs/results/rd.md, "The map is coded with adaptive
contexts": 292 -> 190 to 202 -> 187 bits per P-frame).
A stream says it carries modes, and their block size, in its header flags (`stream_flags`).
Every candidate is on the decoder's 8-bit grid, so any backend selecting with the same map
outputs the same frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mobilecodec.errors import BitstreamError, InputError
from mobilecodec.models.yuv import uint8_levels

MODES = ("full", "pred", "copy")
BLOCK_SIZES = (8, 16, 32)
#: precision of the mode frequencies the block choice prices modes with
PMF_PRECISION = 8
#: the map's adaptive context models: initial count, increment per coded mode, pmf precision
CONTEXT_INIT, CONTEXT_STEP, MAP_PRECISION = 1, 4, 16
#: Header flag bits 0-2 hold log2(block size) of the mode map (0: no map); no other bit is defined.
FLAG_MASK = 0x7


def stream_flags(block: int) -> int:
    """The header flags of a stream with a mode map of `block` (0: none)."""
    return 0 if not block else int(block).bit_length() - 1


def block_from_flags(flags: int) -> int:
    """The mode map's block size a stream's header flags say (0: none); BitstreamError for unknown flags."""
    if flags & ~FLAG_MASK:
        raise BitstreamError(f"header has flags 0x{flags:x}, but this decoder knows only the block-mode bits "
                             f"0x{FLAG_MASK:x} (corrupt stream, or made by a newer encoder)")
    if not flags:
        return 0
    block = 1 << flags
    if block not in BLOCK_SIZES:
        raise BitstreamError(f"header flags 0x{flags:x} name a block-mode size of {block} (allowed: "
                             f"{', '.join(map(str, BLOCK_SIZES))})")
    return block


@dataclass(frozen=True)
class BlockModeOptions:
    """The sender's block-mode search: block size (luma pixels) and the rate weight lambda
    (cost = SSE of the block in [0, 1] units, Y:U:V 6:1:1 per luma pixel, + lambda * bits)."""

    block: int
    lam: float

    def __post_init__(self) -> None:
        if self.block not in BLOCK_SIZES:
            raise InputError(f"block-mode size must be one of {', '.join(map(str, BLOCK_SIZES))}, got {self.block}")
        if not self.lam > 0:
            raise InputError(f"block-mode rate weight must be positive, got {self.lam}")

    @classmethod
    def for_checkpoint(cls, checkpoint: dict, block: int, where: str = "the checkpoint") -> BlockModeOptions:
        """lambda = 2 beta, the P-frame rate weight of training, from the beta the checkpoint records."""
        beta = checkpoint.get("beta")
        if beta is None:
            raise InputError(f"{where} does not record the beta it was trained with; block modes need it (code "
                             "without them: --block-modes 0)")  # the way out was not said (walk-through)
        return cls(block=block, lam=2.0 * float(beta))


def candidates(x_hat: torch.Tensor, pred: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(3, N, 6, H/2, W/2): the frame each mode outputs, on the 8-bit grid."""
    return torch.stack([uint8_levels(x_hat), uint8_levels(pred), uint8_levels(reference)])


@dataclass(frozen=True)
class ModeMap:
    """Where a frame's mode map lies: blocks of `block` luma pixels over the padded frame
    (`padded`, a multiple of 64: whole blocks); only the blocks that meet the `picture` (height,
    width before padding) are coded, the others are `full`."""

    block: int
    padded: tuple[int, int]
    picture: tuple[int, int]

    def __post_init__(self) -> None:
        (ph, pw), (h, w) = self.padded, self.picture
        if self.block not in BLOCK_SIZES or ph % self.block or pw % self.block:
            raise InputError(f"a {ph}x{pw} frame has no whole blocks of {self.block}")
        if not (0 < h <= ph and 0 < w <= pw) or h % 2 or w % 2:
            raise InputError(f"picture {h}x{w} does not fit the padded {ph}x{pw} frame")

    @property
    def shape(self) -> tuple[int, int]:
        """Blocks per column and row of the padded frame."""
        return self.padded[0] // self.block, self.padded[1] // self.block

    @property
    def visible(self) -> tuple[int, int]:
        """Blocks per column and row that meet the picture: the coded part of the map."""
        return -(-self.picture[0] // self.block), -(-self.picture[1] // self.block)

    def outside(self) -> np.ndarray:
        """The map of a frame before its blocks are chosen: `full` everywhere."""
        return np.full(self.shape, MODES.index("full"), dtype=np.int32)


def block_sse(diff: torch.Tensor, block: int) -> torch.Tensor:
    """Per-block SSE (..., H/B, W/B) of packed YUV420 differences (..., 6, H/2, W/2), weighted so
    that the sum over blocks is the frame's PSNR-YUV MSE times its luma pixel count."""
    se = diff.double().pow(2)
    lead = se.shape[:-3]
    se = se.reshape(-1, *se.shape[-3:])
    y = F.avg_pool2d(F.pixel_shuffle(se[:, :4], 2), block, divisor_override=1)[:, 0]
    uv = F.avg_pool2d(se[:, 4:], block // 2, divisor_override=1).sum(1)
    return ((6.0 * y + 4.0 * uv) / 8.0).reshape(*lead, *y.shape[-2:])


def choose(x: torch.Tensor, cands: torch.Tensor, opts: BlockModeOptions, geom: ModeMap) -> np.ndarray:
    """The mode of each block (H/B, W/B) int32 for one frame (batch of 1): SSE over the picture +
    lambda * the mode's bits under the frame's own mode frequencies, two passes (frequencies from
    the first); blocks outside the picture are `full`."""
    diff = cands - x.unsqueeze(0)
    h, w = geom.picture  # packed planes: one row/column per two luma rows/columns
    diff[..., h // 2:, :] = 0
    diff[..., :, w // 2:] = 0
    vh, vw = geom.visible
    sse = block_sse(diff, geom.block)[:, 0, :vh, :vw].numpy()  # (3, vh, vw)
    counts = np.full(len(MODES), max(sse[0].size / len(MODES), 1.0))  # even; not 0, 0, 0 for one block
    choice = np.zeros(sse.shape[1:], dtype=np.int32)
    for _ in range(2):
        bits = -np.log2(quantized_pmf(np.rint(counts).astype(np.int64)) / float(1 << PMF_PRECISION))
        choice = np.argmin(sse + opts.lam * bits[:, None, None], axis=0).astype(np.int32)  # ties: full first
        counts = np.bincount(choice.ravel(), minlength=len(MODES)).astype(np.float64)
    modes = geom.outside()
    modes[:vh, :vw] = choice
    return modes


def kept_latents(modes: np.ndarray, block: int, stride: int = 16) -> torch.Tensor:
    """(1, 1, H/stride, W/stride) bool: the latents (one per stride x stride luma pixels) with a
    `full` block in their cell or the cells around it, the reach of the synthesis. The others only
    shape blocks whose output the map drops, so the sender can code them as their mean."""
    full = torch.from_numpy((modes == MODES.index("full")).astype(np.float32))[None, None]
    luma = full.repeat_interleave(block, 2).repeat_interleave(block, 3)
    near = F.max_pool2d(luma, 2 * stride + 1, stride=1, padding=stride)
    return F.max_pool2d(near, stride) > 0


def quantized_pmf(counts: np.ndarray) -> np.ndarray:
    """Mode counts -> integer pmf summing to 2^PMF_PRECISION with every entry >= 1 (the rest of
    the rounding goes to the most frequent mode)."""
    total = 1 << PMF_PRECISION
    n = max(int(counts.sum()), 1)
    pmf = np.maximum(1, np.floor(counts.astype(np.float64) * (total - len(counts)) / n).astype(np.int64) + 1)
    pmf[int(np.argmax(counts))] += total - int(pmf.sum())
    return pmf


def apply(modes: np.ndarray, cands: torch.Tensor, block: int) -> torch.Tensor:
    """The frame the map selects (N=1, 6, H/2, W/2) from the candidates."""
    idx = torch.from_numpy(np.ascontiguousarray(modes, dtype=np.int64))
    idx = idx.repeat_interleave(block // 2, 0).repeat_interleave(block // 2, 1)  # half-resolution planes
    sel = F.one_hot(idx, len(MODES)).permute(2, 0, 1).to(cands.dtype)  # (3, H/2, W/2)
    return (cands * sel[:, None, None]).sum(0)


def _diagonals(rows: int, cols: int):
    """(rows, cols) index arrays of each anti-diagonal of a rows x cols map, from the top left."""
    for d in range(rows + cols - 1):
        i = np.arange(max(0, d - cols + 1), min(rows, d + 1))
        yield i, d - i


def _contexts(known: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Context 3 x left + top of blocks (i, j) from the modes coded so far (`known`: the map with a
    row and column of -1 before it); a missing neighbour takes the other's mode, or `full`."""
    left, top = known[i + 1, j], known[i, j + 1]
    left = np.where(left >= 0, left, np.where(top >= 0, top, 0))
    top = np.where(top >= 0, top, left)
    return 3 * left + top


def _context_pmfs(counts: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """Integer pmfs (n, symbols) summing to 2^MAP_PRECISION, every entry >= 1, from the context
    counts (the map's 3 modes; scripts/mode_map_entropy.py prices binary flags with it too)."""
    c = counts[ctx]
    total = 1 << MAP_PRECISION
    pmf = c * (total - c.shape[1]) // c.sum(1, keepdims=True) + 1
    pmf[np.arange(len(ctx)), np.argmax(c, 1)] += total - pmf.sum(1)
    return pmf


def _walk(visible: tuple[int, int], code, context=_contexts, contexts: int = len(MODES) ** 2,
          counts: np.ndarray | None = None) -> np.ndarray:
    """The context model over a map of `visible` blocks, anti-diagonal by anti-diagonal: `code(i,
    j, pmfs)` codes or decodes those blocks' modes with their pmfs and returns them; returns the
    visible map. The encoder and the decoder run this one walk, so their models cannot differ.
    `context(known, i, j)` -> context numbers below `contexts` (the coder's: `_contexts`; others
    for estimates such as scripts/mode_map_entropy.py). `counts` (contexts, 3): models to start
    from, updated in place (estimates; the coder starts every map from CONTEXT_INIT)."""
    vh, vw = visible
    known = np.full((vh + 1, vw + 1), -1, dtype=np.int64)
    if counts is None:
        counts = np.full((contexts, len(MODES)), CONTEXT_INIT, dtype=np.int64)
    for i, j in _diagonals(vh, vw):
        ctx = context(known, i, j)
        sym = code(i, j, _context_pmfs(counts, ctx))
        known[i + 1, j + 1] = sym
        np.add.at(counts, (ctx, sym), CONTEXT_STEP)
    return known[1:, 1:]


def encode(enc, modes: np.ndarray, geom: ModeMap) -> float:
    """Code the map's visible blocks (context-adaptive, along anti-diagonals); returns the bits
    it costs under the models it was coded with."""
    vh, vw = geom.visible
    expected = geom.outside()  # `full` outside the visible blocks, the map's own modes inside
    if modes.shape == geom.shape:
        expected[:vh, :vw] = modes[:vh, :vw]
    if not np.array_equal(modes, expected):
        raise ValueError(f"a mode map of {geom.shape} blocks with `full` outside the visible {geom.visible} expected")
    bits = 0.0

    def code(i: np.ndarray, j: np.ndarray, pmfs: np.ndarray) -> np.ndarray:
        nonlocal bits
        sym = modes[i, j]
        enc.encode_each(sym, pmfs, precision=MAP_PRECISION)
        bits -= float(np.log2(pmfs[np.arange(len(sym)), sym] / float(1 << MAP_PRECISION)).sum())
        return sym

    _walk(geom.visible, code)
    return bits


def decode(dec, geom: ModeMap) -> np.ndarray:
    """Read back a map coded by `encode` (the whole padded frame's: `full` outside the picture)."""
    vh, vw = geom.visible
    modes = geom.outside()
    modes[:vh, :vw] = _walk(geom.visible, lambda i, j, pmfs: dec.decode_each(pmfs, precision=MAP_PRECISION))
    return modes
