"""The `.mnvc` stream container (header + per-frame records); see `format`."""

from mobilecodec.bitstream.format import (
    FORMAT_VERSION,
    MAGIC,
    RECORD_OVERHEAD,
    FrameRecord,
    FrameType,
    StreamHeader,
    StreamReader,
    StreamWriter,
    frame_hash,
    header_size,
    read_header,
)

__all__ = ["FORMAT_VERSION", "MAGIC", "RECORD_OVERHEAD", "FrameRecord", "FrameType", "StreamHeader",
           "StreamReader", "StreamWriter", "frame_hash", "header_size", "read_header"]
