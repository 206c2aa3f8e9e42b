"""Media I/O: sniff, probe, decode frames at indices, trim, encode, read and write images.

Every unusable file raises MediaError with a `code` from MEDIA_ERROR_CODES, never a crash or a hang.
"""
from curate.media.checks import (
                                 DECODE_TIMEOUT_S,
                                 IMAGE_KINDS,
                                 MAX_OUTPUT_BYTES,
                                 MAX_PIXELS,
                                 MEDIA_ERROR_CODES,
                                 NOT_MEDIA_KINDS,
                                 VIDEO_KINDS,
                                 MediaError,
                                 check_file,
                                 sniff,
)
from curate.media.encode import ffmpeg_exe, trim, write_video
from curate.media.frames import output_size
from curate.media.image import read_image, write_image
from curate.media.video import Probe, probe, read_frames

__all__ = ["DECODE_TIMEOUT_S", "IMAGE_KINDS", "MAX_OUTPUT_BYTES", "MAX_PIXELS", "MEDIA_ERROR_CODES", "NOT_MEDIA_KINDS",
           "VIDEO_KINDS", "MediaError", "Probe", "check_file", "ffmpeg_exe", "output_size", "probe", "read_frames",
           "read_image", "sniff", "trim", "write_image", "write_video"]
