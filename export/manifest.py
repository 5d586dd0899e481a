"""The package manifest: graphs with their I/O, call order per frame type, buffer layout, config.

A package folder holds `manifest.json`, `graphs/<stage>.onnx` and `checkpoint.pt` (the host side:
entropy tables and the exact-integer hyper-synthesis). `load_manifest` validates a folder.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilecodec.errors import InputError
from mobilecodec.export.formats import MANIFEST, PACKAGE_FORMAT as FORMAT
from mobilecodec.fsutil import names_inside
from mobilecodec.models.subnetworks import stage_sides

if TYPE_CHECKING:  # pragma: no cover
    from mobilecodec.models.codec import VideoCodec

VERSION = 1


def _g(graph: str) -> dict[str, Any]:
    """A network step, run by the sides `stage_sides` gives its stage."""
    sides = "+".join(side for side, runs in zip(("sender", "receiver"), stage_sides(graph)) if runs)
    return {"run": "npu", "graph": graph, "sides": sides}


def _h(op: str, sides: str, what: str) -> dict[str, Any]:
    return {"run": "host", "op": op, "sides": sides, "what": what}


def _entropy(prefix: str, lat: str) -> list[dict[str, Any]]:
    return [
        _h("code_hyper_latent", "sender+receiver",
           f"sender: z_int = clamp(round(z)), factorized-prior range coding; receiver: decode z_int ({prefix}_z_prior)"),
        _h("integer_hyper_synthesis", "sender+receiver",
           f"exact-integer {prefix}_hyper_synthesis(z_int) -> mean, scale-table index (bit-exact on every backend)"),
        _h("code_latent", "sender+receiver",
           f"sender: sym = round({lat} - mean) clipped to its index's table range, coded with the Gaussian table "
           f"of each index; receiver: decode; "
           f"{lat}_hat = sym + mean"),
    ]


#: how each buffered tensor is rounded before it is carried to the next frame (`models.buffer.snap_to_storage`,
#: on every backend): a receiver that carries the float outputs decodes other frames than the sender's
STORAGE_RULES = {"frame": "round(v*255)/255 (uint8 levels)", "flow": "round(v*256)/256 clamped to int16 (1/256 px)",
                 "motion_feat": "float16(v)", "residual_feat": "float16(v)"}


def storage(name: str) -> dict[str, Any]:
    """A buffer entry's storage: its type, the scale its integer holds the value at, and the rounding."""
    from mobilecodec.models.buffer import FLOW_SCALE, STORAGE_DTYPES

    scale = {"uint8": 255.0, "int16": FLOW_SCALE}.get(STORAGE_DTYPES[name], 1.0)
    return {"dtype": STORAGE_DTYPES[name], "scale": scale, "rounding": STORAGE_RULES[name]}


def _buffer_update(names: list[str], sources: dict[str, str]) -> dict[str, Any]:
    """The host step that rounds each new buffer value to its storage (`STORAGE_RULES`) and keeps it:
    `sources` names the graph whose buffer_out.<name> (the frame: its decoded frame) is stored, or 0."""
    parts = [f"{n} = 0" if sources[n] == "0" else f"{n} = {STORAGE_RULES[n].replace('v', n, 1)} of {sources[n]}"
             for n in names]
    return _h("buffer_update", "sender+receiver", "; ".join(parts) + "; the next frame reads the stored values")


def call_order(model: "VideoCodec") -> dict[str, list[dict[str, Any]]]:
    """Steps of one I-frame and one P-frame: NPU graphs and host steps, with the side running each."""
    names = [e.name for e in model.layout]
    iframe = [_g("i_analysis"), _g("i_hyper_analysis"), *_entropy("i", "y"),
              _g("i_synthesis"),
              _buffer_update(names, {"frame": "i_synthesis (also the decoded frame)", "flow": "0", "motion_feat": "0",
                                     "residual_feat": "i_synthesis"})]
    pframe: list[dict[str, Any]] = []
    cfg = model.cfg
    if cfg.uses_motion:
        pframe.append(_g("motion_predictor"))
        if cfg.motion_hint != "none":  # the sender's block matching feeds m_analysis, not the prediction itself
            ref = "frame" if "frame" in names else "residual_feat"
            pframe.append(_h("motion_search", "sender",
                             f"flow_pred input of m_analysis = block_match(buffer {ref}, x; block {cfg.warp.block_size}, "
                             f"radius {cfg.motion_search_radius} luma px) - flow_pred"
                             + (" where the match beats zero motion by more than MIN_GAIN_LEVELS, else 0"
                                if cfg.motion_hint_confident_only else "")
                             + "; mobilecodec.models.motion_search.block_match is the reference"))
        pframe += [_g("m_analysis"),
                   _g("m_hyper_analysis"), *_entropy("m", "m"), _g("m_synthesis"),
                   _h("warp", "sender+receiver",
                      f"{cfg.warp.mode} warp (block {cfg.warp.block_size}"
                      + (f", overlap {cfg.warp.overlap}" if cfg.warp.effective_overlap else "")
                      + ") of buffer " + " and ".join(n for n in ("frame", "residual_feat")
                                                                     if n in names)
                      + " with this frame's block flow from m_synthesis, rounded as stored: "
                      + STORAGE_RULES["flow"].replace("v", "flow", 1))]
    if "r_predictor" in model.stages():
        pframe.append(_g("r_predictor"))
    else:
        pframe.append(_h("predict", "sender+receiver", "pred = warped frame (first 6 channels of warped)"
                         if cfg.uses_motion else "pred = buffer frame (no motion)"))
    pframe += [_g("r_analysis"), _g("r_hyper_analysis"), *_entropy("r", "r"),
               _g("r_synthesis")]
    if "frame" in names:  # what encode --block-modes adds (codec.block_modes; the stream's header flags say so)
        pframe.append(_h("block_modes", "sender+receiver",
                         "only in streams whose header flags block modes (block size B there): a mode per visible BxB "
                         "block, range-coded after the frame's latents (adaptive contexts of the left and top modes, "
                         "anti-diagonal order); the frame is, per block, full = r_synthesis's, pred = the prediction, "
                         "copy = buffer frame's co-located block (sender: picks the least SSE + 2*beta*bits, codes "
                         "as their means the residual latents that no full block's output reaches); "
                         "mobilecodec.codec.block_modes is the reference"))
    pframe += [_buffer_update(names, {"frame": "r_synthesis, or block_modes' frame in a stream with modes (also "
                                               "the decoded frame)", "flow": "m_synthesis",
                                      "motion_feat": "m_synthesis", "residual_feat": "r_synthesis"})]
    stages = model.stages()
    pframe = [s for s in pframe if s["run"] == "host" or s["graph"] in stages]
    return {"I": iframe, "P": pframe}


def build_manifest(model: "VideoCodec", graphs: dict[str, dict[str, Any]], height: int, width: int, *,
                   original_size: tuple[int, int] | None, checkpoint: str | None,
                   export_seconds: float | None = None, trained_on_held_out: bool = False,
                   seed: int | None = None) -> dict[str, Any]:
    """The manifest dict of a float package (quantization: null until aimet encodings are applied).
    `checkpoint`: a file is recorded by its absolute path, a shipped checkpoint by its name; `seed`:
    the initialisation seed of a model made from a config (no checkpoint)."""
    from mobilecodec import __version__

    from mobilecodec.export.onnx_common import OPSET

    for name, g in graphs.items():
        g["sender"], g["receiver"] = stage_sides(name)
    oh, ow = original_size or (height, width)
    return {
        "format": FORMAT, "version": VERSION, "mobilecodec_version": __version__,
        # the highest of the graphs' (aimet's QDQ graphs of 16-bit activations need opset 21)
        "opset": max([OPSET, *(g.get("opset", OPSET) for g in graphs.values())]), "precision": "float32",
        "quantization": None,
        "config_name": model.cfg.name, "config": model.cfg.to_dict(),
        "weights_hash": model.weights_hash().hex(),
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint and Path(checkpoint).is_file() else checkpoint,
        **({"init_seed": seed} if seed is not None else {}),
        # its weights saw the held-out clip (train --allow-held-out): figures on that clip are not held-out ones
        "trained_on_held_out": bool(trained_on_held_out),
        "host_checkpoint": "checkpoint.pt",
        "padded_size": [height, width], "original_size": [oh, ow],
        "buffer": [{"name": e.name, "channels": e.channels, "stride": e.stride,
                    "shape": list(e.shape(height, width)), "dtype": "float32", "storage": storage(e.name),
                    # null where no graph reads or writes it (hybrid buffering's residual_feat goes to the
                    # host warp; a name no graph has was given: export audit)
                    "graph_input": _io_name(graphs, "inputs", f"buffer_in.{e.name}"),
                    "graph_output": _io_name(graphs, "outputs", f"buffer_out.{e.name}")}
                   for e in model.layout],
        "graphs": graphs,
        "call_order": call_order(model),
        "export_seconds": None if export_seconds is None else round(export_seconds, 3),
    }


def cached_sha256(path: Path) -> str:
    """`file_sha256` of a graph file (or a context binary), read once per process while the file stays as it was (one
    command may load a manifest several times: `profile` of a package 4, of a compile folder 6; the
    graphs of a 1080p package take 0.03-0.1 s to hash). Keyed by the resolved path, size, inode,
    device and modification and change times: a file replaced or written since, in place at the same
    size too, has another key (any write or utime sets the change time, to the file system's
    timestamp resolution), so it is read and checked again."""
    path = path.resolve()
    st = path.stat()
    return _sha256_as_of(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


@functools.lru_cache(maxsize=256)
def _sha256_as_of(path: str, *stat_key: int) -> str:
    """The file's SHA-256, cached per `stat_key` (see `cached_sha256`)."""
    from mobilecodec.fsutil import file_sha256

    return file_sha256(path)


def _io_name(graphs: dict[str, dict[str, Any]], key: str, name: str) -> str | None:
    """`name` where one of `graphs` has it among its `key` ("inputs" / "outputs"), else None."""
    return name if any(t.get("name") == name for g in graphs.values() for t in g.get(key, [])) else None


def load_manifest(package: str | Path) -> dict[str, Any]:
    """Read and validate `package/manifest.json` (graph files present, each the file the manifest
    describes: its recorded SHA-256); InputError otherwise."""
    pkg = Path(package)
    if not pkg.is_dir():
        raise InputError(f"{pkg} is a file, not a package folder" if pkg.exists() else f"no such package folder: {pkg}")
    path = pkg / MANIFEST
    if not path.is_file():
        raise InputError(f"{pkg} is not an export package (no {MANIFEST})")
    try:
        man = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise InputError(f"{path} is not a mobilecodec export manifest")
    if man.get("version") != VERSION:
        raise InputError(f"{path} has package version {man.get('version')}; this mobilecodec reads {VERSION}")
    _check_structure(man, path)
    for name, g in man["graphs"].items():
        if not names_inside(g["file"]):  # a package carries its graphs
            raise InputError(f"{path}: graph {name}'s file {g['file']} lies outside the package")
        if not (pkg / g["file"]).is_file():
            raise InputError(f"package {pkg} lacks graph file {g['file']} ({name})")
        if cached_sha256(pkg / g["file"]) != g["sha256"]:
            raise InputError(f"package {pkg}: {g['file']} is not the graph its manifest describes (changed "
                             f"since export); export the package again")
    return man


def _check_structure(man: dict[str, Any], path: Path) -> None:
    """InputError naming what an edited or damaged manifest lacks (its readers indexed it blindly: an
    internal error, or a package that passed `export --check` and failed at its first encode)."""
    def bad(what: str) -> InputError:
        return InputError(f"{path}: {what}; export the package again")

    graphs = man.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise bad("no graphs")
    for name, g in graphs.items():
        if not isinstance(g, dict) or not isinstance(g.get("file"), str) or not isinstance(g.get("sha256"), str):
            raise bad(f"graph {name} has no file or no sha256")
        if not isinstance(g.get("used_by_codec"), bool):
            raise bad(f"graph {name} does not say whether the codec runs it (used_by_codec)")
        for key in ("inputs", "outputs"):
            if not isinstance(g.get(key), list) or not all(isinstance(t, dict) and "name" in t for t in g[key]):
                raise bad(f"graph {name} has no {key} list")
    for key in ("host_checkpoint", "weights_hash", "config_name"):  # read by every encode, decode and compile
        if not isinstance(man.get(key), str) or not man[key]:
            raise bad(f"no {key}")
    size = man.get("padded_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise bad("padded_size is not [height, width]")
    order = man.get("call_order")
    if not isinstance(order, dict) or not all(isinstance(steps, list) for steps in order.values()):
        raise bad("no call_order")
    missing = sorted({s.get("graph") for steps in order.values() for s in steps
                      if isinstance(s, dict) and s.get("run") == "npu"} - set(graphs))
    if missing:
        raise bad(f"the codec runs {', '.join(map(str, missing))}, which the manifest lists no graph for")
    unused = sorted({s["graph"] for steps in order.values() for s in steps if isinstance(s, dict)
                     and s.get("run") == "npu" and s.get("graph") in graphs and not graphs[s["graph"]]["used_by_codec"]})
    if unused:  # the runtime opens sessions for the graphs used_by_codec only: a KeyError at the first frame
        raise bad(f"the codec runs {', '.join(unused)}, which the manifest says it does not use (used_by_codec)")


def check_graph_io(package: Path, man: dict) -> None:
    """InputError where a graph's inputs and outputs (names, shapes, types) are not what the manifest
    says, or the buffer's shapes do not follow from `padded_size`: a graph swapped for another with
    its manifest's hash edited to match passed `export --check`, and failed at the first encode."""
    import onnx

    from mobilecodec.export.onnx_common import tensor_info

    for name, g in man["graphs"].items():
        proto = onnx.load(str(package / g["file"]), load_external_data=False)
        for key, got in (("inputs", proto.graph.input), ("outputs", proto.graph.output)):
            have = [tensor_info(v) for v in got]
            if have != g[key]:
                raise InputError(f"{package}: {g['file']} has {key} "
                                 f"{', '.join(t['name'] + str(t['shape']) for t in have)}, its manifest says "
                                 f"{', '.join(str(t.get('name')) + str(t.get('shape')) for t in g[key])}")
    ph, pw = man["padded_size"]
    for b in man.get("buffer") or []:
        if b.get("shape") != [1, b["channels"], ph // b["stride"], pw // b["stride"]]:
            raise InputError(f"{package}: buffer {b['name']} is {b.get('shape')} in the manifest, not what its "
                             f"padded_size {ph}x{pw} gives")


def _config_of(man: dict, cfg: Any) -> Any:
    """The manifest's config read as a config (`cfg`'s type: fields added since get their defaults, as
    for the checkpoint beside it); `cfg` itself where the manifest has none, None where it cannot be read."""
    if man.get("config") is None:
        return cfg
    try:
        return type(cfg).from_dict(man["config"])
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def load_package_model(package: str | Path):
    """The host-side model of a package (entropy tables, integer hyper-synthesis, warp config):
    (manifest, model, the checkpoint's dict, e.g. its `beta`)."""
    from mobilecodec.checkpoint import load_checkpoint

    man = load_manifest(package)
    check_graph_io(Path(package), man)  # graphs swapped with their hashes edited: a KeyError at the first frame
    model, obj = load_checkpoint(Path(package) / man["host_checkpoint"])
    if model.weights_hash().hex() != man["weights_hash"]:
        raise InputError(f"{package}: checkpoint.pt does not match the manifest's weights hash")
    if _config_of(man, model.cfg) != model.cfg or man["config_name"] != model.cfg.name:  # an edit ran unnoticed
        raise InputError(f"{package}: the manifest's config is not checkpoint.pt's ({model.cfg.name}); export the "
                         "package again")
    return man, model, obj


def int8_section(qmodel: Any, graphs: dict[str, dict[str, Any]], quantized_dir: str | None,
                 package_dir: Path) -> dict[str, Any]:
    """The manifest's `quantization` block of an int8 package; also copies aimet's per-stage
    encodings (torch module names, format 0.6.1) into `encodings/aimet/`."""
    import shutil

    import aimet_torch

    from mobilecodec.quant.sim import activation_bitwidths

    copied = []
    if quantized_dir is not None and (Path(quantized_dir) / "encodings").is_dir():
        dest = package_dir / "encodings" / "aimet"
        dest.mkdir(parents=True, exist_ok=True)
        for f in sorted((Path(quantized_dir) / "encodings").glob("*.encodings")):
            shutil.copyfile(f, dest / f.name)
            copied.append(f"encodings/aimet/{f.name}")
    made = getattr(qmodel, "summary", None) or {}  # the int8 folder's ptq.json / qat.json
    layers16 = sorted(f"{s}.{n}" for s, sim in qmodel.sims.items()
                      for n, bw in activation_bitwidths(sim).items() if max(bw) > 8)
    return {
        "source": "aimet", "aimet_version": aimet_torch.__version__,
        "quantized_dir": str(Path(quantized_dir).resolve()) if quantized_dir else None,
        # what the int8 folder was calibrated (and, by QAT, trained) on: compile and eval read it
        "calibration_clips": made.get("clips") or made.get("calibration_clips"),
        "calibrated_on_held_out": bool(made.get("calibrated_on_held_out")),
        "trained_on_held_out": bool(made.get("trained_on_held_out")),
        "qat_beta": made.get("beta"),  # the rate weight QAT trained with (None: PTQ alone)
        "quantized_weights_hash": qmodel.weights_hash().hex(),
        "quantized_config_name": qmodel.cfg.name,
        "quant_config": qmodel.qcfg.to_dict(),
        "weights": "int8 per-channel symmetric (DequantizeLinear axis 0 for Conv, 1 for ConvTranspose), int32 bias",
        "activations": "uint8 asymmetric; uint16 where the quant config asks for W8A16",
        "w8a16_layers": layers16,
        "graphs_16bit": sorted(n for n, g in graphs.items() if g.get("quantization")
                               and g["quantization"]["tensors_16bit"]),
        "float_graphs": sorted(n for n, g in graphs.items() if not g.get("quantization")),
        "aimet_encodings": copied,
        # for whoever opens the graphs with onnxruntime directly (mobilecodec's runtime does this itself)
        "onnxruntime_cpu": "on x86 CPUs without VNNI onnxruntime's uint8 x int8 kernels add product pairs in "
                           "saturating int16, so the int8 graphs drift off the aimet simulation: set the "
                           "session option session.x64quantprecision=1 there",
    }
