"""Split a GIL-free kernel over contiguous ranges on a shared worker pool (host steps: warp,
integer requantization). One pool for the process: the host steps run one after another."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

@functools.lru_cache(maxsize=1)
def _pool():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="mobilecodec-host")


def run_split(fn: Callable[..., Any], n: int, parts: int, *args: Any) -> None:
    """Call fn(*args, lo, hi) over [0, n) cut into at most `parts` contiguous ranges, the first on
    the calling thread and the rest on the pool; fn must release the GIL (numba nogil) to overlap."""
    parts = max(1, min(int(parts), int(n)))
    bounds = [n * p // parts for p in range(parts + 1)]
    jobs = [_pool().submit(fn, *args, bounds[p], bounds[p + 1]) for p in range(1, parts)]
    try:
        fn(*args, bounds[0], bounds[1])
    finally:
        for job in jobs:
            job.result()
