"""One thread count for everything that computes on the host: onnxruntime sessions, the integer
hyper-synthesis kernels (onnxruntime integer GEMMs and their compiled host loops) and torch
(host warp, PyTorch path).

Set once per process (`set_threads`, from the CLI's `--threads`). Every onnxruntime session then
gets `intra_op_num_threads = n`, one inter-op thread and no spinning. Why explicit per-session
threads and not onnxruntime's global pool (`set_global_thread_pool_sizes` +
`use_per_session_threads = False`): the Python API of onnxruntime 1.31 cannot turn spinning off
for the global pool, and a spinning pool keeps a core busy after every graph, which the host steps
between graphs (entropy coding, warp) then lose; it also can be sized only once per process. The
sessions run one after another, so their idle pools cost memory, not cores. For the same reason
the CLI (and the benchmarks) set OMP_WAIT_POLICY=PASSIVE before torch loads: torch's OpenMP
threads otherwise spin after each parallel region, and on a shared 2-core machine every small host
op (the block warp) then waits for a time slice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from mobilecodec.cpu import u8s8_exact

_THREADS: int | None = None
MAX_THREADS = 1024  # torch and onnxruntime take a C int; far above any host this runs on


def set_threads(n: int | None) -> int | None:
    """Use `n` host threads everywhere from now on (None: each library's default). Returns n."""
    global _THREADS
    if n is not None and not 1 <= n <= MAX_THREADS:
        from mobilecodec.errors import InputError

        raise InputError(f"--threads must be within 1..{MAX_THREADS}, got {n}")
    _THREADS = n
    if n is not None:
        import torch

        from mobilecodec.entropy import int_kernels

        torch.set_num_threads(n)
        int_kernels.set_num_threads(n)
    return n


@contextlib.contextmanager
def torch_setting(get: Callable[[], Any], set_: Callable[[Any], Any], value: Any) -> Iterator[None]:
    """A process-wide torch setting (`get` / `set_`) at `value` inside the block, the caller's value
    restored after: a library call must not change the process's setting."""
    before = get()
    set_(value)
    try:
        yield
    finally:
        set_(before)


def torch_threads(n: int) -> contextlib.AbstractContextManager[None]:
    """torch at `n` intra-op threads inside the block, the caller's count restored after (graph
    exports and tracing of small models: extra threads only contend)."""
    import torch

    return torch_setting(torch.get_num_threads, torch.set_num_threads, n)


def get_threads() -> int | None:
    """The thread count set by `set_threads` (None if never set)."""
    return _THREADS


def session_options(threads: int | None = None, base: Any = None, exact_int8: bool = True) -> Any:
    """onnxruntime SessionOptions (or `base`, updated) with the process thread policy: `threads`
    (default: `set_threads`' value) intra-op threads, one inter-op thread, no spinning; and exact
    int8 arithmetic on CPUs whose uint8 x int8 kernels saturate (`exact_int8=False` only for
    benchmarks that show what onnxruntime's default kernels would cost)."""
    import onnxruntime as ort

    so = base if base is not None else ort.SessionOptions()
    if base is None:
        so.log_severity_level = 3
    n = threads if threads is not None else _THREADS
    # no busy-waiting threads after a run: they would steal the cores from the host steps
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.inter_op_num_threads = 1
    if n:
        so.intra_op_num_threads = n
    if exact_int8 and not u8s8_exact():
        # Without VNNI onnxruntime's uint8 x int8 kernels (QLinearConv of every int8 graph) add
        # product pairs in saturating int16: on an AVX2 EPYC the W8A8 I-frame analysis of a shipped
        # checkpoint was up to 18 quantization steps off the aimet simulation. "1" makes onnxruntime
        # store the int8 weights as uint8 (zero point + 128) and run its exact u8 x u8 kernels.
        # Not set with VNNI: there u8 x s8 is exact, and the option would still switch every x86
        # CPU with AVX2 to the slower u8 x u8 kernels.
        so.add_session_config_entry("session.x64quantprecision", "1")
    return so


