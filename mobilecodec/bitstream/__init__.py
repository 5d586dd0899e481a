"""The `.mnvc` stream container (header + per-frame records); see `format`."""

from mobilecodec.bitstream.format import (
    FORMAT_VERSION,
    MAGIC,
    FRAME_HASH_BYTES,
    FrameRecord,
    FrameType,
    StreamHeader,
    StreamReader,
    StreamWriter,
    frame_hash,
    header_size,
    record_overhead,
    read_header,
)

__all__ = ["FORMAT_VERSION", "FRAME_HASH_BYTES", "MAGIC", "FrameRecord", "FrameType", "StreamHeader",
           "StreamReader", "StreamWriter", "frame_hash", "header_size", "read_header", "record_overhead"]
