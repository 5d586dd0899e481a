"""Video I/O: lazy readers for .y4m/.yuv/.mp4, atomic .y4m/.yuv writers, pad/crop, sample clips."""

from mobilecodec.io.base import VideoReader
from mobilecodec.io.frame import (YUVFrame, crop_frame, fps_to_fraction, frame_nbytes, pad_frame,
                                  padded_size)
from mobilecodec.io.reader import (SUPPORTED_EXTENSIONS, check_size_applies, open_video, read_frames,
                                   warn_fewer_frames)
from mobilecodec.io.samples import (list_sample_clips, no_such_video, resolve_input, resolve_video, sample_clip,
                                    sample_source)
from mobilecodec.io.writer import VideoWriter, write_video

__all__ = [
    "SUPPORTED_EXTENSIONS", "VideoReader", "VideoWriter", "YUVFrame", "check_size_applies", "crop_frame",
    "fps_to_fraction", "frame_nbytes", "list_sample_clips", "open_video", "pad_frame",
    "padded_size", "read_frames", "resolve_input", "resolve_video", "sample_clip", "sample_source", "warn_fewer_frames",
    "write_video",
]
