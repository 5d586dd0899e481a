"""`mobilecodec.codec.networks.Networks` on an `OnnxEngine`: the sub-networks of one frame as the
package's graphs, the host steps (warp, prediction without a graph, buffer update) as the PyTorch
path's own functions, each timed on the engine's clock. The step sequence is the PyTorch path's
(`codec.frame_coding.iframe_steps` / `pframe_steps`); only what runs each step lives here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mobilecodec.tensors import to_numpy

if TYPE_CHECKING:  # pragma: no cover
    from mobilecodec.runtime.engine import OnnxEngine

BUFFER_STEP = "host: buffer update"
WARP_STEP = "host: warp"


class GraphNetworks:
    """One frame on `engine`: graph inputs and outputs meet in `env` by name (the buffer enters
    as the engine's stored `buffer_in.*` arrays); `written` keeps the `buffer_out.*` arrays the
    graphs wrote into the next buffer slot, so committing the buffer copies only the others."""

    def __init__(self, engine: OnnxEngine, buf: Any = None) -> None:
        self.engine, self.model = engine, engine.model
        self.uses_motion = self.model.cfg.uses_motion
        self.env: dict[str, Any] = {}
        self.written: dict[str, np.ndarray] = {}
        self.decoded: Any = None  # the residual synthesis' frame, before any block-mode selection
        if buf is not None:
            with engine.clock.step(BUFFER_STEP):
                self.env = engine.buffer_inputs(buf)

    def _run(self, graph: str, env: dict[str, Any]) -> dict[str, np.ndarray]:
        out = self.engine.run(graph, env)
        self.written.update(out)
        return out

    def _feat(self, out: dict[str, np.ndarray], name: str, like: Any) -> Any:
        """Buffer entry `name` from the graph outputs as float, or an empty one shaped like `like`."""
        key = f"buffer_out.{name}"
        return self.engine.entry_float(name, out[key]) if key in out else like.new_zeros(1, 0, *like.shape[2:])

    # I-frame ---------------------------------------------------------------------------------

    def synthesize_iframe(self, y_hat: Any) -> tuple[Any, Any]:
        out = self._run("i_synthesis", {"y_hat": to_numpy(y_hat)})
        with self.engine.clock.step(BUFFER_STEP):
            x_hat = self.engine.decoded_frame(out)
            return x_hat, self._feat(out, "residual_feat", x_hat)

    def initial_buffer(self, x_hat: Any, feat: Any) -> Any:
        with self.engine.clock.step(BUFFER_STEP):
            ref = self.model.initial_buffer(x_hat, feat)  # zero flow / motion features
            return self.engine.commit_buffer(self.written, ref.tensors)

    # P-frame ---------------------------------------------------------------------------------

    def predict_flow(self, buf: Any) -> Any:
        self.env.update(self.engine.run("motion_predictor", self.env))
        return self.env["flow_pred"]

    def motion_reference(self, buf: Any) -> Any:
        return self.env[self.engine.ref_name]

    def synthesize_motion(self, m_hat: Any, flow_pred: Any) -> tuple[Any, Any]:
        self.env["m_hat"] = to_numpy(m_hat)
        out = self._run("m_synthesis", self.env)
        self.env.update(out)
        with self.engine.clock.step(BUFFER_STEP):
            flow = self.engine.entry_float("flow", out["buffer_out.flow"] if "buffer_out.flow" in out else out["flow"])
            return flow, self._feat(out, "motion_feat", flow)

    def warp(self, buf: Any, flow: Any) -> Any:
        with self.engine.clock.step(WARP_STEP):
            warped = self.model.warp(buf, flow)
            self.env["warped"] = to_numpy(warped)
        return warped

    def predict(self, warped: Any) -> Any:
        if "r_predictor" in self.engine.run_sessions:
            self.env.update(self.engine.run("r_predictor", self.env))
        else:
            with self.engine.clock.step(WARP_STEP):
                self.env["pred"] = to_numpy(self.model.predict(warped))
        return self.env["pred"]

    def condition(self, warped: Any) -> tuple[Any, ...]:
        return (self.env["warped"],) if self.model.cfg.conditional else ()

    def synthesize_residual(self, r_hat: Any, pred: Any, cond: tuple[Any, ...]) -> tuple[Any, Any]:
        self.env["r_hat"] = to_numpy(r_hat)
        out = self._run("r_synthesis", self.env)
        with self.engine.clock.step(BUFFER_STEP):
            feat = out.get("buffer_out.residual_feat")
            self.decoded = self.engine.decoded_frame(out)
            return self.decoded, None if feat is None else self.engine.entry_float("residual_feat", feat)

    def no_motion(self, buf: Any) -> tuple[Any, Any]:
        with self.engine.clock.step(BUFFER_STEP):
            return self.model.no_motion(buf[self.model.layout[0].name])

    def make_buffer(self, x_hat: Any, res_feat: Any, flow: Any, motion_feat: Any) -> Any:
        if self.decoded is not None and x_hat is not self.decoded:  # block modes replaced the graph's frame
            self.written.pop("buffer_out.frame", None)  # so the slot takes the selected one
        floats = {"frame": x_hat, "flow": flow, "motion_feat": motion_feat}
        if res_feat is not None:
            floats["residual_feat"] = res_feat
        with self.engine.clock.step(BUFFER_STEP):
            return self.engine.commit_buffer(self.written, floats)
