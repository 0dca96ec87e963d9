"""Windows over a video's frames, for ``--timeline``: which frames each window holds and its record id."""

from __future__ import annotations

from zoo.errors import UsageError


def window_bounds(stamps: list[float], window: float, stride: float) -> list[tuple[float, float, list[int]]]:
    """``(start, end, frame indices)`` of each window over frames taken at ``stamps`` seconds.

    Windows start at 0, ``stride``, ... and hold the frames whose timestamp falls in ``[start, start +
    window)``; they go on while a window fits in the video (its length: the last frame's time plus one
    second); a video shorter than one window gets one window over all of it.
    """
    if not stamps:
        return []
    length = stamps[-1] + 1.0
    out = []
    start = 0.0
    while True:
        end = start + window
        frames = [i for i, t in enumerate(stamps) if start <= t < end]
        if frames:
            out.append((round(start, 3), round(min(end, length), 3), frames))
        if end >= length:
            break
        start += stride
    return out


def window_id(video_id: str, start: float, end: float) -> str:
    """A window's record id: the video's id with a media fragment (``clip.mp4#t=4,9``; the windows are
    predicted into JSON lines only, as a Kaggle CSV id cannot hold a comma)."""
    return f"{video_id}#t={start:g},{end:g}"


def check_window(window: float, overlap: float) -> float:
    if window <= 0 or overlap < 0 or overlap >= window:
        raise UsageError(
            f"--window {window:g} --overlap {overlap:g}: need window > 0 and 0 <= overlap < window"
        )
    return window - overlap
