"""The sub-networks the frame step sequences (`codec.frame_coding.iframe_steps` / `pframe_steps`) call,
as one interface per backend: `TorchNetworks` runs the VideoCodec's own modules; the onnxruntime
backend runs the package's graphs (`mobilecodec.runtime.graph_networks`). The sequence itself is
written once, so the backends cannot drift apart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from mobilecodec.models.buffer import Buffer
    from mobilecodec.models.codec import VideoCodec


class Networks(Protocol):
    """One backend's sub-networks and host steps of one frame. Tensors may be torch tensors or
    numpy arrays, as the backend keeps them; the latent sources accept either."""

    uses_motion: bool

    def synthesize_iframe(self, y_hat: Any) -> tuple[Any, Any]:
        """i_synthesis: (x_hat, residual features)."""

    def initial_buffer(self, x_hat: Any, feat: Any) -> Buffer:
        """The buffer after an I-frame (zero flow and motion features)."""

    def predict_flow(self, buf: Buffer) -> Any:
        """motion_predictor on the buffer: the predicted block flow."""

    def motion_reference(self, buf: Buffer) -> Any:
        """What the motion analysis compares the frame with (buffered frame or features)."""

    def synthesize_motion(self, m_hat: Any, flow_pred: Any) -> tuple[Any, Any]:
        """m_synthesis: (flow, motion features) on their storage grids."""

    def warp(self, buf: Buffer, flow: Any) -> Any:
        """The buffered frame and/or features warped with the flow (None: not warped)."""

    def predict(self, warped: Any) -> Any:
        """The frame prediction from the warped reference."""

    def condition(self, warped: Any) -> tuple[Any, ...]:
        """Extra inputs of the residual coder: (warped,) when conditional, else ()."""

    def synthesize_residual(self, r_hat: Any, pred: Any, cond: tuple[Any, ...]) -> tuple[Any, Any]:
        """r_synthesis: (x_hat, residual features or None)."""

    def no_motion(self, buf: Buffer) -> tuple[Any, Any]:
        """(zero flow, empty motion features) for a P-step without motion coding."""

    def make_buffer(self, x_hat: Any, res_feat: Any, flow: Any, motion_feat: Any) -> Buffer:
        """The next buffer, every entry on its storage grid."""


class TorchNetworks:
    """`Networks` in PyTorch: the VideoCodec's modules and host helpers."""

    def __init__(self, model: VideoCodec) -> None:
        self.model = model
        self.uses_motion = model.cfg.uses_motion

    def synthesize_iframe(self, y_hat: Any) -> tuple[Any, Any]:
        return self.model.i_synthesis(y_hat)

    def initial_buffer(self, x_hat: Any, feat: Any) -> Buffer:
        return self.model.initial_buffer(x_hat, feat)

    def predict_flow(self, buf: Buffer) -> Any:
        return self.model.motion_predictor(self.model.motion_state(buf))

    def motion_reference(self, buf: Buffer) -> Any:
        return self.model.motion_reference(buf)

    def synthesize_motion(self, m_hat: Any, flow_pred: Any) -> tuple[Any, Any]:
        return self.model.decoded_motion(*self.model.m_synthesis(m_hat, flow_pred))

    def warp(self, buf: Buffer, flow: Any) -> Any:
        return self.model.warp(buf, flow)

    def predict(self, warped: Any) -> Any:
        return self.model.predict(warped)

    def condition(self, warped: Any) -> tuple[Any, ...]:
        return self.model.condition(warped)

    def synthesize_residual(self, r_hat: Any, pred: Any, cond: tuple[Any, ...]) -> tuple[Any, Any]:
        return self.model.r_synthesis(r_hat, pred, *cond)

    def no_motion(self, buf: Buffer) -> tuple[Any, Any]:
        return self.model.no_motion(buf[self.model.layout[0].name])

    def make_buffer(self, x_hat: Any, res_feat: Any, flow: Any, motion_feat: Any) -> Buffer:
        return self.model.make_buffer(x_hat, res_feat, flow, motion_feat)
