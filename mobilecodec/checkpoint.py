"""Checkpoints that load without flags: each records its config, beta and format version.

Layout (torch.save of a dict): {"format": "mobilecodec-checkpoint", "version": 1,
"mobilecodec_version", "config": CodecConfig.to_dict(), "beta", "state_dict", "meta"}.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilecodec.errors import CheckpointError, InputError, one_line

if TYPE_CHECKING:
    from mobilecodec.models.configs import CodecConfig

FORMAT = "mobilecodec-checkpoint"
VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"


def save_checkpoint(path: str | os.PathLike, model, *, beta: float | None = None,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (a VideoCodec) with its config, atomically."""
    from mobilecodec import __version__

    obj = {"format": FORMAT, "version": VERSION, "mobilecodec_version": __version__,
           "config": model.cfg.to_dict(), "beta": beta, "state_dict": model.state_dict(),
           "meta": dict(meta or {})}
    path = Path(path)
    save_torch_file(path, obj)
    return path


def save_torch_file(path: str | os.PathLike, obj: Any) -> None:
    """torch.save `obj` to `path` atomically, the same bytes for the same `obj`: torch names the zip
    archive inside after a path's file name, here the temporary file's random one, so a file object."""
    import torch

    from mobilecodec.fsutil import atomic_path

    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as exc:  # torch's zip writer reports a short write (a full disk) as its own error;
        # the path as the OSError's file name, so that a folder being written names it where it goes
        import errno

        raise OSError(errno.EIO, f"cannot write it whole (torch: {one_line(exc, 120)}; is the disk full, or a "
                      "file size limit reached?)", str(path)) from None


def load_torch_file(path: str | os.PathLike, what: str = "") -> Any:
    """torch.load (tensors and plain containers only) on CPU; an unreadable file is a
    CheckpointError naming it (`what` prefixes the path in the message, e.g. "checkpoint ")."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        import zipfile

        if not zipfile.is_zipfile(path):  # torch's own message is advice on its pickle options
            raise CheckpointError(f"cannot read {what}{path}: not a file torch.save writes") from None
        raise CheckpointError(f"cannot read {what}{path}: {one_line(exc, 200)}") from None


def read_run_state(run_dir: str | os.PathLike, filename: str, fmt: str, version: int, what: str) -> dict[str, Any]:
    """The resumable state file `filename` of a run folder (trainer, QAT), checked for its format
    tag and version: InputError when there is nothing to resume, CheckpointError when it is not one."""
    p = Path(run_dir) / filename
    if not p.is_file():
        raise InputError(f"{run_dir}: nothing to resume (no {filename}); start without --resume")
    state = load_torch_file(p)
    if not isinstance(state, dict) or state.get("format") != fmt or state.get("version") != version:
        raise CheckpointError(f"{p} is not a mobilecodec {what} state (version {version})")
    return state


#: where the other things a user may pass as a checkpoint go
ELSEWHERE = "(an int8 `ptq`/`qat` folder goes to `export --int8` or `check-int8 --int8`, an export package to --package)"
#: what a mobilecodec file or folder that is no checkpoint is for: the generic ELSEWHERE named --int8 to
#: encode, eval and decode, which have none, and nothing fit for a training run (walk-through audit)
_INT8 = "(an int8 folder: give it to `export --int8` or `check-int8 --int8`; encode and eval code it through its export package, --package)"
_RUN = "(a training run's: its checkpoints are final.pt and last.pt in the run folder)"
_PACKAGE = "(an export package or compile folder: give it to --package)"
_ELSEWHERE_BY_FORMAT = {"mobilecodec-quantized": _INT8, "mobilecodec-qat-state": _INT8,
                        "mobilecodec-trainer-state": _RUN}

#: every hint `elsewhere` gives, for a caller that gives its own advice instead (the demo)
ELSEWHERE_HINTS = (ELSEWHERE, _INT8, _RUN, _PACKAGE)


def elsewhere(path: Path, fmt: str | None = None) -> str:
    """The hint for a path given as a checkpoint that is something else (`fmt`: its file's format)."""
    if fmt is not None:
        return _ELSEWHERE_BY_FORMAT.get(fmt, ELSEWHERE)
    if (path / "quantized.pt").is_file():
        return _INT8
    if (path / "manifest.json").is_file():
        return _PACKAGE
    if any((path / n).is_file() for n in ("trainer_state.pt", "last.pt", "final.pt")):
        return _RUN
    return ELSEWHERE


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate the checkpoint dict (no model is built)."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a folder; a checkpoint is one .pt file {elsewhere(p)}")
    if not p.is_file():
        shipped = shipped_checkpoints()
        hint = f"; shipped checkpoints: {', '.join(sorted(shipped))}" if shipped else ""
        raise CheckpointError(f"no such checkpoint: {p}{hint}")
    obj = load_torch_file(p, "checkpoint ")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        other = obj.get("format") if isinstance(obj, dict) else None
        if isinstance(other, str) and other.startswith("mobilecodec-"):  # e.g. a ptq folder's quantized.pt
            raise CheckpointError(f"{p} is not a mobilecodec checkpoint but a {other} file {elsewhere(p, other)}")
        raise CheckpointError(f"{p} is not a mobilecodec checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{p} has checkpoint format version {obj.get('version')}; "
                              f"this mobilecodec reads version {VERSION}")
    for key in ("config", "state_dict"):
        if key not in obj:
            raise CheckpointError(f"checkpoint {p} lacks {key!r}")
    return obj


def checkpoint_config(obj: dict, where: str) -> CodecConfig:
    """The CodecConfig a checkpoint dict records; CheckpointError naming `where` if it is not one."""
    from mobilecodec.models.configs import CodecConfig

    try:
        return CodecConfig.from_dict(obj["config"])
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{where} records an invalid config: {exc}") from None


def load_checkpoint(path: str | os.PathLike, expect_config: str | None = None):
    """Build the VideoCodec recorded in `path` and load its weights; returns (model, checkpoint dict).

    `expect_config` (a config name) makes a mismatch an error instead of a surprise."""
    from mobilecodec.models.codec import VideoCodec

    obj = read_checkpoint(resolve_checkpoint(path))
    cfg = checkpoint_config(obj, f"checkpoint {path}")
    if expect_config is not None and cfg.name != expect_config:
        raise CheckpointError(f"checkpoint {path} is config {cfg.name!r}, expected {expect_config!r}")
    model = VideoCodec(cfg)
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"checkpoint {path} does not match config {cfg.name!r}: "
                              f"{' '.join(first[:3])[:400]}") from None
    model.eval()
    return model, obj


def shipped_checkpoints() -> dict[str, Path]:
    """Checkpoints installed with the package, by file stem."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.pt"))}


def shipped_checkpoint_of(config_id: str, weights_hash: bytes) -> Path | None:
    """The shipped checkpoint whose model a stream header names (config id and weights hash), or None."""
    for path in shipped_checkpoints().values():
        model, _ = load_checkpoint(path)
        if model.cfg.stream_id() == config_id and model.weights_hash() == bytes(weights_hash):
            return path
    return None


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A path, or the stem of a shipped checkpoint (e.g. 'tiny_b0.0016')."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = shipped_checkpoints()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    return p
