"""What every latent encoder (PyTorch `frame_coding.LatentEncoder`, onnxruntime
`runtime.engine.OnnxLatentEncoder`) does alike after its latents are coded: the block modes and
the payload. Free of heavy imports, so the runtime's encoder can build on it."""

from __future__ import annotations

from typing import Any


class SenderTail:
    """Block-mode selection and payload over `self.modes` (a `frame_coding.BlockModeSender` or
    None: modes off) and `self.enc` (the frame's `RangeEncoder`)."""

    modes: Any
    enc: Any

    def select_blocks(self, x_hat: Any, pred: Any, reference: Any) -> Any:
        """With block modes on: choose each block's mode against the source, code the map, and
        return the frame it selects; else x_hat unchanged."""
        return x_hat if self.modes is None else self.modes.select(x_hat, pred, reference)

    @property
    def mode_counts(self) -> list[int] | None:
        """Blocks per mode of this frame, when block modes are on and the frame is coded."""
        return None if self.modes is None else self.modes.counts

    def payload(self) -> bytes:
        """The frame's entropy-coded payload."""
        return self.enc.get_bytes()
