"""Named, registered codec configurations (explicit dataclasses; a checkpoint records its config).

`mobilenvc` is sized after Table 6 of the MobileNVC appendix (params and kMACs/px per subnetwork
at 1080x1920 YUV420); `tiny` trains on two CPU cores. `mobilecodec profile --config mobilenvc
--size 1080x1920` prints the comparison with Table 6.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mobilecodec.models.warp import WarpConfig

BUFFERING_MODES = ("explicit", "implicit", "hybrid")
MOTION_HINTS = ("none", "block_match")


@dataclass(frozen=True)
class HyperConfig:
    """Hyperprior: hyper-analysis /16 -> /64 and hyper-synthesis back to mean + scale index."""

    channels: int
    latent: int
    act_max: float = 6.0  # bounded activations of the hyper-synthesis (exact-integer on host)


@dataclass(frozen=True)
class AEConfig:
    """An autoencoder with hyperprior. Stages are stride-2 steps; `*_extra` are 3x3 layers per stage."""

    enc_channels: tuple[int, ...]
    enc_extra: tuple[int, ...]
    latent: int
    dec_channels: tuple[int, ...]
    dec_extra: tuple[int, ...]
    hyper: HyperConfig
    kernel: int = 5
    out_extra: int = 0  # extra 3x3 layers after the last up-sampling, before the output conv


@dataclass(frozen=True)
class PredictorConfig:
    """Motion predictor: predicts this frame's block flow from the buffer (flow and/or features)."""

    channels: int
    coarse_channels: int
    layers: int = 2


#: CodecConfig fields only the sender reads (motion search): a stream does not depend on them.
SENDER_ONLY_FIELDS = ("motion_hint", "motion_search_radius", "motion_hint_confident_only")


@dataclass(frozen=True)
class CodecConfig:
    """Everything that defines a codec's architecture (not its weights)."""

    name: str
    iframe: AEConfig
    motion: AEConfig
    residual: AEConfig
    predictor: PredictorConfig
    warp: WarpConfig = field(default_factory=WarpConfig)
    buffering: str = "explicit"
    implicit_motion_channels: int = 2  # feature maps at block resolution (H/B x W/B)
    implicit_residual_channels: int = 2  # feature maps at H/2 x W/2
    residual_conditioning: bool = False  # residual AE also sees the (warped) prediction
    scale_min: float = 0.11
    scale_max: float = 64.0
    scale_levels: int = 64
    z_bound: int = 64  # hyper-latents are clamped to [-z_bound, z_bound]
    # What the motion analysis gets as its block-flow input on the sender: "none" = the predicted
    # flow (the network must find motion itself), "block_match" = integer block matching against
    # the buffered frame minus the predicted flow (models/motion_search.py says why). Sender only:
    # the receiver, its graphs and the streams do not change.
    motion_hint: str = "none"
    # Search range, luma pixels each way. 32 (coarse to fine): on the training clips bikes and
    # bigbuckbunny, 6 left 6-14 dB of motion-compensated prediction unfound (motion_search.py).
    motion_search_radius: int = 32
    # Send a zero correction (hint = 0) for blocks whose best vector does not beat zero motion by
    # motion_search.MIN_GAIN_LEVELS: in flat or noisy blocks the best match is arbitrary, and coding it
    # costs motion bits for no better prediction.
    motion_hint_confident_only: bool = False

    def __post_init__(self) -> None:
        if self.buffering not in BUFFERING_MODES:
            raise ValueError(f"buffering must be one of {BUFFERING_MODES}, got {self.buffering!r}")
        if self.warp.block_size not in (4, 8, 16):
            raise ValueError(f"the motion networks support block sizes 4, 8 and 16, got {self.warp.block_size}")
        if self.motion_hint not in MOTION_HINTS:
            raise ValueError(f"motion_hint must be one of {MOTION_HINTS}, got {self.motion_hint!r}")
        if self.motion_hint == "block_match" and (self.buffering == "implicit" or self.warp.mode == "none"):
            raise ValueError("motion_hint 'block_match' needs a buffered frame and a warp (explicit or hybrid buffering)")
        if self.motion_search_radius < 1:
            raise ValueError(f"motion_search_radius must be >= 1, got {self.motion_search_radius}")
        if self.buffering != "explicit" and (self.implicit_motion_channels < 1 or self.implicit_residual_channels < 1):
            raise ValueError("implicit and hybrid buffering need at least one implicit channel each")

    @property
    def uses_motion(self) -> bool:
        return self.warp.mode != "none"

    @property
    def conditional(self) -> bool:
        """Residual AE is conditioned on the warped reference (always for implicit/hybrid/none)."""
        return self.residual_conditioning or self.buffering != "explicit" or not self.uses_motion

    def replace(self, **changes) -> "CodecConfig":
        """A copy with some fields changed; `warp_mode`, `block_size`, `overlap` reach into `warp`."""
        warp_changes = {k: changes.pop(k) for k in ("mode", "block_size", "overlap") if k in changes}
        if "warp_mode" in changes:
            warp_changes["mode"] = changes.pop("warp_mode")
        if warp_changes:
            changes["warp"] = dataclasses.replace(self.warp, **warp_changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def stream_id(self) -> str:
        """The config id a stream header records: the plain name where every field the receiver uses
        equals the registered config of that name, or of the part before '+' (shipped streams keep
        their ids: 'tiny', 'tiny+int8'), else the name, '~' and a
        digest of those fields, so that a checkpoint of equal weights but another warp or buffering
        cannot decode the stream into wrong frames."""
        import hashlib
        import json

        def receiver(cfg: CodecConfig) -> dict:
            d = cfg.to_dict()
            for k in ("name", *SENDER_ONLY_FIELDS):
                d.pop(k)
            return d

        fields = receiver(self)
        base = self.name.split("+", 1)[0]  # "tiny+int8": the quantized twin of a registered config
        if base in CONFIGS and fields == receiver(CONFIGS[base]()):
            return self.name
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.name}~{digest}"

    @staticmethod
    def from_dict(d: dict) -> "CodecConfig":
        def ae(x: dict) -> AEConfig:
            x = dict(x)
            x["hyper"] = HyperConfig(**x["hyper"])
            for k in ("enc_channels", "enc_extra", "dec_channels", "dec_extra"):
                x[k] = tuple(x[k])
            return AEConfig(**x)

        d = dict(d)
        d["iframe"], d["motion"], d["residual"] = ae(d["iframe"]), ae(d["motion"]), ae(d["residual"])
        d["predictor"] = PredictorConfig(**d["predictor"])
        d["warp"] = WarpConfig(**d["warp"])
        return CodecConfig(**d)


def _mobilenvc() -> CodecConfig:
    # Widths chosen so that params and kMACs/px of every Table 6 row land within 15 %
    # (see `mobilecodec profile --config mobilenvc --size 1080x1920`).
    return CodecConfig(
        name="mobilenvc",
        iframe=AEConfig(enc_channels=(128, 192, 192), enc_extra=(0, 0, 0), latent=160,
                        dec_channels=(128, 96, 64), dec_extra=(0, 0, 0), out_extra=8,
                        hyper=HyperConfig(channels=160, latent=128)),
        motion=AEConfig(enc_channels=(96, 128, 192), enc_extra=(1, 1, 0), latent=128,
                        dec_channels=(128,), dec_extra=(2,),
                        hyper=HyperConfig(channels=192, latent=128)),
        residual=AEConfig(enc_channels=(128, 192, 192), enc_extra=(0, 1, 0), latent=192,
                          dec_channels=(128, 64, 32), dec_extra=(0, 0, 0),
                          hyper=HyperConfig(channels=192, latent=128)),
        predictor=PredictorConfig(channels=80, coarse_channels=72),
        warp=WarpConfig(mode="block_overlap", block_size=8, overlap=4),
        motion_hint="block_match",
    )


def _tiny() -> CodecConfig:
    return CodecConfig(
        name="tiny",
        iframe=AEConfig(enc_channels=(32, 48, 64), enc_extra=(0, 0, 0), latent=48,
                        dec_channels=(48, 32, 24), dec_extra=(0, 0, 0), out_extra=1,
                        hyper=HyperConfig(channels=32, latent=24)),
        motion=AEConfig(enc_channels=(24, 32, 48), enc_extra=(0, 0, 0), latent=32,
                        dec_channels=(32,), dec_extra=(1,),
                        hyper=HyperConfig(channels=24, latent=16)),
        residual=AEConfig(enc_channels=(32, 48, 64), enc_extra=(0, 0, 0), latent=48,
                          dec_channels=(48, 32, 24), dec_extra=(0, 0, 0),
                          hyper=HyperConfig(channels=32, latent=24)),
        predictor=PredictorConfig(channels=16, coarse_channels=32),
        warp=WarpConfig(mode="block_overlap", block_size=8, overlap=4),
        motion_hint="block_match",
    )


CONFIGS = {"mobilenvc": _mobilenvc, "tiny": _tiny}


def get_config(name: str, **overrides) -> CodecConfig:
    """The registered config `name`, optionally with fields replaced (see CodecConfig.replace).
    A registered config's block-matching motion hint turns off by itself where an override leaves
    no buffered frame to match against (implicit buffering, warp 'none')."""
    if name not in CONFIGS:
        from mobilecodec.errors import InputError

        raise InputError(f"unknown config {name!r}; registered configs: {', '.join(sorted(CONFIGS))}")
    cfg = CONFIGS[name]()
    if not overrides:
        return cfg
    implicit = overrides.get("buffering", cfg.buffering) == "implicit"
    no_warp = overrides.get("warp_mode", overrides.get("mode", cfg.warp.mode)) == "none"
    if "motion_hint" not in overrides and (implicit or no_warp):
        overrides["motion_hint"] = "none"  # block matching needs a buffered frame and a warp
    return cfg.replace(**overrides)
