"""mobilecodec: train, quantize, export, compile and profile a MobileNVC-style neural video codec."""

__version__ = "0.1.0"
