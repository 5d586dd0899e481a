"""Shared bits of the benchmark scripts: argument parsing, JSON output, the shared-machine note."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI: torch threads sleep, not spin (before torch loads)

NOTE = (f"measured on this machine ({os.cpu_count()} cores, shared with other jobs): ratios within one run "
        "are meaningful, absolute numbers are indicative")


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--json", metavar="PATH", help="write the results as JSON ('-' for stdout)")
    return p


def emit(result: dict, path: str | None) -> None:
    result["note"] = NOTE
    print(NOTE)
    if path == "-":
        print(json.dumps(result, indent=2))
    elif path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")


def median_time(fn, runs: int) -> float:
    """Median wall time of `fn()` over `runs` calls, after one untimed warm-up call."""
    from mobilecodec.runtime.profiler import timed_runs

    return statistics.median(timed_runs(fn, runs, warmup=1))
