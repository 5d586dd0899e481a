"""User-facing errors: the CLI prints their message on one line and exits with code 2; the one
warning, printed on one line too, for input the toolkit uses but not wholly; and `one_line`, the
one-line account of an exception from outside the toolkit that such a message quotes."""


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


def one_line(exc: BaseException, limit: int = 300) -> str:
    """'Type: first line of the message' of an exception that is not ours (the user's code, a
    library), for a one-line error: the message's first non-blank line, cut at `limit` characters;
    the type's name alone for an empty message."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__
