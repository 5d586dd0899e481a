"""Argument types and small helpers shared by the subcommands (standard library only)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def parse_hw(text: str) -> tuple[int, int]:
    """Parse 'HxW' (e.g. '1080x1920') into (height, width)."""
    return _size_pair(text, "HEIGHTxWIDTH such as 1080x1920")


def parse_wh(text: str) -> tuple[int, int]:
    """Parse 'WxH' (the raw-video convention, e.g. '176x144') into (width, height)."""
    return _size_pair(text, "WIDTHxHEIGHT such as 176x144")


def _size_pair(text: str, expected: str) -> tuple[int, int]:
    """Two positive integers written 'AxB', in that order."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return a, b


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def add_refine_argument(p: argparse.ArgumentParser) -> None:
    """--refine STEPS: the encoder's latent refinement (`mobilecodec.codec.refine`), off by default."""
    p.add_argument("--refine", type=positive_int, default=None, metavar="STEPS",
                   help="refine each I-frame, motion and residual latent with STEPS steps of stochastic Gumbel "
                        "annealing at the checkpoint's beta (about 100): fewer bits at a higher PSNR for a "
                        "slower encode; the decoder and the stream format are unchanged (default: off)")


def emit_json(obj: Any, path: str | None) -> None:
    """Write `obj` as JSON to `path` ('-' for stdout), atomically for files."""
    if path is None:
        return
    if path == "-":
        json.dump(obj, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from mobilecodec.fsutil import write_json_atomic

    write_json_atomic(Path(path), obj)
