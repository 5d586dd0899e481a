"""The onnxruntime codec engine: a package's graphs in call order on the CPU EP or the QNN HTP EP,
with warp, entropy coding, integer hyper-synthesis and buffer rounding on the host (the very
functions of the PyTorch path), and a per-step clock for the profiler.

`OnnxEngine` has the "engine" interface of `mobilecodec.codec.video` (`model`, `run_iframe`,
`run_pframe`, `encoder_source`, `decoder_source`, `check_padded_size`), so whole-file encode and
decode are the PyTorch path's own functions, and streams are interchangeable between backends.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mobilecodec.errors import InputError

EPS = ("cpu", "qnn")
CONTEXT_FORMAT = "mobilecodec-qnn-context"  # folder written by `mobilecodec compile`


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


class StepClock:
    """Wall time per named step (graph or host step), accumulated per frame and over the run."""

    def __init__(self) -> None:
        self.frames: list[dict[str, float]] = []
        self.current: dict[str, float] = {}
        self.enabled = True

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.enabled:
                self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - t0

    def end_frame(self) -> dict[str, float]:
        """Close the current frame's record and return it."""
        rec, self.current = self.current, {}
        if self.enabled:
            self.frames.append(rec)
        return rec

    def reset(self) -> None:
        self.frames, self.current = [], {}


def resolve_package(package: str | Path, ep: str) -> tuple[Path, dict[str, Path] | None, dict[str, Any] | None]:
    """(float package folder, graph file overrides, context manifest) for `package`, which is an
    export package or a folder written by `mobilecodec compile` (QNN context binaries)."""
    pkg = Path(package)
    if ep not in EPS:
        raise InputError(f"unknown execution provider {ep!r}; use one of {', '.join(EPS)}")
    man_path = pkg / "manifest.json"
    ctx = None
    if man_path.is_file():
        try:
            ctx = json.loads(man_path.read_text())
        except (OSError, json.JSONDecodeError):
            ctx = None  # load_manifest reports it
    if isinstance(ctx, dict) and ctx.get("format") == CONTEXT_FORMAT:
        if ep != "qnn":
            raise InputError(f"{pkg} holds QNN context binaries, which only the QNN HTP runs; use --ep qnn "
                             "(or pass the float export package for --ep cpu)")
        files = {n: pkg / g["context_model"] for n, g in ctx["graphs"].items()}
        return Path(ctx["package"]), files, ctx
    return pkg, None, None


class OnnxEngine:
    """Runs a package's graphs; the buffer travels from `buffer_out.*` graph outputs to
    `buffer_in.*` graph inputs through the host buffer update (as `engine.run_pframe`)."""

    def __init__(self, package: str | Path, *, ep: str = "cpu", graph_files: dict[str, str | Path] | None = None,
                 soc: int | None = None, profile_dir: str | Path | None = None,
                 threads: int | None = None) -> None:
        from export.manifest import load_package_model

        base, ctx_files, self.context = resolve_package(package, ep)
        self.package, self.ep = base, ep
        self.manifest, self.model = load_package_model(base)
        self.model.eval()
        files = {n: base / g["file"] for n, g in self.manifest["graphs"].items()}
        overrides = {**(ctx_files or {}), **{k: Path(v) for k, v in (graph_files or {}).items()}}
        files.update(overrides)
        self.files = files
        self.precision = "int8 (QDQ)" if overrides or self.manifest.get("quantization") else \
            self.manifest.get("precision", "float32")
        if ep == "qnn" and not overrides and not self.manifest.get("quantization"):
            raise InputError(f"{base} holds float graphs; the QNN HTP runs int8 ones: compile the package "
                             "(`mobilecodec compile`) and pass that folder, or pass an int8 package")
        self.profile_dir = Path(profile_dir) if profile_dir else None
        self.sessions = {n: self._session(n, p, soc, threads) for n, p in files.items()
                         if self.manifest["graphs"][n]["used_by_codec"]}
        self.inputs = {n: [i.name for i in s.get_inputs()] for n, s in self.sessions.items()}
        self.outputs = {n: [o.name for o in s.get_outputs()] for n, s in self.sessions.items()}
        self.clock = StepClock()
        self.recorder: dict[str, list[dict[str, np.ndarray]]] | None = None
        names = [e.name for e in self.model.layout]
        self.frame_out = "buffer_out.frame" if "frame" in names else "x_hat"
        self.ref_name = "buffer_in.frame" if "frame" in names else "buffer_in.residual_feat"

    @property
    def label(self) -> str:
        """Backend name for reports."""
        if self.ep == "qnn":
            return "onnxruntime QNN HTP (emulation on x86)" if _is_x86() else "onnxruntime QNN HTP"
        return f"onnxruntime CPU ({self.precision})"

    def _session(self, name: str, path: Path, soc: int | None, threads: int | None) -> Any:
        import onnxruntime as ort

        if self.ep == "qnn":
            from export.qnn import DEFAULT_SOC, SOCS, htp_session_options

            so = htp_session_options(SOCS[soc or DEFAULT_SOC])
        else:
            so = ort.SessionOptions()
            so.log_severity_level = 3
        # no busy-waiting threads after a run: they would steal the cores from the host steps
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            so.intra_op_num_threads = threads
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            so.enable_profiling = True
            so.profile_file_prefix = str(self.profile_dir / f"ort_{name}")
        try:
            if self.ep == "qnn":
                return ort.InferenceSession(str(path), sess_options=so)
            return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            from mobilecodec.errors import ToolError

            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ToolError(f"onnxruntime ({self.ep}) cannot load graph {name} ({path.name}): {msg}") from None

    # the engine interface of mobilecodec.codec.video ------------------------------------------

    @property
    def padded_size(self) -> tuple[int, int]:
        h, w = self.manifest["padded_size"]
        return int(h), int(w)

    def check_padded_size(self, height: int, width: int) -> None:
        """The graphs have static shapes: the stream's padded size must be the package's."""
        if (height, width) != self.padded_size:
            ph, pw = self.padded_size
            raise InputError(f"the video pads to {height}x{width} but package {self.package} was exported for "
                             f"{ph}x{pw}; export a package at that size (mobilecodec export --size {height}x{width})")

    def encoder_source(self, x: Any) -> "OnnxEncoderSource":
        return OnnxEncoderSource(self, x)

    def decoder_source(self, payload: bytes, height: int, width: int) -> Any:
        """The PyTorch path's DecoderSource on the host model, with entropy decoding and the integer
        hyper-synthesis timed apart on this engine's clock."""
        from mobilecodec.codec.engine import DecoderSource

        return DecoderSource(self.model, payload, height, width, clock=self.clock)

    def run(self, graph: str, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph, taking its inputs by name from `env`; returns its outputs by name."""
        feeds = {k: np.ascontiguousarray(env[k], dtype=np.float32) for k in self.inputs[graph]}
        if self.recorder is not None:  # parity checks and compile calibration keep every graph's feeds
            self.recorder.setdefault(graph, []).append(feeds)
        with self.clock.step(graph):
            out = self.sessions[graph].run(None, feeds)
        return dict(zip(self.outputs[graph], out))

    def run_iframe(self, source: Any) -> tuple[Any, Any]:
        """Mirror of `mobilecodec.codec.engine.run_iframe`: (decoded frame tensor, Buffer)."""
        import torch

        y_hat = source.iframe()
        out = self.run("i_synthesis", {"y_hat": _np(y_hat)})
        with self.clock.step("host: buffer update"):
            x_hat = torch.from_numpy(out[self.frame_out])
            feat = torch.from_numpy(out["buffer_out.residual_feat"]) if "buffer_out.residual_feat" in out \
                else x_hat.new_zeros(1, 0, *x_hat.shape[2:])
            buf = self.model.initial_buffer(x_hat, feat)
            result = self._output(buf, x_hat), buf
        self.clock.end_frame()
        return result

    def run_pframe(self, buf: Any, source: Any) -> tuple[Any, Any]:
        """Mirror of `mobilecodec.codec.engine.run_pframe`: (decoded frame tensor, new Buffer)."""
        import torch

        model = self.model
        env = {f"buffer_in.{n}": _np(buf[n]) for n in buf.names()}
        flow = motion_feat = None
        if model.cfg.uses_motion:
            env.update(self.run("motion_predictor", env))
            env["m_hat"] = _np(source.motion(env[self.ref_name], env["flow_pred"]))
            env.update(self.run("m_synthesis", env))
            flow = torch.from_numpy(env["buffer_out.flow"] if "buffer_out.flow" in env else env["flow"])
            motion_feat = torch.from_numpy(env["buffer_out.motion_feat"]) if "buffer_out.motion_feat" in env \
                else flow.new_zeros(1, 0, *flow.shape[2:])
            flow, motion_feat = model.decoded_motion(flow, motion_feat)
        with torch.no_grad(), self.clock.step("host: warp"):
            warped = model.warp(buf, flow)
            env["warped"] = _np(warped)
        if "r_predictor" in self.sessions:
            env.update(self.run("r_predictor", env))
        else:
            with torch.no_grad(), self.clock.step("host: warp"):
                env["pred"] = _np(model.predict(warped))
        cond = (env["warped"],) if model.cfg.conditional else ()
        env["r_hat"] = _np(source.residual(env["pred"], cond))
        env.update(self.run("r_synthesis", env))
        with torch.no_grad(), self.clock.step("host: buffer update"):
            x_hat = torch.from_numpy(env[self.frame_out])
            res_feat = torch.from_numpy(env["buffer_out.residual_feat"]) if "buffer_out.residual_feat" in env \
                else x_hat.new_zeros(1, 0, *x_hat.shape[2:])
            if flow is None:
                flow, motion_feat = model.no_motion(buf[model.layout[0].name])
            new_buf = model.make_buffer(x_hat, res_feat, flow, motion_feat)
            result = self._output(new_buf, x_hat), new_buf
        self.clock.end_frame()
        return result

    def _output(self, buf: Any, x_hat: Any) -> Any:
        from mobilecodec.codec.engine import output_frame

        return output_frame(buf, x_hat)

    def end_profiling(self) -> dict[str, str]:
        """Stop onnxruntime's profilers; returns graph -> JSON trace path."""
        return {n: s.end_profiling() for n, s in self.sessions.items()} if self.profile_dir else {}


class OnnxEncoderSource:
    """Encoder-side latents from the analysis and hyper-analysis graphs, coded on the host with
    `engine.HyperpriorCoder.encode_latents` (the PyTorch path's coder)."""

    def __init__(self, engine: OnnxEngine, x: Any) -> None:
        from mobilecodec.codec.engine import RateStats
        from mobilecodec.entropy.coder import RangeEncoder

        self.engine, self.x = engine, _np(x)
        self.enc = RangeEncoder()
        self.stats = RateStats()

    def _code(self, prefix: str, graph: str, env: dict[str, np.ndarray], lat: str) -> Any:
        from mobilecodec.codec.engine import HyperpriorCoder

        y = self.engine.run(graph, env)[lat]
        z = self.engine.run(f"{prefix}_hyper_analysis", {lat: y})["z"]
        with self.engine.clock.step("host: entropy coding"):
            return HyperpriorCoder(self.engine.model, prefix).encode_latents(y, z, self.enc, self.stats)

    def iframe(self) -> Any:
        return self._code("i", "i_analysis", {"x": self.x}, "y")

    def motion(self, reference: Any, flow_pred: Any) -> Any:
        env = {"x": self.x, self.engine.ref_name: _np(reference), "flow_pred": _np(flow_pred)}
        return self._code("m", "m_analysis", env, "m")

    def residual(self, pred: Any, cond: tuple) -> Any:
        env = {"x": self.x, "pred": _np(pred)}
        if cond:
            env["warped"] = _np(cond[0])
        return self._code("r", "r_analysis", env, "r")

    def payload(self) -> bytes:
        return self.enc.get_bytes()


def _is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
