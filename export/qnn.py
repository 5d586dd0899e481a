"""onnxruntime-qnn: plugin-EP registration, HTP sessions (emulated on x86, real on device) and
QNN context binaries (EPContext ONNX + .bin) for a chosen Snapdragon SoC."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilecodec.errors import InputError, ToolError, one_line
from mobilecodec.nativeio import NATIVE_NOISE, native_stdout

EP_NAME = "QNNExecutionProvider"


@dataclass(frozen=True)
class Soc:
    """A Snapdragon SoC as QNN numbers it (`soc_model`) with its HTP architecture version."""

    soc_model: int
    name: str
    htp_arch: int


# QNN SDK soc_model numbers; the HTP (Hexagon tensor processor) version of each.
SOCS: dict[int, Soc] = {s.soc_model: s for s in (
    Soc(36, "Snapdragon 8 Gen 1 (SM8450)", 69),
    Soc(42, "Snapdragon 8+ Gen 1 (SM8475)", 69),
    Soc(43, "Snapdragon 8 Gen 2 (SM8550)", 73),
    Soc(57, "Snapdragon 8 Gen 3 (SM8650)", 75),
    Soc(60, "Snapdragon X Elite (SC8380XP)", 73),
    Soc(69, "Snapdragon 8 Elite (SM8750)", 79),
)}
DEFAULT_SOC = 43  # Snapdragon 8 Gen 2, HTP v73 (the MobileNVC paper's class of phone)


def resolve_soc(soc_model: int, htp_arch: int | None = None) -> Soc:
    """The known SoC `soc_model`; `htp_arch`, if given, must match it. InputError otherwise."""
    if soc_model not in SOCS:
        known = ", ".join(f"{s.soc_model} ({s.name}, v{s.htp_arch})" for s in SOCS.values())
        raise InputError(f"unknown SoC model {soc_model}; known: {known}")
    soc = SOCS[soc_model]
    if htp_arch is not None and htp_arch != soc.htp_arch:
        raise InputError(f"SoC {soc_model} ({soc.name}) has HTP v{soc.htp_arch}, not v{htp_arch}")
    return soc


_REGISTERED: list[Any] = []


def qnn_devices() -> list[Any]:
    """Register the onnxruntime-qnn plugin library once and return its EP devices."""
    try:
        import onnxruntime as ort
        import onnxruntime_qnn
    except ImportError as exc:
        raise ToolError(f"onnxruntime-qnn is not installed: {exc}") from None
    if not _REGISTERED:
        if not any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):
            ort.register_execution_provider_library(EP_NAME, onnxruntime_qnn.get_library_path())
        _REGISTERED.append(True)
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise ToolError("onnxruntime-qnn registered no QNN device")
    return devices


def htp_session_options(soc: Soc, *, context_path: str | Path | None = None, embed: bool = False,
                        log_severity: int = 3) -> Any:
    """SessionOptions for the QNN HTP backend with CPU fallback disabled (a graph compiles whole
    onto the NPU or fails); with `context_path` the session also writes an EPContext model."""
    import onnxruntime as ort
    import onnxruntime_qnn

    so = ort.SessionOptions()
    so.log_severity_level = log_severity  # 3: errors; 4 (fatal only) where a refusal is the expected answer
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if context_path is not None:
        so.add_session_config_entry("ep.context_enable", "1")
        so.add_session_config_entry("ep.context_file_path", str(context_path))
        so.add_session_config_entry("ep.context_embed_mode", "1" if embed else "0")
    so.add_provider_for_devices(qnn_devices(), {
        "backend_path": onnxruntime_qnn.get_qnn_htp_path(), "htp_arch": str(soc.htp_arch),
        "soc_model": str(soc.soc_model), "htp_graph_finalization_optimization_mode": "3"})
    return so


def htp_session(model_path: str | Path, soc: Soc | None = None, **kw: Any) -> Any:
    """An InferenceSession running `model_path` (QDQ or EPContext ONNX) wholly on the QNN HTP."""
    import onnxruntime as ort

    soc = soc or SOCS[DEFAULT_SOC]
    try:
        # QNN's HTP libraries print a line to stdout as they load ("# LIBNATIVE: No alternate
        # configuration ..."), which would land in a command's output and break `--json -`: dropped
        with native_stdout("stderr", drop=NATIVE_NOISE):
            return ort.InferenceSession(str(model_path), sess_options=htp_session_options(soc, **kw))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ToolError(f"QNN HTP could not compile {Path(model_path).name}: {one_line(exc)}") from None


def compile_context(qdq_path: str | Path, out_path: str | Path, soc: Soc) -> list[Path]:
    """Compile a QDQ graph to a QNN context binary: `out_path` (EPContext ONNX) + `<stem>_qnn.bin`.

    Returns the files written."""
    out = Path(out_path)
    before = set(out.parent.iterdir())
    htp_session(qdq_path, soc, context_path=out)
    written = sorted(set(out.parent.iterdir()) - before)
    if out not in written:
        raise ToolError(f"QNN wrote no EPContext model for {Path(qdq_path).name}")
    return written
