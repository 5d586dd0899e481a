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
def _fd_to(fd: int, target: int) -> Iterator[None]:
    """Point file descriptor `fd` at `target` in the block; what C stdio buffered is flushed where the
    block sent it before `fd` is put back."""
    import ctypes

    saved = os.dup(fd)
    os.dup2(target, fd)
    try:
        yield
    finally:
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, fd)
        os.close(saved)


@contextlib.contextmanager
def native_stdout(to: str = "stderr", drop: tuple[str, ...] = ()) -> Iterator[None]:
    """Send what native code writes to the process's stdout in the block to stderr (`to="stderr"`)
    or nowhere (`to="null"`); C stdio's buffer is flushed before stdout is restored. With `drop`,
    the block's lines go to stderr when it ends, less those holding one of these strings."""
    import tempfile

    if to not in ("stderr", "null"):
        raise ValueError(f"native_stdout: to must be 'stderr' or 'null', got {to!r}")
    sys.stdout.flush()
    with (open(os.devnull, "w") if to == "null" else tempfile.TemporaryFile("w+b") if drop
          else contextlib.nullcontext()) as sink:
        with _fd_to(1, sink.fileno() if sink is not None else 2):
            yield
        if to == "stderr" and sink is not None:
            sink.seek(0)
            kept = [ln for ln in sink.read().decode(errors="replace").splitlines(keepends=True)
                    if not any(d in ln for d in drop)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Collect what native code writes to the process's stderr in the block (its lines land in the
    list yielded, when the block ends) instead of showing it."""
    import tempfile

    sys.stderr.flush()
    lines: list[str] = []
    with tempfile.TemporaryFile("w+b") as sink:
        try:
            with _fd_to(2, sink.fileno()):
                yield lines
        finally:
            sink.seek(0)
            lines += sink.read().decode(errors="replace").splitlines()
