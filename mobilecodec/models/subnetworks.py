"""Which side runs each network stage: the Table 6 subnetworks of the MobileNVC appendix, and the
one rule derived from them that the package manifest, the W8A16 'receiver' preset and the export
notes all use. No torch here, so config code and the CLI can import it cheaply."""

from __future__ import annotations

from collections import OrderedDict

# Subnetworks as Table 6 of the MobileNVC appendix reports them: (sender stages, receiver stages).
# The sender also runs the hyper-synthesis (it needs the entropy parameters) and the synthesis
# (it needs the reconstruction as next reference), so those count on both sides.
SUBNETWORKS: "OrderedDict[str, tuple[tuple[str, ...], tuple[str, ...]]]" = OrderedDict([
    ("I-frame AE", (("i_analysis", "i_hyper_analysis", "i_hyper_synthesis", "i_synthesis"),
                    ("i_hyper_synthesis", "i_synthesis"))),
    ("Motion pred.", (("motion_predictor",), ("motion_predictor",))),
    ("Motion AE", (("m_analysis", "m_hyper_analysis", "m_hyper_synthesis", "m_synthesis"),
                   ("m_hyper_synthesis", "m_synthesis"))),
    ("Residual pred.", (("r_predictor",), ("r_predictor",))),
    ("Residual AE", (("r_analysis", "r_hyper_analysis", "r_hyper_synthesis", "r_synthesis"),
                     ("r_hyper_synthesis", "r_synthesis"))),
])
P_FRAME_SUBNETWORKS = ("Motion pred.", "Motion AE", "Residual pred.", "Residual AE")


def stage_sides(stage: str) -> tuple[bool, bool]:
    """(sender runs it, receiver runs it) for a network stage, from `SUBNETWORKS`."""
    sender = any(stage in s for s, _ in SUBNETWORKS.values())
    receiver = any(stage in r for _, r in SUBNETWORKS.values())
    return sender, receiver


def is_receiver_stage(stage: str) -> bool:
    """Whether the decoder runs `stage` (synthesis, hyper-synthesis, motion and residual
    prediction: the stages that write the recurrent buffer or feed them)."""
    return stage_sides(stage)[1]
