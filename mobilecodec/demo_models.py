"""The float models of `mobilecodec demo`: which shipped `tiny` checkpoints it runs (the main one and
a second RD point for the int8 check), or clearly labelled random-init ones when none is shipped."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobilecodec.errors import InputError

RANDOM_LABEL = "tiny_random_init"


@dataclass
class FloatPoint:
    """One float model of the demo: where it comes from and whether it is trained."""

    label: str
    path: Path
    model: Any = field(repr=False)
    beta: float | None
    trained: bool


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
    shipped `tiny` ones), then the shipped one farthest from it in beta for the second RD point (the
    int8 check only judges curves spanning >= 1 dB). Empty: none shipped."""
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
            return [main]
        return [main, *[(shipped[j][1], shipped[j][2]) for j in _farthest(idx, len(shipped))][:pairs - 1]]
    if not shipped:
        return []
    mid = len(shipped) // 2
    chosen = [mid] + _farthest(mid, len(shipped))[:pairs - 1]
    return [(shipped[j][1], shipped[j][2]) for j in chosen]


def _farthest(idx: int, n: int) -> list[int]:
    """Indices other than `idx` in 0..n-1, farthest first (ties: the lower index)."""
    return sorted((j for j in range(n) if j != idx), key=lambda j: (-abs(j - idx), j))


def random_tiny(variant: str = "low"):
    """A random-init `tiny` (seed 0) that codes: I-frame output bias at mid-grey so reconstructions
    are not black; the 'high' variant scales the analyses' latents by 16 (more bits, another RD
    point). NOT a trained codec: for running the pipeline before trained checkpoints exist."""
    import torch

    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    scale, bias = {"low": (1.0, 0.5), "high": (16.0, 0.45)}[variant]
    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny"))
    with torch.no_grad():
        model.i_synthesis.out.bias[:6] += bias
        for stage in ("i_analysis", "m_analysis", "r_analysis"):
            getattr(model, stage).out.weight *= scale
            getattr(model, stage).out.bias *= scale
    model.update()
    return model


def load_points(opts: Any, out: Path) -> list[FloatPoint]:
    """The float models: shipped checkpoints, or (none shipped) clearly labelled random-init ones
    saved into OUT/checkpoints/."""
    from mobilecodec.checkpoint import load_checkpoint, save_checkpoint
    from mobilecodec.errors import CheckpointError

    chosen = choose_checkpoints(opts.checkpoint, opts.pairs)
    points = []
    for name, path in chosen:
        model, obj = load_checkpoint(path)
        if not model.ready_for_coding:
            raise CheckpointError(f"checkpoint {path} has no entropy-coding tables (saved before model.update())")
        points.append(FloatPoint(name, Path(path), model, obj.get("beta"), trained=True))
    if points:
        return points
    for variant in ("low", "high")[:opts.pairs]:
        model = random_tiny(variant)
        label = f"{RANDOM_LABEL}_{variant}" if opts.pairs > 1 else RANDOM_LABEL
        path = save_checkpoint(out / "checkpoints" / f"{label}.pt", model,
                               meta={"random_init": True, "note": "untrained; demo fallback"})
        points.append(FloatPoint(label, path, model, None, trained=False))
    return points
