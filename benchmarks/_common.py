"""Shared bits of the benchmark scripts: argument parsing, JSON output, the shared-machine note, and
the machine's roofline measured in the same run (`roofline`): the conv roofline (GMAC/s of a 3x3
convolution per precision and backend, `conv_gmacs.conv_rates`) for compute-bound work, and the copy
bandwidth (GB/s of a large numpy copy) for work that moves bytes. Each speed benchmark divides its
own rate by the relevant one and says in its docstring which and why.

This module must be imported before torch (it sets OMP_WAIT_POLICY, which OpenMP reads once, when
torch loads its library): every benchmark imports it before torch or mobilecodec
(tests/test_benchmarks.py checks)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
if str(Path(__file__).resolve().parent) not in sys.path:  # `roofline` imports conv_gmacs beside this file
    sys.path.append(str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: torch threads sleep, not spin (before torch loads)

from mobilecodec.cli.common import json_target  # noqa: E402,F401 (after the path; the benchmarks use it)
from mobilecodec.cli.common import run_script as run_main  # noqa: E402 (after the path): one-line errors

NOTE = (f"measured on this machine ({os.cpu_count()} cores, shared with other jobs): ratios within one run "
        "are meaningful, absolute numbers are indicative")


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--json", metavar="PATH", type=json_target, help="write the results as JSON ('-' for stdout)")
    return p


def emit(result: dict, path: str | None) -> None:
    """Print the shared-machine note; write `result` (with it) as JSON to `path` ('-': stdout), its
    folder created and the file replaced only when complete."""
    from mobilecodec.cli.common import emit_json

    result["note"] = NOTE
    print(NOTE)
    emit_json(result, path or None)


def padded_hw(text: str) -> tuple[int, int]:
    """argparse type: a padded frame size 'HxW', both multiples of 64 (what the codec codes)."""
    from mobilecodec.cli.common import parse_hw

    h, w = parse_hw(text)
    if h % 64 or w % 64:
        raise argparse.ArgumentTypeError(f"expected a padded HEIGHTxWIDTH, both multiples of 64, got {text!r}")
    return h, w


WARMUP = 2  # untimed calls of every function before timing (first-call compilation, allocation)
MIN_RUNS = 8  # timed runs a median needs on a shared machine


def add_runs_argument(p: argparse.ArgumentParser, what: str = "timed rounds", default: int = MIN_RUNS) -> None:
    """--runs, refused below MIN_RUNS at parse time (default `default`, itself at least MIN_RUNS)."""
    assert default >= MIN_RUNS

    def runs(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
        if value < MIN_RUNS:
            raise argparse.ArgumentTypeError(f"must be >= {MIN_RUNS} (medians of enough runs), got {value}")
        return value

    p.add_argument("--runs", type=runs, default=default, help=f"{what}, at least {MIN_RUNS} (default {default})")


def interleaved_times(fns: dict, runs: int, warmup: int = WARMUP, tick=None) -> dict[str, list[float]]:
    """Seconds of each function over `runs` rounds, one call of every function per round (after
    `warmup` untimed rounds), so all sides see the same machine state: on a shared host the state
    moves between runs minutes apart (the int8 rate measured 69 and 45 GMAC/s in two runs).
    `tick()`, if given, is called after every call, outside the timed part (a progress bar)."""
    from mobilecodec.runtime.profiler import timed_runs

    tick = tick or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            tick()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            times[k] += timed_runs(fn, 1)
            tick()
    return times


def spread(times: list[float]) -> dict:
    """Median and spread of timed runs (seconds), as the JSON carries them."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


def compare(fns: dict, runs: int, interleave: bool = True, tick=None) -> dict[str, dict]:
    """`spread` of each function's times: interleaved (see `interleaved_times`), or one function after
    the other, each after WARMUP calls, where calling one evicts the other's caches (e.g. kernel
    forms that rebuild onnxruntime sessions when switched). `tick()`, if given, is called after every
    call (`calls(len(fns), runs)` in all), outside the timed part."""
    if interleave:
        times = interleaved_times(fns, runs, tick=tick)
    else:
        times = {}
        for k, fn in fns.items():
            times[k] = interleaved_times({k: fn}, runs, tick=tick)[k]  # WARMUP calls, then `runs` timed
    return {k: spread(v) for k, v in times.items()}


def progress_counter(total: int, desc: str, enabled: bool = True):
    """The project's progress bar (`mobilecodec.progress.progress_bar`) over `total` timed calls, for
    `compare(..., tick=bar.update)`: a live bar on a terminal, a line every 30 s in a log."""
    from mobilecodec.progress import progress_bar

    return progress_bar(total=total, desc=desc, unit="call", enabled=enabled)


def calls(n_functions: int, runs: int, warmup: int = WARMUP) -> int:
    """How many calls `compare` makes of `n_functions` functions (what its `tick` counts)."""
    return n_functions * (warmup + runs)


# --- the machine's roofline, measured in the same run --------------------------------------------

#: The conv roofline's convolution: 64 -> 64 channels, 3x3, on 1080p at 1/4 (as decode_speed.py):
#: ~10 ms a call or more, long enough that thread wake-ups do not dominate (at 136x240 and 2 threads
#: the int8 rate measured 177-313 GMAC/s in three back-to-back runs on an idle machine).
CONV_SIZE = (272, 480)
#: Size of the copied array: 4x this machine's 32 MiB L3, so the copy streams through memory.
COPY_MIB = 128
ROOF_RUNS = 10  # rounds of each roofline measurement: the best is the roofline, the median beside it


def copy_bandwidth(mib: int = COPY_MIB, runs: int = ROOF_RUNS) -> dict:
    """The memory roofline of one thread: GB/s of `np.copyto` of a `mib` MiB array into another
    (numpy copies on one thread), counting the bytes read plus the bytes written (as STREAM's Copy
    does; the write-allocate traffic is not counted), best of `runs` copies (the roofline) and
    their median. Pages are touched before timing."""
    import numpy as np

    from mobilecodec.runtime.profiler import timed_runs

    n = mib << 20
    src = np.ones(n, np.uint8)
    dst = np.zeros_like(src)
    times = timed_runs(lambda: np.copyto(dst, src), runs, warmup=1)
    moved = 2 * n
    return {"copy_mib": mib, "bytes_moved_per_copy": moved, "threads": 1, "rounds": runs,
            "gb_per_s": moved / min(times) / 1e9, "median_gb_per_s": moved / statistics.median(times) / 1e9}


def roofline(threads: int | None = None, conv: bool = True, copy: bool = True, runs: int = ROOF_RUNS,
             log: bool = True) -> dict:
    """This machine's roofline, measured now (call it in the benchmark's own run): "conv":
    `conv_gmacs.conv_rates` of a 64 -> 64 3x3 convolution on CONV_SIZE at `threads` threads
    (onnxruntime int8 QDQ, onnxruntime float32 and PyTorch float32 GMAC/s: the best of `runs`
    interleaved rounds, medians beside them; note that it sets torch's thread count to `threads`
    when given), and "copy": `copy_bandwidth` (one thread). Parts not asked for are left out."""
    out: dict = {}
    if conv:
        if log:
            print(f"measuring the conv roofline ({threads or 'default'} thread(s)) ...", file=sys.stderr)
        from conv_gmacs import conv_rates

        out["conv"] = conv_rates(size=CONV_SIZE, runs=runs, threads=threads)
    if copy:
        if log:
            print("measuring the copy bandwidth ...", file=sys.stderr)
        out["copy"] = copy_bandwidth(runs=runs)
    return out


#: conv roofline keys by the precision and backend of the work related to them
CONV_KEYS = {"int8": "int8_qdq_gmacs_per_s", "float32": "float32_gmacs_per_s",
             "pytorch_float32": "pytorch_float32_gmacs_per_s"}


def conv_roof(roof: dict | None, kind: str) -> float | None:
    """GMAC/s of the conv roofline `kind` (a CONV_KEYS key, or "best_float32": the better of the two
    float32 backends), None where the roofline was not measured."""
    if not roof or "conv" not in roof:
        return None
    c = roof["conv"]
    if kind == "best_float32":
        return max(c["float32_gmacs_per_s"], c["pytorch_float32_gmacs_per_s"])
    return c[CONV_KEYS[kind]]


def copy_roof(roof: dict | None) -> float | None:
    """GB/s of the copy roofline, None where it was not measured."""
    return roof["copy"]["gb_per_s"] if roof and "copy" in roof else None


def fraction(rate: float | None, roof_rate: float | None) -> float | None:
    """`rate` over its roofline `roof_rate` (same units), None where either is missing."""
    return rate / roof_rate if rate is not None and roof_rate else None


def roofline_line(roof: dict | None) -> str:
    """One line of the measured roofline, for the report."""
    if not roof:
        return "roofline: not measured (--no-roofline)"
    parts = []
    if "conv" in roof:
        c = roof["conv"]
        parts.append(f"conv {c['conv']}, {c['threads'] or 'default'} thread(s), best of {c['rounds']} rounds "
                     f"(median): onnxruntime int8 {c['int8_qdq_gmacs_per_s']:.1f} ({c['int8_qdq_median_gmacs_per_s']:.1f}), "
                     f"float32 {c['float32_gmacs_per_s']:.1f} ({c['float32_median_gmacs_per_s']:.1f}), PyTorch float32 "
                     f"{c['pytorch_float32_gmacs_per_s']:.1f} ({c['pytorch_float32_median_gmacs_per_s']:.1f}) GMAC/s")
    if "copy" in roof:
        m = roof["copy"]
        parts.append(f"numpy copy of {m['copy_mib']} MiB, 1 thread, best of {m['rounds']} (median): "
                     f"{m['gb_per_s']:.1f} ({m['median_gb_per_s']:.1f}) GB/s read + written")
    return "roofline measured in this run: " + "; ".join(parts)


def add_roofline_argument(p: argparse.ArgumentParser) -> None:
    """--no-roofline: skip measuring the roofline (measured by default; the ratios are then left out)."""
    p.add_argument("--no-roofline", action="store_true",
                   help="skip measuring this machine's roofline in the run (default: measured, and the "
                        "benchmark's rate printed as a fraction of it)")
