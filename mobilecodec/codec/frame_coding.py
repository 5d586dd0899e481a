"""Frame-level coding shared by encoder and decoder.

Encoder and decoder run the very same synthesis path (`run_iframe` / `run_pframe`), fed with the
frame's quantized latents by a `LatentEncoder` (analyses the frame and writes the symbols) or a
`LatentDecoder` (reads them back). Entropy parameters come from the exact-integer hyper-synthesis applied to the transmitted
hyper-latents only, so any backend derives the same CDF indices (DESIGN.md, "Decodable anywhere").
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from mobilecodec.codec import block_modes
from mobilecodec.codec.networks import Networks, TorchNetworks
from mobilecodec.codec.refine import RefineOptions, RefineResult, refine_latent
from mobilecodec.codec.sender import SenderTail
from mobilecodec.entropy.coder import RangeDecoder, RangeEncoder
from mobilecodec.entropy.gaussian import COMPILED_MIN_SYMBOLS
from mobilecodec.models.buffer import Buffer
from mobilecodec.models.codec import VideoCodec
from mobilecodec.models.yuv import uint8_levels


@dataclass
class RateStats:
    """Estimated information content of one frame's symbols (bits).

    `table_bits` (exact, from the integer CDF tables the coder uses) is always computed;
    `model_bits` (the continuous Gaussian likelihoods through erfc, a diagnostic of the table
    quantization) costs a pass over every latent, so it is computed only when first read.
    """

    table_bits: float = 0.0  # from the integer CDF tables actually used by the coder
    per_part: dict[str, float] = field(default_factory=dict)
    _model_bits: float = field(default=0.0, repr=False)
    _pending: list[Callable[[], float]] = field(default_factory=list, repr=False)

    @property
    def model_bits(self) -> float:
        """Bits under the continuous likelihoods (Gaussian with the table scale), on demand."""
        while self._pending:
            self._model_bits += self._pending.pop(0)()
        return self._model_bits

    def add_model_bits(self, bits: float | Callable[[], float]) -> None:
        """Add known bits, or a function computing them when `model_bits` is read."""
        if callable(bits):
            self._pending.append(bits)
        else:
            self._model_bits += bits


def step_timer(clock) -> Callable:
    """`clock.step` (a context manager per step name), or a no-op without a clock (host steps of every backend time through it)."""
    return clock.step if clock is not None else (lambda name: contextlib.nullcontext())


class HyperpriorCoder:
    """The entropy side of one autoencoder (I-frame, motion or residual). Cheap to create per
    frame: the entropy tables are validated and their constriction models built once per model
    (`CodingTables`, cached on the entropy modules), the integer hyper-synthesis once per model."""

    def __init__(self, model: VideoCodec, prefix: str) -> None:
        self.prefix = prefix
        self.model = model
        self.prior = getattr(model, f"{prefix}_z_prior")
        self.int_hyper = model.int_hyper(prefix)
        self.gaussian = model.gaussian
        self.frac = 2.0 ** -self.int_hyper.mean_frac_bits

    def params(self, z_int: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        means_q, idx = self.int_hyper(z_int)
        return means_q.astype(np.float64) * self.frac, idx

    def encode(self, y: torch.Tensor, enc: RangeEncoder, stats: RateStats, clock=None,
               refine: Callable[[torch.Tensor, np.ndarray, np.ndarray], torch.Tensor] | None = None) -> torch.Tensor:
        """Hyper-analysis in PyTorch, then `encode_latents`; returns y_hat."""
        z = getattr(self.model, f"{self.prefix}_hyper_analysis")(y)
        return self.encode_latents(y.numpy(), z.numpy(), enc, stats, clock=clock,
                                   refine=None if refine is None else lambda m, i: refine(y, m, i).numpy())

    def encode_latents(self, y: np.ndarray, z: np.ndarray, enc: RangeEncoder, stats: RateStats,
                       clock=None, refine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> torch.Tensor:
        """Code a latent and its hyper-latent computed by any backend (PyTorch, ONNX, QNN): round
        and code z, derive entropy parameters from the integer z only, code y; returns y_hat.
        `clock` (optional) times the entropy coding and the integer hyper-synthesis apart.
        `refine(mean, idx)` (optional) returns the latent to code in place of y under those
        entropy parameters (sender-side refinement, `codec.refine`)."""
        step = step_timer(clock)
        with step("host: entropy coding"):
            z_int = self._z_symbols(z)
            self.prior.encode(enc, z_int)
        with step("host: integer hyper-synthesis"):
            mean, idx = self.params(z_int)
        if refine is not None:
            y = refine(mean, idx)
        with step("host: entropy coding"):
            sym = self._y_symbols(y, mean, idx)
            yb = self.gaussian.encode(enc, sym.ravel(), idx.ravel())
            zb = self.prior.bits(z_int)
            stats.table_bits += zb + yb
            stats.add_model_bits(zb)
            stats.add_model_bits(lambda: self._model_bits(sym, idx))  # only if someone reads it
            stats.per_part[f"{self.prefix}_z"] = zb
            stats.per_part[f"{self.prefix}_y"] = yb
            return self._y_hat(sym, mean)

    def quantize(self, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        """What `encode` would code for y, without a coder: (y_hat, bits of z and y under the tables)."""
        z_int = self._hyper_symbols(y)
        mean, idx = self.params(z_int)
        sym = self._y_symbols(y.numpy(), mean, idx)
        return self._y_hat(sym, mean), self.prior.bits(z_int) + self.gaussian.bits(sym.ravel(), idx.ravel())

    def entropy_params(self, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The entropy parameters (mean, scale index) both sides derive for y, as `encode` does: for
        analyses of the latent beside the coder's grid (`scripts/latent_ceiling.py`)."""
        return self.params(self._hyper_symbols(y))

    def _hyper_symbols(self, y: torch.Tensor) -> np.ndarray:
        return self._z_symbols(getattr(self.model, f"{self.prefix}_hyper_analysis")(y).numpy())

    def dequantize(self, y: Any, mean: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        """The latent the decoder reconstructs when y is coded under the entropy parameters (mean, idx)."""
        return self._y_hat(self._y_symbols(np.asarray(y), mean, idx), mean)

    def _z_symbols(self, z: np.ndarray) -> np.ndarray:
        return self.prior.clamp_symbols(np.rint(np.asarray(z, dtype=np.float64)))

    def _y_symbols(self, y: np.ndarray, mean: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return self.gaussian.clamp_symbols(np.rint(np.asarray(y, dtype=np.float64) - mean), idx)

    def decode(self, dec: RangeDecoder, latent_shape: tuple[int, ...], z_shape: tuple[int, ...],
               clock=None) -> torch.Tensor:
        """Decode z, derive the entropy parameters in integers, decode y; returns y_hat. `clock`
        (optional, with a `step(name)` context manager) times the entropy decoding and the
        integer hyper-synthesis apart (the runtime profiler)."""
        step = step_timer(clock)
        with step("host: entropy coding"):
            z_int = self.prior.decode(dec, z_shape)
        with step("host: integer hyper-synthesis"):
            means_q, idx = self.int_hyper(np.asarray(z_int).reshape(z_shape))
        with step("host: entropy coding"):
            sym = self.gaussian.decode(dec, idx.ravel()).reshape(latent_shape)
            if sym.size >= COMPILED_MIN_SYMBOLS:  # the same float64 expression, one pass
                from mobilecodec.entropy.compiled import dequantize

                return torch.from_numpy(dequantize(sym, means_q, self.frac))
            return self._y_hat(sym, means_q.astype(np.float64) * self.frac)

    @staticmethod
    def _y_hat(sym: np.ndarray, mean: np.ndarray) -> torch.Tensor:
        """float32(float64(symbol) + mean): the reconstructed latent, identical on both sides."""
        return torch.from_numpy((sym.astype(np.float64) + mean).astype(np.float32))

    def _model_bits(self, sym: np.ndarray, idx: np.ndarray) -> float:
        scale = torch.from_numpy(self.gaussian.table.scales()[idx])
        lik = self.gaussian.likelihood(torch.from_numpy(sym.astype(np.float64)), scale)
        return float(-torch.log2(lik).sum())


class BlockModeSender:
    """The sender's side of the P-frame block modes (`codec.block_modes`), for the encoder of any
    backend: which residual latents a trial of the frame leaves unused, then the modes of the
    coded frame, chosen against the source and coded into the frame's payload."""

    def __init__(self, opts: block_modes.BlockModeOptions, x: Any, picture: tuple[int, int] | None,
                 enc: RangeEncoder, stats: RateStats, clock=None) -> None:
        self.opts, self.x = opts, torch.as_tensor(x)
        padded = (2 * self.x.shape[-2], 2 * self.x.shape[-1])  # x: packed YUV420, half the luma size
        self.geom = block_modes.ModeMap(opts.block, padded, picture or padded)
        self.enc, self.stats, self.clock = enc, stats, clock
        self.counts: list[int] | None = None  # blocks per mode of this frame, once chosen

    def keep_or_mean(self, trial: Any, pred: Any, reference: Any, y: Any, mean: np.ndarray) -> np.ndarray:
        """The residual latent to code, from a trial of the frame (y quantized under the frame's
        entropy parameters and synthesized, not coded): the latents that reach a block the trial
        keeps whole are coded as they are; the others only shape blocks the map would drop, so
        they are coded as their means (symbol 0): their bits would buy nothing."""
        cands = block_modes.candidates(torch.as_tensor(trial), torch.as_tensor(pred), torch.as_tensor(reference))
        modes = block_modes.choose(self.x, cands, self.opts, self.geom)
        return np.where(block_modes.kept_latents(modes, self.opts.block).numpy(), np.asarray(y), mean)

    def select(self, x_hat: Any, pred: Any, reference: torch.Tensor) -> torch.Tensor:
        """Choose each block's mode, code the map, and return the frame it selects."""
        cands = block_modes.candidates(torch.as_tensor(x_hat), torch.as_tensor(pred), reference)
        modes = block_modes.choose(self.x, cands, self.opts, self.geom)
        with step_timer(self.clock)("host: entropy coding"):
            bits = block_modes.encode(self.enc, modes, self.geom)
        self.stats.table_bits += bits
        self.stats.add_model_bits(bits)
        self.stats.per_part["modes"] = bits
        vh, vw = self.geom.visible  # the chosen blocks: those that meet the picture
        self.counts = np.bincount(modes[:vh, :vw].ravel(), minlength=len(block_modes.MODES)).tolist()
        return block_modes.apply(modes, cands, self.geom.block)


class LatentEncoder(SenderTail):
    """Produces latents by analysing the input frame and entropy-coding them. `clock` (optional,
    e.g. `mobilecodec.runtime.engine.StepClock`) times the host steps (motion search, entropy
    coding, integer hyper-synthesis)."""

    def __init__(self, model: VideoCodec, x: torch.Tensor, clock=None, refine: RefineOptions | None = None,
                 modes: block_modes.BlockModeOptions | None = None,
                 picture: tuple[int, int] | None = None) -> None:
        self.model, self.x = model, x
        self.enc = RangeEncoder()
        self.stats = RateStats()
        self.clock = clock
        # the block-mode search (codec.block_modes), None: off; `picture` is the frame's (height,
        # width) before padding, where the modes are chosen and refinement measures (None: x's)
        self.modes = None if modes is None else BlockModeSender(modes, x, picture, self.enc, self.stats, clock)
        self.picture = picture  # where refinement measures the distortion too
        self.refine = refine
        self.refined: dict[str, RefineResult] = {}  # what refinement did, per latent prefix
        # The P-frame's reference buffer, given by the engine before a P-step: motion refinement
        # scores a motion latent by the whole P-step it leads to.
        self.buffer: Buffer | None = None

    def _refiner(self, prefix: str, synth, rate_factor: float, exact=None):
        """The `HyperpriorCoder.encode` refine callback for latent `prefix` (None: no refinement)."""
        if self.refine is None:
            return None
        opts = self.refine

        def run(y: torch.Tensor, mean: np.ndarray, idx: np.ndarray) -> torch.Tensor:
            best, res = refine_latent(y, mean, idx, self.model.gaussian, synth, self.x, rate_factor * opts.beta, opts,
                                      exact_synth=exact, picture=self.picture)
            self.refined[prefix] = res
            return best
        return run

    def iframe(self) -> torch.Tensor:
        y = self.model.i_analysis(self.x)
        refine = self._refiner("i", lambda y_hat: (self.model.i_synthesis(y_hat)[0], 0.0), 1.0)
        return HyperpriorCoder(self.model, "i").encode(y, self.enc, self.stats, clock=self.clock, refine=refine)

    def motion(self, reference: torch.Tensor, flow_pred: torch.Tensor) -> torch.Tensor:
        with step_timer(self.clock)("host: motion search"):  # sender-side block matching, if any
            hint = self.model.motion_hint(self.x, reference, flow_pred)
        m = self.model.m_analysis(self.x, reference, hint)
        refine = None
        if self.refine is not None and self.refine.motion and self.buffer is not None:
            synth, exact = self._motion_cost(flow_pred)
            refine = self._refiner("m", synth, self.refine.p_rate_factor, exact=exact)
        return HyperpriorCoder(self.model, "m").encode(m, self.enc, self.stats, clock=self.clock, refine=refine)

    def _motion_cost(self, flow_pred: torch.Tensor):
        """(differentiable, exact) scores of a motion latent: the P-step it leads to, with the
        residual's bits as extra bits (the residual from its analysis, before its own refinement)."""
        model, buf, x = self.model, self.buffer, self.x

        def prediction(m_hat: torch.Tensor):
            flow, _ = model.decoded_motion(*model.m_synthesis(m_hat, flow_pred))
            warped = model.warp(buf, flow)
            return model.predict(warped), model.condition(warped)

        def synth(m_hat: torch.Tensor):
            pred, cond = prediction(m_hat)
            r_hat, lik = model.hyperprior("r", model.r_analysis(x, pred, *cond))
            return model.r_synthesis(r_hat, pred, *cond)[0], sum(-torch.log2(v).sum() for v in lik.values())

        def exact(m_hat: torch.Tensor):
            pred, cond = prediction(m_hat)
            r_hat, bits = HyperpriorCoder(model, "r").quantize(model.r_analysis(x, pred, *cond))
            return model.r_synthesis(r_hat, pred, *cond)[0], bits
        return synth, exact

    def residual(self, pred: torch.Tensor, cond: tuple[torch.Tensor, ...]) -> torch.Tensor:
        r = self.model.r_analysis(self.x, pred, *cond)
        factor = self.refine.p_rate_factor if self.refine is not None else 1.0
        refine = self._refiner("r", lambda r_hat: (self.model.r_synthesis(r_hat, pred, *cond)[0], 0.0), factor)
        if self.modes is not None and self.buffer is not None and "frame" in self.buffer:
            refine = self._drop_unused(pred, cond, refine)
        return HyperpriorCoder(self.model, "r").encode(r, self.enc, self.stats, clock=self.clock, refine=refine)

    def _drop_unused(self, pred: torch.Tensor, cond: tuple[torch.Tensor, ...], inner=None):
        """With block modes: the `encode` refine callback of `BlockModeSender.keep_or_mean`, from a
        trial of this P-frame on the PyTorch model; with latent refinement (`inner`) the trial is
        of the refined latent."""
        coder = HyperpriorCoder(self.model, "r")

        def run(y: torch.Tensor, mean: np.ndarray, idx: np.ndarray) -> torch.Tensor:
            if inner is not None:
                y = inner(y, mean, idx)
            trial = self.model.r_synthesis(coder.dequantize(y.numpy(), mean, idx), pred, *cond)[0]
            return torch.from_numpy(self.modes.keep_or_mean(trial, pred, self.buffer["frame"], y.numpy(), mean))
        return run


class LatentDecoder:
    """Produces latents by entropy-decoding a frame payload."""

    def __init__(self, model: VideoCodec, payload: bytes, height: int, width: int, clock=None,
                 mode_map: block_modes.ModeMap | None = None) -> None:
        self.model = model
        self.dec = RangeDecoder(payload)
        self.shapes = model.latent_shapes(height, width)
        self.mode_map = mode_map  # where the P-frames' mode maps lie (header flags and size), None: no maps
        self.clock = clock  # optional step timer (runtime.engine.StepClock)
        self._ready: dict[str, torch.Tensor] | None = None

    def prefetch(self, iframe: bool) -> "LatentDecoder":
        """Decode every latent of the frame now (an I-frame's, or a P-frame's motion then residual
        latents) and check the payload's end: it depends on nothing but the payload, so a decoder
        can run it for the next frame while the networks run this one (`decode_video`)."""
        self.clock = None  # runs off the caller's thread: keep out of the caller's step clock
        prefixes = ["i"] if iframe else (["m"] if self.model.cfg.uses_motion else []) + ["r"]
        self._ready = {p: self._decode(p) for p in prefixes}
        if not iframe and self.mode_map is not None:
            self._ready["modes"] = block_modes.decode(self.dec, self.mode_map)
        self.dec.finish()
        return self

    def _decode(self, prefix: str) -> torch.Tensor:
        if self._ready is not None:
            if prefix not in self._ready:
                raise ValueError(f"latent {prefix!r} was not prefetched")
            return self._ready.pop(prefix)
        lat, z = self.shapes[prefix]
        return HyperpriorCoder(self.model, prefix).decode(self.dec, lat, z, clock=self.clock)

    def iframe(self) -> torch.Tensor:
        return self._decode("i")

    def motion(self, reference: torch.Tensor, flow_pred: torch.Tensor) -> torch.Tensor:
        return self._decode("m")

    def residual(self, pred: torch.Tensor, cond: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self._decode("r")

    def select_blocks(self, x_hat: torch.Tensor, pred, reference: torch.Tensor) -> torch.Tensor:
        """The frame the stream's mode map selects (x_hat unchanged for a stream without maps)."""
        if self.mode_map is None:
            return x_hat
        if self._ready is not None:
            modes = self._ready.pop("modes")
        else:
            with step_timer(self.clock)("host: entropy coding"):
                modes = block_modes.decode(self.dec, self.mode_map)
        cands = block_modes.candidates(torch.as_tensor(x_hat), torch.as_tensor(pred), reference)
        return block_modes.apply(modes, cands, self.mode_map.block)

    def finish(self) -> None:
        if self._ready is None:
            self.dec.finish()


@torch.no_grad()
def run_iframe(model: VideoCodec, source) -> tuple[torch.Tensor, Buffer]:
    """I-frame synthesis from the source's latent; returns (reconstruction, new buffer)."""
    return iframe_steps(TorchNetworks(model), source)


@torch.no_grad()
def run_pframe(model: VideoCodec, buf: Buffer, source) -> tuple[torch.Tensor, Buffer]:
    """One P-frame step (motion prediction, motion decoding, warp, residual decoding)."""
    return pframe_steps(TorchNetworks(model), buf, source)


def iframe_steps(nets: Networks, source) -> tuple[torch.Tensor, Buffer]:
    """The I-frame step sequence, whichever backend runs the sub-networks `nets` (PyTorch here,
    the package's graphs in `mobilecodec.runtime.graph_networks`), so every backend codes alike."""
    x_hat, feat = nets.synthesize_iframe(source.iframe())
    buf = nets.initial_buffer(x_hat, feat)
    return output_frame(buf, x_hat), buf


def pframe_steps(nets: Networks, buf: Buffer, source) -> tuple[torch.Tensor, Buffer]:
    """The P-frame step sequence, whichever backend runs the sub-networks `nets`."""
    flow = motion_feat = None
    if nets.uses_motion:
        flow_pred = nets.predict_flow(buf)
        m_hat = source.motion(nets.motion_reference(buf), flow_pred)
        flow, motion_feat = nets.synthesize_motion(m_hat, flow_pred)
    warped = nets.warp(buf, flow)
    pred = nets.predict(warped)
    cond = nets.condition(warped)
    x_hat, res_feat = nets.synthesize_residual(source.residual(pred, cond), pred, cond)
    select = getattr(source, "select_blocks", None)  # block modes (codec.block_modes)
    if select is not None and "frame" in buf:
        x_hat = select(x_hat, pred, buf["frame"])
    if flow is None:
        flow, motion_feat = nets.no_motion(buf)
    new_buf = nets.make_buffer(x_hat, res_feat, flow, motion_feat)
    return output_frame(new_buf, x_hat), new_buf


def output_frame(buf: Buffer, x_hat: torch.Tensor) -> torch.Tensor:
    """The decoded frame (uint8 levels): the buffered frame when it exists, else x_hat rounded."""
    if "frame" in buf:
        return buf["frame"]
    return uint8_levels(x_hat)
