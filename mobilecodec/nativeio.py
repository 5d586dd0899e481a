"""Where native (C/C++) code's output goes: libraries that print straight to the process's file
descriptors (QNN's HTP libraries, torch's TorchScript exporter) bypass `sys.stdout`, and would land
in the middle of a command's output or of `--json -`."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def native_stdout(to: str = "stderr") -> Iterator[None]:
    """Send what native code writes to the process's stdout in the block to stderr (`to="stderr"`)
    or nowhere (`to="null"`); C stdio's buffer is flushed before stdout is restored."""
    import ctypes

    if to not in ("stderr", "null"):
        raise ValueError(f"native_stdout: to must be 'stderr' or 'null', got {to!r}")
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") if to == "null" else contextlib.nullcontext() as null:
            os.dup2(null.fileno() if null is not None else 2, 1)
            try:
                yield
            finally:
                ctypes.CDLL(None).fflush(None)  # what C stdio buffered goes where the block sent it
    finally:
        os.dup2(saved, 1)
        os.close(saved)
