"""User-facing errors: the CLI prints their message on one line and exits with code 2; and the
one warning, printed on one line too, for input the toolkit uses but not wholly."""


class MobileCodecError(Exception):
    """Base class of every error caused by bad input rather than by a bug."""


class InputError(MobileCodecError):
    """A video file, size, frame rate or option value the toolkit cannot use."""


class BitstreamError(MobileCodecError):
    """A .mnvc stream that is corrupt, truncated, or not made for this model."""


class CheckpointError(MobileCodecError):
    """A checkpoint that is missing, unreadable, or does not match the requested config."""


class ToolError(MobileCodecError):
    """An external tool (ffmpeg, onnxruntime, QNN) failed on input we gave it."""


class InputWarning(UserWarning):
    """Input that is used, but with something about it not kept (interlacing, pixel aspect ratio)."""
