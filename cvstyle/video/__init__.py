"""Videos: read with their sound and timing, painted frame by frame (optionally
stabilised over time), written back faithfully. Needs PyAV (``cvstyle[video]``)."""

from .containers import OUTPUT_FORMATS, VIDEO_EXTENSIONS, is_video, sniff_container

__all__ = ["OUTPUT_FORMATS", "VIDEO_EXTENSIONS", "is_video", "sniff_container"]
