"""Shared bits of the benchmark scripts: argument parsing, JSON output, the shared-machine note."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: torch threads sleep, not spin (before torch loads)

from mobilecodec.cli.common import run_script as run_main  # noqa: E402 (after the path): one-line errors

NOTE = (f"measured on this machine ({os.cpu_count()} cores, shared with other jobs): ratios within one run "
        "are meaningful, absolute numbers are indicative")


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--json", metavar="PATH", help="write the results as JSON ('-' for stdout)")
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


def interleaved_times(fns: dict, runs: int, warmup: int = WARMUP) -> dict[str, list[float]]:
    """Seconds of each function over `runs` rounds, one call of every function per round (after
    `warmup` untimed rounds), so all sides see the same machine state: on a shared host the state
    moves between runs minutes apart (the int8 rate measured 69 and 45 GMAC/s in two runs)."""
    from mobilecodec.runtime.profiler import timed_runs

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            times[k] += timed_runs(fn, 1)
    return times


def spread(times: list[float]) -> dict:
    """Median and spread of timed runs (seconds), as the JSON carries them."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


def compare(fns: dict, runs: int, interleave: bool = True) -> dict[str, dict]:
    """`spread` of each function's times: interleaved (see `interleaved_times`), or one function after
    the other, each after WARMUP calls, where calling one evicts the other's caches (e.g. kernel
    forms that rebuild onnxruntime sessions when switched)."""
    if interleave:
        times = interleaved_times(fns, runs)
    else:
        from mobilecodec.runtime.profiler import timed_runs

        times = {k: timed_runs(fn, runs, warmup=WARMUP) for k, fn in fns.items()}
    return {k: spread(v) for k, v in times.items()}


def median_time(fn, runs: int) -> float:
    """Median wall time of `fn()` over `runs` calls, after WARMUP untimed calls."""
    return compare({"fn": fn}, runs, interleave=False)["fn"]["median_s"]
