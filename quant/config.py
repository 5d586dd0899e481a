"""Quantization settings (explicit dataclass) and per-layer W8A16 overrides read from JSON/YAML."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobilecodec.errors import InputError

QUANT_SCHEMES = ("tf", "tf_enhanced")
# Aliases understood by aimet 2.42 (`aimet_torch.common.quantsim_config.quantsim_config._config_file_aliases`):
# per-channel weights for Conv/ConvTranspose, asymmetric 8-bit activations, Conv+ReLU supergroups.
DEFAULT_AIMET_CONFIG = "htp_v73"
W8A16_PRESET_NAMES = ("receiver",)  # expanded per model by quant.sim.W8A16_PRESETS


@dataclass
class QuantConfig:
    """What the sims are built with; stored in quantized.pt so `load_quantized` rebuilds identical sims.

    `w8a16` lists layers whose activation quantizers run at 16 bits: a stage name ('m_synthesis': all
    of its layers) or a stage module path ('m_synthesis.out', 'motion_predictor.module_cat': that
    layer's own quantizers, its output and an input quantizer where aimet puts one; an input that is
    the previous layer's output stays on that layer's grid, so list that layer too)."""

    aimet_config: str = DEFAULT_AIMET_CONFIG
    quant_scheme: str = "tf"  # tf = min/max, tf_enhanced = SQNR-optimal ranges
    param_bw: int = 8
    act_bw: int = 8
    w8a16: tuple[str, ...] = ()
    cle: bool = False
    adaround: bool = False
    # AdaRound budget per layer / stage: aimet's default of 10k iterations per layer takes hours on a
    # 2-core CPU for the whole codec (1000 took 18 min on `tiny` and gained 0.02 dB).
    adaround_iters: int = 300
    adaround_batches: int = 16  # captured input batches per stage AdaRound optimizes on
    trace_size: tuple[int, int] = (64, 64)  # padded (H, W) the stage graphs are traced at
    skip: tuple[str, ...] = field(default=("i_hyper_synthesis", "m_hyper_synthesis", "r_hyper_synthesis"))
    # Frame inputs and reconstructed-frame outputs get the range [0, 1] (step 1/255 at 8 bits: the
    # frame's own levels), frozen, instead of the calibration data's min/max, which clipped
    # highlights (e.g. i_analysis at 0.965 = level 246) and put frame levels between two codes.
    pin_frames: bool = True

    def __post_init__(self) -> None:
        if self.quant_scheme not in QUANT_SCHEMES:
            raise InputError(f"quant scheme must be one of {QUANT_SCHEMES}, got {self.quant_scheme!r}")
        for name in ("param_bw", "act_bw"):
            if not 4 <= getattr(self, name) <= 16:
                raise InputError(f"{name} must be within 4..16, got {getattr(self, name)}")
        for name in ("adaround_iters", "adaround_batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        self.w8a16 = tuple(self.w8a16)
        self.skip = tuple(self.skip)
        self.trace_size = tuple(self.trace_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "QuantConfig":
        """Records written before `pin_frames` existed were calibrated without it."""
        return QuantConfig(**{"pin_frames": False, **d})


def load_layer_overrides(path: str | Path) -> tuple[str, ...]:
    """The W8A16 layer list: a preset name ('receiver': every stage the decoder runs), or a
    JSON/YAML file holding a list of names or a mapping with a 'w8a16' list."""
    if str(path) in W8A16_PRESET_NAMES:
        return (str(path),)
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such W8A16 override file: {p}")
    # utf-8-sig: an editor's byte-order mark is not an error; a file that is not UTF-8 was a traceback (an
    # unreadable one stays the CLI's "Permission denied: PATH")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: cannot parse W8A16 overrides: {exc}") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise InputError(f"{p}: reading YAML needs PyYAML; write the list as JSON instead") from None
            obj = yaml.safe_load(text)
        else:
            obj = json.loads(text)
    except (ValueError, Exception) as exc:  # noqa: BLE001 - json and yaml raise different errors
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{p}: cannot parse W8A16 overrides: {exc}") from None
    if isinstance(obj, dict):
        obj = obj.get("w8a16")
    if not isinstance(obj, list) or not all(isinstance(x, str) and x for x in obj):
        raise InputError(f"{p}: expected a list of layer names (or {{\"w8a16\": [...]}})")
    if not obj:  # an empty list gave plain W8A8 without a word
        raise InputError(f"{p}: the W8A16 list is empty; name layers, or leave --w8a16 out for W8A8")
    return tuple(obj)
