"""Published reference figures the profiler compares against (copied from the source papers)."""

# MobileNVC appendix, Table 6: (params [M], kMACs/px) at 1080x1920 YUV420, column "MobileNVC".
TABLE6_MOBILENVC: dict[str, dict[str, tuple[float, float]]] = {
    "Sender": {
        "I-frame AE": (5.66, 116.11),
        "Motion pred.": (0.21, 1.66),
        "Motion AE": (5.59, 28.34),
        "Residual AE": (6.82, 36.59),
        "Pframe total": (12.42, 64.93),
    },
    "Receiver": {
        "I-frame AE": (2.94, 93.39),
        "Motion pred.": (0.21, 1.66),
        "Motion AE": (2.91, 9.5),
        "Residual AE": (3.18, 13.36),
        "Pframe total": (6.30, 24.52),
    },
}
TABLE6_SIZE = (1080, 1920)

# HyTIP Table 7 / A1: buffer sizes in full-resolution feature maps per coded frame.
HYTIP_BUFFER_MAPS = {
    "HyTIP (hybrid: flow 2 + 0.125, frame 3 + 2)": 7.125,
    "explicit (flow 2, RGB frame 3)": 5.0,
    "DCVC-DC / DCVC-FM style implicit (48+ maps)": 48.0,
}
