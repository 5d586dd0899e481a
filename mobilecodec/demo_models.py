"""The float models of `mobilecodec demo`: which shipped `tiny` checkpoints it runs (the main one and
a second RD point for the int8 check)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilecodec.errors import InputError

@dataclass
class FloatPoint:
    """One float model of the demo and where it comes from."""

    label: str
    path: Path
    model: Any = field(repr=False)
    beta: float | None


def shipped_tiny() -> list[tuple[float, str, Path]]:
    """Shipped `tiny` checkpoints as (beta, name, path), sorted by beta."""
    from mobilecodec.checkpoint import read_checkpoint, shipped_checkpoints

    out = []
    for name, path in shipped_checkpoints().items():
        obj = read_checkpoint(path)
        if obj["config"].get("name") == "tiny":
            beta = obj.get("beta")
            out.append((float(beta) if beta is not None else math.inf, name, path))
    return sorted(out)


def choose_checkpoints(checkpoint: str | None, pairs: int) -> list[tuple[str, Path]]:
    """(name, path) of the float checkpoints: the main one first (default: the middle beta of the
    shipped `tiny` ones, the lower middle one for an even count), then the shipped one farthest
    from it in beta for the second RD point (the int8 check only judges curves spanning >= 1 dB)."""
    from mobilecodec.checkpoint import resolve_checkpoint

    shipped = shipped_tiny()
    if checkpoint is not None:
        path = resolve_checkpoint(checkpoint)
        if not path.is_file():
            names = ", ".join(n for _, n, _ in shipped) or "none"
            raise InputError(f"no such checkpoint: {checkpoint} (shipped tiny checkpoints: {names})")
        main = (Path(path).stem, path)
        idx = next((i for i, (_, n, p) in enumerate(shipped) if p.resolve() == Path(path).resolve()), None)
        if idx is None:  # not a shipped one: no known second RD point of the same model family
            _read_float_checkpoint(path)  # a file of another kind is refused before the warning below
            if pairs > 1:
                import warnings

                from mobilecodec.errors import InputWarning

                warnings.warn(InputWarning(f"--checkpoint {checkpoint} is not a shipped one: the demo knows no second "
                                           f"RD point of its model, so the int8 check has one pair (--pairs 1) "
                                           "and cannot give a BD-rate"))
            return [main]
        return [main, *[(shipped[j][1], shipped[j][2]) for j in _farthest(idx, len(shipped))][:pairs - 1]]
    if not shipped:
        from mobilecodec.errors import CheckpointError

        raise CheckpointError("no shipped tiny checkpoint found (mobilecodec/checkpoints/tiny_b*.pt): the "
                              "installation is incomplete; reinstall, or pass --checkpoint FILE")
    mid = (len(shipped) - 1) // 2  # with an even count, the lower of the two middle betas
    chosen = [mid] + _farthest(mid, len(shipped))[:pairs - 1]
    return [(shipped[j][1], shipped[j][2]) for j in chosen]


def _read_float_checkpoint(path: str | Path) -> None:
    """CheckpointError where `path` is no float checkpoint, with the demo's advice: the loader's
    names --int8 and --package, which the demo has not (a ptq folder's quantized.pt; demo audit)."""
    from mobilecodec.checkpoint import ELSEWHERE_HINTS, read_checkpoint
    from mobilecodec.errors import CheckpointError

    try:
        read_checkpoint(path)
    except CheckpointError as exc:  # the loader's closing hint names other commands' options
        msg = str(exc)
        for hint in ELSEWHERE_HINTS:
            msg = msg.replace(hint, "(the demo takes a float checkpoint and quantizes it itself)")
        raise CheckpointError(msg) from None


def _farthest(idx: int, n: int) -> list[int]:
    """Indices other than `idx` in 0..n-1, farthest first (ties: the lower index)."""
    return sorted((j for j in range(n) if j != idx), key=lambda j: (-abs(j - idx), j))


def load_points(opts: Any, out: Path) -> list[FloatPoint]:
    """The float models of the demo, loaded from the chosen checkpoints."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.errors import CheckpointError

    points = []
    for name, path in choose_checkpoints(opts.checkpoint, opts.pairs):
        model, obj = load_checkpoint(path)
        if not model.ready_for_coding:
            raise CheckpointError(f"checkpoint {path} has no entropy-coding tables (saved before model.update())")
        if opts.block_modes:  # here, not at the int8 encode after PTQ, export and compile (minutes)
            from mobilecodec.codec.block_modes import BlockModeOptions

            BlockModeOptions.for_checkpoint(obj, opts.block_modes, f"checkpoint {path}")
        points.append(FloatPoint(name, Path(path), model, obj.get("beta")))
    return points
