"""The CLI from tests, two ways: `cli` in a fresh interpreter (what a shell sees: exit code, stderr,
no traceback) and `cli_here` through the same `main` in this process (no ~3-5 s of interpreter and
torch start-up per call). Both return a subprocess.CompletedProcess."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

PY = [sys.executable, "-m", "mobilecodec"]


def _done(args, code: int, stdout: str, stderr: str, check: bool) -> subprocess.CompletedProcess:
    if check and code != 0:
        raise AssertionError(f"exit {code}: {stderr}")
    return subprocess.CompletedProcess(list(args), code, stdout, stderr)


def cli(*args, check: bool = False) -> subprocess.CompletedProcess:
    p = subprocess.run([*PY, *map(str, args)], capture_output=True, text=True, timeout=600)
    return _done(p.args, p.returncode, p.stdout, p.stderr, check)


def cli_here(*args, check: bool = False) -> subprocess.CompletedProcess:
    import torch

    from mobilecodec.cli import main

    threads = torch.get_num_threads()  # a command's --threads must not leak into later tests
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        torch.set_num_threads(threads)
    return _done(args, code, out.getvalue(), err.getvalue(), check)


def assert_clean_error(p: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with one line on stderr that names the problem (every word in `words`), no traceback."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


@contextlib.contextmanager
def running(*args, until, timeout: float = 240):
    """`mobilecodec ARGS` in a child process (one torch thread), yielded once the path `until` exists
    (a run's first checkpoint); killed on the way out. Yields the Popen."""
    import os
    import time

    proc = subprocess.Popen([*PY, *map(str, args)], env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not until.exists():
            time.sleep(0.05)
        assert proc.poll() is None and until.exists(), proc.stderr.read()[-2000:]
        yield proc
    finally:
        proc.kill()
        proc.wait()
