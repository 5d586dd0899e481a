"""Where native (C/C++) code's output goes: libraries that print straight to the process's file
descriptors (QNN's HTP libraries, torch's TorchScript exporter) bypass `sys.stdout`, and would land
in the middle of a command's output or of `--json -`."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


#: lines native libraries print that tell a user nothing: QNN's HTP libraries print this one as they
#: load, on every compile, `--ep qnn` session and demo (it reached stderr: walk-through audit)
NATIVE_NOISE = ("# LIBNATIVE: No alternate configuration present",)


@contextlib.contextmanager
def native_stdout(to: str = "stderr", drop: tuple[str, ...] = ()) -> Iterator[None]:
    """Send what native code writes to the process's stdout in the block to stderr (`to="stderr"`)
    or nowhere (`to="null"`); C stdio's buffer is flushed before stdout is restored. With `drop`,
    the block's lines go to stderr when it ends, less those holding one of these strings."""
    import ctypes
    import tempfile

    if to not in ("stderr", "null"):
        raise ValueError(f"native_stdout: to must be 'stderr' or 'null', got {to!r}")
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with (open(os.devnull, "w") if to == "null" else tempfile.TemporaryFile("w+b") if drop
              else contextlib.nullcontext()) as sink:
            os.dup2(sink.fileno() if sink is not None else 2, 1)
            try:
                yield
            finally:
                ctypes.CDLL(None).fflush(None)  # what C stdio buffered goes where the block sent it
                if to == "stderr" and sink is not None:
                    sink.seek(0)
                    kept = [ln for ln in sink.read().decode(errors="replace").splitlines(keepends=True)
                            if not any(d in ln for d in drop)]
                    sys.stderr.write("".join(kept))
                    sys.stderr.flush()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Collect what native code writes to the process's stderr in the block (its lines land in the
    list yielded, when the block ends) instead of showing it."""
    import ctypes
    import tempfile

    sys.stderr.flush()
    lines: list[str] = []
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile("w+b") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield lines
            finally:
                ctypes.CDLL(None).fflush(None)
                os.dup2(saved, 2)
                sink.seek(0)
                lines += sink.read().decode(errors="replace").splitlines()
    finally:
        os.close(saved)
