"""Standard-codec baselines (x264, x265 through ffmpeg) measured exactly like the neural codec.

`mobilecodec.baselines.ffmpeg` builds and runs the appendix A.1 commands (standard library only
at import); `mobilecodec.baselines.runner.run_baseline` runs a whole CRF sweep and measures it.
"""

from mobilecodec.baselines.ffmpeg import CRF_MAX, CRF_MIN, ENCODERS, PRESETS

__all__ = ["CRF_MAX", "CRF_MIN", "ENCODERS", "PRESETS"]
