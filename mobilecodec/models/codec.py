"""The whole codec as one nn.Module: every network stage, the entropy models, and the training
forward passes for I- and P-frames. Coding (real bits) lives in `mobilecodec.codec`."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from mobilecodec.entropy.factorized import FactorizedPrior
from mobilecodec.entropy.gaussian import GaussianConditional
from mobilecodec.entropy.scale_table import ScaleTable
from mobilecodec.models.buffer import Buffer, buffer_layout, snap_to_storage
from mobilecodec.models.configs import AEConfig, CodecConfig
from mobilecodec.models.hyperprior import HyperAnalysis, HyperSynthesis
from mobilecodec.models.iframe import YUV_CHANNELS, IFrameAnalysis, IFrameSynthesis
from mobilecodec.models.layers import fan_in_init
from mobilecodec.models.motion_search import block_match
from mobilecodec.models.pframe import (MotionAnalysis, MotionPredictor, MotionSynthesis, ResidualAnalysis,
                                       ResidualPredictor, ResidualSynthesis)
from mobilecodec.models.warp import warp_features, warp_frame
from mobilecodec.models.yuv import quantize_to_uint8_levels, uint8_levels
from mobilecodec.tensors import state_digest

AE_PREFIXES = ("i", "m", "r")  # I-frame, motion and residual autoencoders


class TensorStore(nn.Module):
    """A bag of integer arrays kept as buffers; loading a state dict accepts whatever it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def set(self, arrays: dict[str, np.ndarray]) -> None:
        for name in list(self._buffers):
            del self._buffers[name]
        for k, v in arrays.items():
            self.register_buffer(k.replace(".", "__"), torch.from_numpy(np.ascontiguousarray(v)))
        self.version += 1

    def arrays(self) -> dict[str, np.ndarray]:
        return {k.replace("__", "."): v.cpu().numpy() for k, v in self._buffers.items()}

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        mine = {k[len(prefix):]: v for k, v in state_dict.items()
                if k.startswith(prefix) and "." not in k[len(prefix):]}
        self.set({k.replace("__", "."): v.cpu().numpy() for k, v in mine.items()})


class VideoCodec(nn.Module):
    """MobileNVC-style YUV420 codec: hyperprior I-frame AE; P-frame motion predictor, motion AE,
    warp of the buffered reference, residual AE; HyTIP explicit/implicit/hybrid buffering."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = buffer_layout(cfg)
        names = [e.name for e in self.layout]
        self.has_frame = "frame" in names
        self.has_flow = "flow" in names
        cm = cfg.implicit_motion_channels if "motion_feat" in names else 0
        cr = cfg.implicit_residual_channels if "residual_feat" in names else 0
        self.motion_feat_channels, self.residual_feat_channels = cm, cr
        warp_channels = (YUV_CHANNELS if self.has_frame else 0) + cr
        cond = warp_channels if cfg.conditional else 0
        block = cfg.warp.block_size

        self.i_analysis = IFrameAnalysis(cfg.iframe)
        self.i_synthesis = IFrameSynthesis(cfg.iframe, cr)
        self._hyper("i", cfg.iframe)
        if cfg.uses_motion:
            self.motion_predictor = MotionPredictor(cfg.predictor, (2 if self.has_flow else 0) + cm, self.has_flow)
            ref_channels = YUV_CHANNELS if self.has_frame else cr
            self.m_analysis = MotionAnalysis(cfg.motion, ref_channels, block)
            self.m_synthesis = MotionSynthesis(cfg.motion, block, cm)
            self._hyper("m", cfg.motion)
        if not self.has_frame:
            self.r_predictor = ResidualPredictor(cr)
        self.r_analysis = ResidualAnalysis(cfg.residual, cond)
        self.r_synthesis = ResidualSynthesis(cfg.residual, cond, cr)
        self._hyper("r", cfg.residual)
        self.gaussian = GaussianConditional(ScaleTable(cfg.scale_min, cfg.scale_max, cfg.scale_levels))
        # Training only: prefixes ("m", "r", "i") whose synthesis sees the noisy latent y + U(-.5, .5)
        # instead of the straight-through rounded one (set from StageConfig.noisy_synthesis by GopLoss)
        self.noisy_synthesis: tuple[str, ...] = ()

    #: Every trainable top-level network a config may have (which ones exist depends on the config).
    NETWORKS = ("i_analysis", "i_synthesis", "i_hyper_analysis", "i_hyper_synthesis", "i_z_prior",
                "motion_predictor", "m_analysis", "m_synthesis", "m_hyper_analysis", "m_hyper_synthesis",
                "m_z_prior", "r_predictor", "r_analysis", "r_synthesis", "r_hyper_analysis",
                "r_hyper_synthesis", "r_z_prior")
    #: the networks an I-frame runs through (all a GOP of one frame trains)
    IFRAME_NETWORKS = tuple(n for n in NETWORKS if n.startswith("i_"))
    #: Networks `reinit` may re-initialise (the analysis/synthesis transforms and the predictor;
    #: hyperprior networks and priors keep their own initialisation).
    REINIT_NETWORKS = ("motion_predictor", "m_analysis", "m_synthesis", "r_predictor", "r_analysis", "r_synthesis")

    def networks(self, names: tuple[str, ...] = NETWORKS) -> tuple[str, ...]:
        """Those of `names` this model has (a config without a residual predictor has no r_predictor)."""
        return tuple(n for n in names if hasattr(self, n))

    def reinit(self, names: tuple[str, ...] | list[str]) -> None:
        """Re-initialise the networks `names` (of REINIT_NETWORKS) with a variance-preserving
        initialisation (`layers.fan_in_init`); the motion predictor's correction starts at zero,
        so the first predicted flow is the buffered flow."""
        from mobilecodec.errors import InputError

        for name in names:
            if name not in self.REINIT_NETWORKS or not hasattr(self, name):
                have = self.networks(self.REINIT_NETWORKS)
                raise InputError(f"cannot re-initialise {name!r}; this model's networks: {', '.join(have)}")
            net = getattr(self, name)
            fan_in_init(net, zero=(net.out,) if name == "motion_predictor" else ())

    def _hyper(self, prefix: str, ae: AEConfig) -> None:
        setattr(self, f"{prefix}_hyper_analysis", HyperAnalysis(ae.latent, ae.hyper))
        setattr(self, f"{prefix}_hyper_synthesis", HyperSynthesis(ae.latent, ae.hyper))
        setattr(self, f"{prefix}_z_prior", FactorizedPrior(ae.hyper.latent, max_support=self.cfg.z_bound))
        setattr(self, f"{prefix}_int_hyper", TensorStore())

    # --- entropy coding tables --------------------------------------------------------------

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the entropy models for coding: integer CDF tables of the hyper-latent priors and
        the exact-integer hyper-synthesis parameters, stored as buffers (so they travel inside
        checkpoints and every backend uses the very same integers)."""
        from mobilecodec.entropy.int_hyper import IntegerHyperSynthesis

        for p in self.ae_prefixes():
            getattr(self, f"{p}_z_prior").update()
            ih = IntegerHyperSynthesis.from_float(getattr(self, f"{p}_hyper_synthesis"), z_bound=self.cfg.z_bound,
                                                  num_levels=self.cfg.scale_levels)
            getattr(self, f"{p}_int_hyper").set(ih.state())

    @property
    def ready_for_coding(self) -> bool:
        """True once `update()` has run (or a checkpoint with coding tables was loaded)."""
        return all(len(getattr(self, f"{p}_int_hyper").arrays()) > 0 for p in self.ae_prefixes())

    def int_hyper(self, prefix: str):
        """The exact-integer hyper-synthesis of autoencoder `prefix` ('i', 'm' or 'r')."""
        from mobilecodec.entropy.int_hyper import IntegerHyperSynthesis

        cache = self.__dict__.setdefault("_int_hyper_cache", {})
        store = getattr(self, f"{prefix}_int_hyper")
        key = (prefix, store.version)
        if key not in cache:
            cache[key] = IntegerHyperSynthesis.from_state(store.arrays())
        return cache[key]

    # --- structure ------------------------------------------------------------------------

    def stages(self) -> "OrderedDict[str, nn.Module]":
        """Every network stage by name (the units aimet quantizes and export turns into graphs)."""
        names = ["i_analysis", "i_hyper_analysis", "i_hyper_synthesis", "i_synthesis", "motion_predictor",
                 "m_analysis", "m_hyper_analysis", "m_hyper_synthesis", "m_synthesis", "r_predictor",
                 "r_analysis", "r_hyper_analysis", "r_hyper_synthesis", "r_synthesis"]
        return OrderedDict((n, getattr(self, n)) for n in names if hasattr(self, n))

    def ae_prefixes(self) -> tuple[str, ...]:
        return tuple(p for p in AE_PREFIXES if hasattr(self, f"{p}_hyper_synthesis"))

    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """(latent shape, hyper-latent shape) per autoencoder for a padded frame of height x width."""
        out = {}
        for p in self.ae_prefixes():
            ae = {"i": self.cfg.iframe, "m": self.cfg.motion, "r": self.cfg.residual}[p]
            out[p] = ((1, ae.latent, height // 16, width // 16), (1, ae.hyper.latent, height // 64, width // 64))
        return out

    def example_inputs(self, height: int, width: int) -> "OrderedDict[str, tuple[torch.Tensor, ...]]":
        """Zero inputs of the right shapes for every stage at a padded frame size (for tracing,
        export and complexity counting)."""
        h2, w2 = height // 2, width // 2
        b = self.cfg.warp.block_size
        hb, wb = height // b, width // b
        x = torch.zeros(1, YUV_CHANNELS, h2, w2)
        lat = self.latent_shapes(height, width)
        ex: OrderedDict[str, tuple[torch.Tensor, ...]] = OrderedDict()
        ex["i_analysis"] = (x,)
        ex["i_hyper_analysis"] = (torch.zeros(lat["i"][0]),)
        ex["i_hyper_synthesis"] = (torch.zeros(lat["i"][1]),)
        ex["i_synthesis"] = (torch.zeros(lat["i"][0]),)
        warp_channels = (YUV_CHANNELS if self.has_frame else 0) + self.residual_feat_channels
        cond = (torch.zeros(1, warp_channels, h2, w2),) if self.cfg.conditional else ()
        if self.cfg.uses_motion:
            ms = (2 if self.has_flow else 0) + self.motion_feat_channels
            ex["motion_predictor"] = (torch.zeros(1, ms, hb, wb),)
            ref_c = YUV_CHANNELS if self.has_frame else self.residual_feat_channels
            ex["m_analysis"] = (x, torch.zeros(1, ref_c, h2, w2), torch.zeros(1, 2, hb, wb))
            ex["m_hyper_analysis"] = (torch.zeros(lat["m"][0]),)
            ex["m_hyper_synthesis"] = (torch.zeros(lat["m"][1]),)
            ex["m_synthesis"] = (torch.zeros(lat["m"][0]), torch.zeros(1, 2, hb, wb))
        if hasattr(self, "r_predictor"):
            ex["r_predictor"] = (torch.zeros(1, self.residual_feat_channels, h2, w2),)
        ex["r_analysis"] = (x, x) + cond
        ex["r_hyper_analysis"] = (torch.zeros(lat["r"][0]),)
        ex["r_hyper_synthesis"] = (torch.zeros(lat["r"][1]),)
        ex["r_synthesis"] = (torch.zeros(lat["r"][0]), x) + cond
        return ex

    def frame_io(self) -> dict[str, tuple[tuple[str, ...], bool]]:
        """Per stage: the inputs that carry a frame in [0, 1] (argument names), and whether its
        first output is the reconstructed frame produced by one layer alone (clamped to [0, 1]
        after it). Quantization gives these the frame's own grid instead of a calibrated range."""
        io: dict[str, tuple[tuple[str, ...], bool]] = {
            "i_analysis": (("x",), False),
            # with implicit buffering the I-frame's last conv also makes the residual features
            "i_synthesis": ((), self.residual_feat_channels == 0),
            "r_analysis": (("x", "pred") if self.has_frame else ("x",), False),
            "r_synthesis": (("pred",) if self.has_frame else (), True),
        }
        if self.cfg.uses_motion:
            io["m_analysis"] = (("x", "ref") if self.has_frame else ("x",), False)
        return io

    def weights_hash(self) -> bytes:
        """16-byte digest of every parameter and buffer (names, dtypes, shapes, values)."""
        return state_digest(self.state_dict())

    # --- buffer helpers (shared by training and coding: same ops, same order) ---------------

    def initial_buffer(self, x_hat: torch.Tensor, residual_feat: torch.Tensor) -> Buffer:
        """Buffer after an I-frame: its reconstruction (and features); zero flow and motion features."""
        n, _, h2, w2 = x_hat.shape
        b = self.cfg.warp.block_size
        hb, wb = 2 * h2 // b, 2 * w2 // b
        flow = x_hat.new_zeros(n, 2, hb, wb)
        motion_feat = x_hat.new_zeros(n, self.motion_feat_channels, hb, wb)
        return self.make_buffer(x_hat, residual_feat, flow, motion_feat)

    def no_motion(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(zero block flow, empty motion features) on the block grid of the buffered `ref`: what a
        P-step without motion coding (warp 'none') stores in the buffer."""
        b = self.cfg.warp.block_size
        flow = ref.new_zeros(1, 2, 2 * ref.shape[2] // b, 2 * ref.shape[3] // b)
        return flow, ref.new_zeros(1, 0, *flow.shape[2:])

    def make_buffer(self, x_hat: torch.Tensor, residual_feat: torch.Tensor, flow: torch.Tensor,
                    motion_feat: torch.Tensor) -> Buffer:
        """The buffer entries this config keeps; the frame is stored at uint8 levels, exactly
        as the decoder outputs it."""
        frame = quantize_to_uint8_levels(x_hat) if x_hat.requires_grad else uint8_levels(x_hat)
        values = {"frame": frame, "flow": flow, "motion_feat": motion_feat,
                  "residual_feat": residual_feat}
        return Buffer({e.name: values[e.name] if e.name == "frame" else snap_to_storage(e.name, values[e.name])
                       for e in self.layout})

    @staticmethod
    def decoded_motion(flow: torch.Tensor, motion_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The motion synthesis outputs on their storage grids (`snap_to_storage`): the flow the
        warp uses and the buffer keeps. Every backend's P-step calls this on its m_synthesis outputs."""
        return snap_to_storage("flow", flow), snap_to_storage("motion_feat", motion_feat)

    def motion_state(self, buf: Buffer) -> torch.Tensor:
        parts = [buf[n] for n in ("flow", "motion_feat") if n in buf]
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def motion_reference(self, buf: Buffer) -> torch.Tensor:
        return buf["frame"] if self.has_frame else buf["residual_feat"]

    def motion_search(self, x: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`block_match(reference, x)` (vectors, confident) with this config's block and radius,
        or None when cfg.motion_hint is "none"."""
        if self.cfg.motion_hint == "none":
            return None
        return block_match(reference, x, self.cfg.warp.block_size, self.cfg.motion_search_radius)

    def motion_hint(self, x: torch.Tensor, reference: torch.Tensor, flow_pred: torch.Tensor,
                    search: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The block-flow input of the motion analysis (sender only): the predicted flow, or with
        cfg.motion_hint "block_match" the block-matching motion of x against the buffered frame
        minus the predicted flow (the correction the motion AE should code; with
        cfg.motion_hint_confident_only, 0 for blocks whose vector does not beat zero motion).
        `search`: a `motion_search(x, reference)` result already at hand."""
        if self.cfg.motion_hint == "none":
            return flow_pred
        vectors, confident = search if search is not None else self.motion_search(x, reference)
        if self.cfg.motion_hint_confident_only:
            return torch.where(confident, vectors - flow_pred, torch.zeros_like(flow_pred))
        return vectors - flow_pred

    def warp(self, buf: Buffer, flow: torch.Tensor | None) -> torch.Tensor:
        """Warp the buffered frame and/or residual features with the decoded block flow."""
        parts = []
        if self.has_frame:
            parts.append(buf["frame"] if flow is None else warp_frame(buf["frame"], flow, self.cfg.warp))
        if "residual_feat" in buf:
            f = buf["residual_feat"]
            parts.append(f if flow is None else warp_features(f, flow, self.cfg.warp))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def predict(self, warped: torch.Tensor) -> torch.Tensor:
        """Frame prediction from the warped reference."""
        return warped[:, :YUV_CHANNELS] if self.has_frame else self.r_predictor(warped)

    def condition(self, warped: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (warped,) if self.cfg.conditional else ()

    # --- training forward passes ------------------------------------------------------------

    def hyperprior(self, prefix: str, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training-time hyperprior: noisy z and y for the rate, straight-through rounding of y
        for the synthesis (or the noisy y, for prefixes in `noisy_synthesis`: a latent that starts
        inside the rounding dead zone still gets a useful gradient). Returns (y_hat, likelihoods)."""
        z = getattr(self, f"{prefix}_hyper_analysis")(y)
        z_hat, z_lik = getattr(self, f"{prefix}_z_prior")(z)
        params = getattr(self, f"{prefix}_hyper_synthesis")(z_hat)
        c = y.shape[1]
        mean, u = params[:, :c], params[:, c:]
        scale = self.gaussian.table.scale_from_index(u)
        y_rate = self.gaussian.quantize(y, mean, "noise") if self.training else self.gaussian.quantize(y, mean, "round")
        y_lik = self.gaussian.likelihood(y_rate - mean, scale)
        noisy = self.training and prefix in self.noisy_synthesis
        y_hat = y_rate if noisy else self.gaussian.quantize(y, mean, "round")
        return y_hat, {f"{prefix}_y": y_lik, f"{prefix}_z": z_lik}

    def forward_iframe(self, x: torch.Tensor) -> dict:
        """x (N, 6, H/2, W/2) in [0, 1] -> reconstruction, new buffer, likelihoods."""
        y_hat, lik = self.hyperprior("i", self.i_analysis(x))
        x_hat, feat = self.i_synthesis(y_hat)
        return {"x_hat": x_hat, "buffer": self.initial_buffer(x_hat, feat), "likelihoods": lik}

    def forward_pframe(self, x: torch.Tensor, buf: Buffer) -> dict:
        """One P-frame step: returns reconstruction, new buffer, likelihoods, and the predicted and
        decoded flows and the prediction (for the auxiliary flow losses of training stage 1), and the
        sender's `motion_search` result (None without one; the motion teacher reuses it)."""
        lik: dict[str, torch.Tensor] = {}
        flow_pred = flow = search = None
        motion_feat = None
        if self.cfg.uses_motion:
            flow_pred = self.motion_predictor(self.motion_state(buf))
            ref = self.motion_reference(buf)
            search = self.motion_search(x, ref)
            m = self.m_analysis(x, ref, self.motion_hint(x, ref, flow_pred, search))
            m_hat, lik_m = self.hyperprior("m", m)
            lik.update(lik_m)
            flow, motion_feat = self.decoded_motion(*self.m_synthesis(m_hat, flow_pred))
        warped = self.warp(buf, flow)
        pred = self.predict(warped)
        cond = self.condition(warped)
        r_hat, lik_r = self.hyperprior("r", self.r_analysis(x, pred, *cond))
        lik.update(lik_r)
        x_hat, res_feat = self.r_synthesis(r_hat, pred, *cond)
        if flow is None:
            n, _, h2, w2 = x.shape
            flow = x.new_zeros(n, 2, 2 * h2 // self.cfg.warp.block_size, 2 * w2 // self.cfg.warp.block_size)
            motion_feat = x.new_zeros(n, 0, *flow.shape[2:])
        new_buf = self.make_buffer(x_hat, res_feat, flow, motion_feat)
        return {"x_hat": x_hat, "buffer": new_buf, "likelihoods": lik, "flow_pred": flow_pred,
                "flow": flow, "pred": pred, "motion_search": search}
