"""The onnxruntime codec engine, its session layer: a package's graphs as onnxruntime sessions on
the CPU EP or the QNN HTP EP, run through IOBindings with the buffer in preallocated storage-dtype
slots, and a per-step clock for the profiler. The frame steps are the PyTorch path's own
(`codec.frame_coding.iframe_steps` / `pframe_steps` over `runtime.graph_networks.GraphNetworks`), with
warp, entropy coding, integer hyper-synthesis and buffer rounding on the host; the storage-dtype
conversions live in `runtime.storage_io`.

`OnnxEngine` has the "engine" interface of `mobilecodec.codec.video` (`model`, `run_iframe`,
`run_pframe`, `latent_encoder`, `latent_decoder`, `check_padded_size`), so whole-file encode and
decode are the PyTorch path's own functions, and streams are interchangeable between backends.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Iterator

import numpy as np

from mobilecodec.codec.sender import SenderTail
from mobilecodec.errors import InputError
from mobilecodec.export.formats import CONTEXT_FORMAT
from mobilecodec.fsutil import names_inside
from mobilecodec.runtime.storage_io import ORT_DTYPES, as_dtype, storage_io_model
from mobilecodec.tensors import to_numpy

EPS = ("cpu", "qnn")


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
        if ep != "qnn":  # the package it was compiled from, float or int8 ("the float export package" before)
            try:
                source = compiled_package(pkg, ctx)  # where it is now (moved with the folder: its relative name)
            except InputError:
                source = ctx.get("package") or "?"
            raise InputError(f"{pkg} holds QNN context binaries, which only the QNN HTP runs; use --ep qnn "
                             f"(or pass the export package it was compiled from, {source}, for --ep cpu)")
        base = compiled_package(pkg, ctx)  # checks the manifest first
        files = {n: pkg / g["context_model"] for n, g in ctx["graphs"].items()}
        _check_compiled_from(pkg, base, ctx)
        return base, files, ctx
    return pkg, None, None


def _precision(manifest: dict[str, Any], context: dict[str, Any] | None, overridden: bool) -> str:
    """What the graphs run at, for labels: eval draws one RD curve per label, so packages of other
    precisions (W8A8, W8A16 graphs, a compile's stand-in int8 of float graphs) must not share one."""
    q = manifest.get("quantization")
    ctx = context or {}
    standin = [n for n in (ctx.get("quantization") or {}).get("standin_graphs") or []  # the graphs it runs
               if (ctx.get("graphs") or {}).get(n, {}).get("used_by_codec", True)]
    if not q:
        if context is not None:
            return "stand-in int8 of the float graphs (QNN compile)"
        return "int8 (QDQ)" if overridden else str(manifest.get("precision", "float32"))
    a16 = q.get("graphs_16bit") or []
    text = "int8 QDQ, " + (f"W8A16 in {'+'.join(a16)}" if a16 else "W8A8")
    return text + (f"; stand-in int8 (QNN compile) in {'+'.join(standin)}" if standin else "")


def _check_context_manifest(folder: Path, ctx: dict[str, Any]) -> None:
    """InputError where a compile folder's manifest is not one this version reads, lacks what the
    runtime indexes (an internal error before), or a context binary is not the file compiled (one of
    another compile was run as is, and the stream blamed)."""
    from mobilecodec.export.manifest import cached_sha256

    def bad(what: str) -> InputError:
        return InputError(f"{folder}/manifest.json: {what}; compile the package again")

    if ctx.get("version") != 1:
        raise bad(f"compile folder version {ctx.get('version')}, this mobilecodec reads 1")
    graphs = ctx.get("graphs")
    if not isinstance(ctx.get("package"), str) or not isinstance(graphs, dict) or not graphs:
        raise bad("no package or no graphs")
    for name, g in graphs.items():
        if not isinstance(g, dict) or not isinstance(g.get("context_model"), str) or \
                not isinstance(g.get("files"), list):
            raise bad(f"graph {name} has no context model")
        for f, digest in (g.get("sha256") or {}).items():  # none in folders compiled before they were kept
            path = folder / f
            if not names_inside(f) or not path.is_file():
                raise bad(f"{f} ({name}) is missing")
            if cached_sha256(path) != digest:
                raise bad(f"{f} ({name}) is not the binary compiled (changed since)")


def compiled_package(folder: Path, ctx: dict[str, Any]) -> Path:
    """The export package a compile folder was compiled from: named relative to the folder (so that
    the pair can move together), else where it was when compiled (the folder moved alone, or one
    compiled before the relative name was kept). Of the two, the one that is still that package
    (the same weights and graphs) wins: a folder moved beside another package with the same name
    was refused although its own was where it had been."""
    _check_context_manifest(folder, ctx)  # what it indexes, first (callers read it before the engine does)
    where = Path(ctx["package"])
    rel = ctx.get("package_relative")
    candidates = [p for p in ([(folder / rel).resolve()] if rel else []) + [where] if (p / "manifest.json").is_file()]
    for p in candidates:
        try:
            _check_compiled_from(folder, p, ctx)
            return p
        except InputError:
            continue
    if not candidates:  # "no such package folder: X" named neither the compile folder nor what to do
        places = " or ".join(dict.fromkeys(str(p) for p in ([(folder / rel).resolve()] if rel else []) + [where]))
        raise InputError(f"{folder} was compiled from the export package at {places}, and no package is there "
                         "now: put it back beside the folder, or export and compile again")
    return candidates[0]  # the check then says what is wrong with it


def _check_compiled_from(folder: Path, package: Path, ctx: dict[str, Any]) -> None:
    """InputError unless the export package a compile folder names is still the one it was compiled
    from (same weights, each graph the same file): a re-exported package would pair the old context
    binaries with new host tables, and the stream would not decode."""
    from mobilecodec.export.manifest import load_manifest

    man = load_manifest(package)
    absent = sorted(n for n, g in man["graphs"].items() if g["used_by_codec"] and n not in ctx["graphs"])
    if absent:  # that graph ran from the float package on the HTP, and the stream was blamed
        raise InputError(f"{folder}/manifest.json lists no context binary for {', '.join(absent)}; compile the "
                         f"package again: mobilecodec compile {package} -o {folder}")
    changed = [n for n, g in ctx["graphs"].items()
               if g.get("source_sha256") != man["graphs"].get(n, {}).get("sha256")]
    if man["weights_hash"] != ctx.get("weights_hash") or changed:
        what = f"its {', '.join(changed)} graphs have" if changed else "its weights have"
        raise InputError(f"{folder} was compiled from {package}, but {what} changed since (exported again?); "
                         f"compile it again: mobilecodec compile {package} -o {folder}")


class OnnxEngine:
    """Runs a package's graphs; the buffer travels from `buffer_out.*` graph outputs to
    `buffer_in.*` graph inputs.

    On the CPU EP the buffer crosses graph boundaries at its storage dtype (uint8 frame, int16
    flow at 1/256 px, float16 features: `models.buffer.STORAGE_DTYPES`): each graph gets a
    prologue/epilogue that does exactly the host's `snap_to_storage` arithmetic, so results are
    bit-identical to rounding on the host. Every graph runs through an IOBinding onto preallocated
    output arrays; the stored buffer lives in two preallocated sets of arrays used in turn
    (ping-pong): frame t's `buffer_out.*` are bound as outputs into one set, which frame t+1 binds
    as its `buffer_in.*` inputs, without a copy. The float tensors handed to the host warp and to
    the caller are fresh arrays (converted from the stored ones), so callers may keep them."""

    def __init__(self, package: str | Path, *, ep: str = "cpu", graph_files: dict[str, str | Path] | None = None,
                 soc: int | None = None, profile_dir: str | Path | None = None,
                 threads: int | None = None, storage_io: bool = True) -> None:
        from mobilecodec.export.manifest import load_package_model

        base, ctx_files, self.context = resolve_package(package, ep)
        # `package`: the export package (a compile folder's source); `source`: the folder given
        self.package, self.source, self.ep = base, Path(package), ep
        self.manifest, self.model, self.checkpoint = load_package_model(base)
        self.model.eval()
        files = {n: base / g["file"] for n, g in self.manifest["graphs"].items()}
        overrides = {**(ctx_files or {}), **{k: Path(v) for k, v in (graph_files or {}).items()}}
        files.update(overrides)
        self.files = files
        self.precision = _precision(self.manifest, self.context, bool(overrides))
        if ep == "qnn" and not overrides and not self.manifest.get("quantization"):
            raise InputError(f"{base} holds float graphs; the QNN HTP runs int8 ones: compile the package "
                             "(`mobilecodec compile`) and pass that folder, or pass an int8 package")
        self.profile_dir = Path(profile_dir) if profile_dir else None
        self.storage_io = bool(storage_io) and ep == "cpu"  # QNN context binaries keep their float I/O
        self.threads = threads
        # a compile folder runs on the SoC it was compiled for (every folder opened with the default)
        self.soc_model = soc if soc is not None else ((self.context or {}).get("soc") or {}).get("soc_model")
        if ep == "qnn" and self.soc_model is not None:
            from mobilecodec.export.qnn import resolve_soc

            resolve_soc(self.soc_model)  # one this version knows, else one line naming the known ones
        self.wrapped: set[str] = set()  # graphs whose buffer I/O is at the storage dtypes
        self._run_sessions = {n: self._session(n, p, self.soc_model, threads) for n, p in files.items()
                              if self.manifest["graphs"][n]["used_by_codec"]}
        self.sessions = _FloatSessions(self)
        self.inputs = {n: [i.name for i in s.get_inputs()] for n, s in self._run_sessions.items()}
        self.outputs = {n: [o.name for o in s.get_outputs()] for n, s in self._run_sessions.items()}
        self.io_dtypes = {n: {v.name: ORT_DTYPES[v.type] for v in (*s.get_inputs(), *s.get_outputs())}
                          for n, s in self._run_sessions.items()}
        self.clock = StepClock()
        self.recorder: dict[str, list[dict[str, np.ndarray]]] | None = None
        names = [e.name for e in self.model.layout]
        self.frame_out = "buffer_out.frame" if "frame" in names else "x_hat"
        self.ref_name = "buffer_in.frame" if "frame" in names else "buffer_in.residual_feat"
        self._bindings = {n: s.io_binding() for n, s in self._run_sessions.items()}
        self._outs: dict[str, dict[str, np.ndarray]] = {n: {} for n in self._run_sessions}  # allocated on first run
        h, w = self.padded_size
        self._slots = [{e.name: np.zeros(e.shape(h, w), self.storage_dtype(e.name)) for e in self.model.layout}
                       for _ in range(2)]
        self._cur = 0  # the slot holding the current buffer (what the next frame reads)
        self._last_buf: Any = None  # the Buffer the current slot holds

    @property
    def label(self) -> str:
        """Backend name for reports."""
        if self.ep == "qnn":
            return f"onnxruntime QNN HTP ({'emulation on x86, ' if _is_x86() else ''}{self.precision})"
        return f"onnxruntime CPU ({self.precision})"

    def storage_dtype(self, name: str) -> str:
        """dtype at which buffer entry `name` crosses graph boundaries in this engine."""
        from mobilecodec.models.buffer import STORAGE_DTYPES

        return STORAGE_DTYPES[name] if self.storage_io else "float32"

    def _session(self, name: str, path: Path, soc: int | None, threads: int | None) -> Any:
        """One onnxruntime session; on the CPU EP, buffer I/O at the storage dtypes (`storage_io_model`)."""
        import onnxruntime as ort

        from mobilecodec.runtime.threads import session_options

        if self.ep == "qnn":
            from mobilecodec.export.qnn import DEFAULT_SOC, SOCS, htp_session_options

            so = session_options(threads, htp_session_options(SOCS[soc or DEFAULT_SOC]))
        else:
            so = session_options(threads)
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            so.enable_profiling = True
            so.profile_file_prefix = str(self.profile_dir / f"ort_{name}")
        try:
            if self.ep == "qnn":
                from mobilecodec.nativeio import NATIVE_NOISE, native_stdout

                with native_stdout("stderr", drop=NATIVE_NOISE):
                    return ort.InferenceSession(str(path), sess_options=so)
            import onnx

            from mobilecodec.runtime.narrow_conv import pad_narrow_convs
            from mobilecodec.runtime.polyphase import polyphase_conv_transpose

            proto = onnx.load(str(path))
            changed = polyphase_conv_transpose(proto) > 0  # int8 ConvTranspose -> QLinearConv phases
            changed = pad_narrow_convs(proto) > 0 or changed  # 2- and 6-channel outputs at 16 channels
            if self.storage_io and storage_io_model(proto):
                changed = True
                self.wrapped.add(name)
            model: Any = proto.SerializeToString() if changed else str(path)
            return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            from mobilecodec.errors import ToolError, one_line

            raise ToolError(f"onnxruntime ({self.ep}) cannot load graph {name} ({path.name}): "
                            f"{one_line(exc)}") from None

    # the engine interface of mobilecodec.codec.video ------------------------------------------

    @property
    def padded_size(self) -> tuple[int, int]:
        h, w = self.manifest["padded_size"]
        return int(h), int(w)

    def provenance(self) -> dict[str, Any]:
        """What a result coded by this engine records of it: the folder given, the backend and, for a
        `mobilecodec compile` folder, its export package and target SoC (encode and decode named the
        float export package alone, beside the QNN backend, which cannot run it)."""
        out: dict[str, Any] = {"package": os.path.abspath(self.source), "backend": self.label}  # absolute, as
        if self.context is not None:                                          # the streams: read elsewhere
            out.update(export_package=os.path.abspath(self.package), soc=self.context.get("soc"))
        return out

    def check_padded_size(self, height: int, width: int, picture: tuple[int, int] | None = None) -> None:
        """The graphs have static shapes: the stream's padded size must be the package's. `picture`:
        the frame's own (height, width), which the export to suggest is given (it records it as the
        original size; the padded size suggested before recorded that instead)."""
        if (height, width) != self.padded_size:
            ph, pw = self.padded_size
            swapped = (" (export's --size is HEIGHTxWIDTH, unlike encode's WxH: was it given as WxH?)"
                       if (height, width) == (pw, ph) else "")
            size = "x".join(map(str, picture or (height, width)))
            raise InputError(f"the video pads to {height}x{width} (HxW) but package {self.package} was exported for "
                             f"{ph}x{pw}{swapped}; export a package for it (mobilecodec export --size {size})")

    def latent_encoder(self, x: Any, modes: Any = None, picture: tuple[int, int] | None = None) -> "OnnxLatentEncoder":
        """`modes`: the sender's block-mode search (`codec.block_modes.BlockModeOptions`, None: off),
        chosen over `picture`, the frame's (height, width) before padding."""
        return OnnxLatentEncoder(self, x, modes, picture)

    def latent_decoder(self, payload: bytes, height: int, width: int, mode_map: Any = None) -> Any:
        """The PyTorch path's LatentDecoder on the host model, with entropy decoding and the integer
        hyper-synthesis timed apart on this engine's clock (`mode_map`: where the stream's block
        modes lie, `codec.block_modes.ModeMap`; None: none)."""
        from mobilecodec.codec.frame_coding import LatentDecoder

        return LatentDecoder(self.model, payload, height, width, clock=self.clock, mode_map=mode_map)

    @property
    def run_sessions(self) -> dict[str, Any]:
        """graph -> the onnxruntime session the codec runs (storage-dtype buffer I/O on the CPU EP)."""
        return self._run_sessions

    def random_feeds(self, graph: str, seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs for `run_sessions[graph]`: uniform [0, 1) floats, buffer inputs converted
        to their storage dtype (what the profiler times each graph alone on)."""
        rng = np.random.default_rng(seed)
        sess, dtypes = self._run_sessions[graph], self.io_dtypes[graph]
        return {i.name: as_dtype(i.name, rng.random(i.shape, dtype=np.float32), dtypes[i.name])
                for i in sess.get_inputs()}

    def run(self, graph: str, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph through its IOBinding, taking its inputs by name from `env` (converted to
        the graph's input dtype when needed: float <-> storage dtype of buffer entries). Outputs go
        into preallocated arrays reused by the next run of the same graph; with storage-dtype I/O,
        `buffer_out.*` go straight into the next buffer slot. Returns the outputs by name."""
        dtypes = self.io_dtypes[graph]
        feeds = {k: as_dtype(k, env[k], dtypes[k]) for k in self.inputs[graph]}
        if self.recorder is not None:  # parity checks and compile calibration keep every graph's float feeds
            self.recorder.setdefault(graph, []).append(
                {k: np.array(as_dtype(k, v, "float32")) for k, v in feeds.items()})
        nxt = self._slots[1 - self._cur]
        io = self._bindings[graph]
        result = {}
        for k, v in feeds.items():
            io.bind_cpu_input(k, v)
        for k in self.outputs[graph]:
            entry = k.split(".", 1)[1] if k.startswith("buffer_out.") else None
            if self.storage_io and entry in nxt and nxt[entry].dtype == np.dtype(dtypes[k]):
                arr = nxt[entry]  # ping-pong: written where the next frame reads it
            else:
                arr = self._outs[graph].get(k)
                if arr is None:
                    shape = [o.shape for o in self._run_sessions[graph].get_outputs() if o.name == k][0]
                    arr = self._outs[graph][k] = np.empty(shape, dtypes[k])
            io.bind_output(k, "cpu", 0, arr.dtype.type, list(arr.shape), arr.ctypes.data)
            result[k] = arr
        with self.clock.step(graph):
            self._run_sessions[graph].run_with_iobinding(io)
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        return result

    # the buffer: stored arrays (graph I/O) <-> float tensors (host warp, caller) ----------------

    def entry_float(self, name: str, arr: np.ndarray) -> Any:
        """Float tensor of buffer entry `name` from a graph output: the stored values converted, or
        a float output snapped to its storage grid on the host (`snap_to_storage`). A new tensor."""
        import torch

        from mobilecodec.models.buffer import snap_to_storage

        if arr.dtype != np.float32:
            return torch.from_numpy(as_dtype(name, arr, "float32"))
        return snap_to_storage(name, torch.from_numpy(arr))

    def buffer_inputs(self, buf: Any) -> dict[str, np.ndarray]:
        """`buffer_in.*` arrays for a P-frame on `buf`: the current slot as the last frame's graphs
        wrote it (no copy), or `buf` converted into it when the caller passes another buffer."""
        slot = self._slots[self._cur]
        if buf is not self._last_buf:
            for n in slot:
                slot[n][...] = as_dtype(n, to_numpy(buf[n]), slot[n].dtype.name)
        return {f"buffer_in.{n}": a for n, a in slot.items()}

    def commit_buffer(self, written: dict[str, np.ndarray], floats: dict[str, Any]) -> Any:
        """Finish a frame: the next slot becomes the current buffer (entries a graph wrote there are
        in place; the others are stored from `floats`); returns the Buffer of float tensors."""
        from mobilecodec.models.buffer import Buffer

        nxt = self._slots[1 - self._cur]
        for n, arr in nxt.items():
            if written.get(f"buffer_out.{n}") is not arr:
                arr[...] = as_dtype(n, to_numpy(floats[n]), arr.dtype.name)
        self._cur = 1 - self._cur
        buf = Buffer({e.name: floats[e.name] for e in self.model.layout})
        self._last_buf = buf
        return buf

    def decoded_frame(self, out: dict[str, np.ndarray]) -> Any:
        """The reconstruction: the stored frame as float (uint8 levels), or raw x_hat (a copy)."""
        import torch

        arr = out[self.frame_out]
        return self.entry_float("frame", arr) if self.frame_out == "buffer_out.frame" else torch.from_numpy(arr.copy())

    def run_iframe(self, source: Any) -> tuple[Any, Any]:
        """`mobilecodec.codec.frame_coding.iframe_steps` on this engine's graphs: (decoded frame tensor, Buffer)."""
        import torch

        from mobilecodec.codec.frame_coding import iframe_steps
        from mobilecodec.runtime.graph_networks import GraphNetworks

        with torch.no_grad():
            result = iframe_steps(GraphNetworks(self), source)
        self.clock.end_frame()
        return result

    def run_pframe(self, buf: Any, source: Any) -> tuple[Any, Any]:
        """`mobilecodec.codec.frame_coding.pframe_steps` on this engine's graphs: (decoded frame tensor, new Buffer)."""
        import torch

        from mobilecodec.codec.frame_coding import pframe_steps
        from mobilecodec.runtime.graph_networks import GraphNetworks

        with torch.no_grad():
            nets = GraphNetworks(self, buf)
            if isinstance(source, OnnxLatentEncoder):
                source.buffer, source.nets = buf, nets  # the block-mode trial runs this frame's graphs
            result = pframe_steps(nets, buf, source)
        self.clock.end_frame()
        return result

    def end_profiling(self) -> dict[str, str]:
        """Stop onnxruntime's profilers; returns graph -> JSON trace path."""
        return {n: s.end_profiling() for n, s in self._run_sessions.items()} if self.profile_dir else {}


class OnnxLatentEncoder(SenderTail):
    """Encoder-side latents from the analysis and hyper-analysis graphs, coded on the host with
    `codec.frame_coding.HyperpriorCoder.encode_latents` (the PyTorch path's coder)."""

    def __init__(self, engine: OnnxEngine, x: Any, modes: Any = None, picture: tuple[int, int] | None = None) -> None:
        from mobilecodec.codec.frame_coding import BlockModeSender, RateStats
        from mobilecodec.entropy.coder import RangeEncoder

        self.engine, self.x = engine, to_numpy(x)
        self.enc = RangeEncoder()
        self.stats = RateStats()
        # the block-mode search (codec.block_modes), None: off; the engine gives the P-frame's
        # buffer and graphs (`buffer`, `nets`) before the step, for the trial of the residual
        self.modes = None if modes is None else BlockModeSender(modes, self.x, picture, self.enc, self.stats,
                                                                 engine.clock)
        self.buffer: Any = None
        self.nets: Any = None

    def _code(self, prefix: str, graph: str, env: dict[str, np.ndarray], lat: str, refine=None) -> Any:
        """Analysis and hyper-analysis graphs, then the host's coder; `refine(coder, y, z)` (optional)
        gives `encode_latents` its refine callback."""
        from mobilecodec.codec.frame_coding import HyperpriorCoder

        y = self.engine.run(graph, env)[lat]
        z = self.engine.run(f"{prefix}_hyper_analysis", {lat: y})["z"]
        coder = HyperpriorCoder(self.engine.model, prefix)
        return coder.encode_latents(y, z, self.enc, self.stats, clock=self.engine.clock,
                                    refine=None if refine is None else refine(coder, y, z))

    def iframe(self) -> Any:
        return self._code("i", "i_analysis", {"x": self.x}, "y")

    def motion(self, reference: Any, flow_pred: Any) -> Any:
        import torch

        from mobilecodec.codec.frame_coding import step_timer

        ref = to_numpy(reference)
        hint = to_numpy(flow_pred)
        if self.engine.model.cfg.motion_hint != "none":  # sender-side motion search (host)
            with step_timer(self.engine.clock)("host: motion search"):
                # the reference may arrive at its storage dtype (uint8 frame): search on the same
                # float frame the PyTorch path sees, so both backends send the same hint
                ref_f = self.engine.entry_float("frame", ref)
                hint = to_numpy(self.engine.model.motion_hint(torch.from_numpy(self.x), ref_f,
                                                              torch.from_numpy(hint)))
        env = {"x": self.x, self.engine.ref_name: ref, "flow_pred": hint}
        return self._code("m", "m_analysis", env, "m")

    def residual(self, pred: Any, cond: tuple) -> Any:
        env = {"x": self.x, "pred": to_numpy(pred)}
        if cond:
            env["warped"] = to_numpy(cond[0])
        if self.modes is None or self.nets is None or self.buffer is None or "frame" not in self.buffer:
            return self._code("r", "r_analysis", env, "r")

        def drop_unused(coder: Any, y: np.ndarray, z: np.ndarray):
            # block modes: a trial of the frame on these graphs picks the modes (BlockModeSender)
            def keep_or_mean(mean: np.ndarray, idx: np.ndarray) -> np.ndarray:
                trial, _ = self.nets.synthesize_residual(coder.dequantize(y, mean, idx), pred, cond)
                return self.modes.keep_or_mean(trial, pred, self.buffer["frame"], y, mean)
            return keep_or_mean
        return self._code("r", "r_analysis", env, "r", refine=drop_unused)


def _is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


class _FloatSessions(Mapping):
    """graph -> a session with the package's own float interface (what `mobilecodec.runtime.parity` feeds
    recorded float inputs to): the codec's session where its I/O is unchanged, else a session on
    the unmodified graph file, created on first use."""

    def __init__(self, engine: "OnnxEngine") -> None:
        self.engine = engine
        self.cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        e = self.engine
        if name not in e.wrapped:
            return e.run_sessions[name]
        if name not in self.cache:
            import onnxruntime as ort

            from mobilecodec.runtime.threads import session_options

            self.cache[name] = ort.InferenceSession(str(e.files[name]), session_options(e.threads),
                                                    providers=["CPUExecutionProvider"])
        return self.cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.engine.run_sessions)

    def __len__(self) -> int:
        return len(self.engine.run_sessions)

