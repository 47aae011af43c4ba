"""Checks of the frame spans and context windows that callers hand to the media and audio code.

Several modules take the same kinds of argument; checking each in one place keeps their refusals
worded alike.
"""

from __future__ import annotations

from .errors import RAPInputError


def check_frame_range(kind: str, start: int, end: int, start_name: str = "start") -> None:
    """Refuse a span of `kind` ("Video", "Audio") frames [start, end) that is empty or starts before 0;
    the message calls the first frame `start_name`, the caller's own name for it."""
    if not 0 <= start < end:
        raise RAPInputError(f"{kind} frames [{start}, {end}) are not a range: need 0 <= {start_name} < end.")


def check_window(window: int) -> None:
    """Refuse an audio window that is not a positive odd number of frames: a window is centred on its
    frame, W // 2 frames either side."""
    if window < 1 or window % 2 == 0:
        raise RAPInputError(f"The audio window must be a positive odd number of frames, got {window}.")
