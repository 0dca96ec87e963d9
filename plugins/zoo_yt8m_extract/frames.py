"""Frames and sound from a video file through PyAV (FFmpeg's libraries come in its wheel).

Frames are taken exactly as Google's ``frame_iterator`` takes them through OpenCV: the decoder's position is
the timestamp of the last frame decoded (0 before the first); starting from ``last = -inf`` it decodes on
while the position is below ``last + every_ms``, then sets ``last`` to the position and takes the *next*
frame. So the first frame is taken, then, each time, the frame after the first one whose timestamp is at
least ``every_ms`` past the previous position (at 25 fps: frames 0, 26, 51, 76, ..., at 0 s, 1.04 s, 2.04 s, ...). Timestamps are the frames'
own (variable frame rate is followed as it is), relative to the stream's start. Rotation metadata is applied
(the frames are upright as a player shows them; Google's 2017 OpenCV did not rotate).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from zoo.errors import DataError

SAMPLE_RATE = 16000


class VideoError(DataError):
    """One video that cannot be extracted: names the file and the reason; the other videos go on."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _open(path: str | os.PathLike):
    import av

    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise VideoError(path, "is empty (0 bytes)")
    try:
        return av.open(os.fspath(path))
    except av.FFmpegError as exc:
        raise VideoError(path, f"cannot be read as a video ({_reason(exc)})") from None
    except OSError as exc:
        raise VideoError(path, f"cannot be opened ({exc.strerror or exc})") from None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '", 1)[0]


def has_audio(path: str | os.PathLike) -> bool:
    """Whether the file has an audio stream (checked before any frame is decoded)."""
    with _open(path) as container:
        return bool(container.streams.audio)


def select_positions(positions_ms: Iterator[float], every_ms: float, max_frames: int) -> Iterator[int]:
    """Indices of the frames ``frame_iterator`` takes, given each decoded frame's timestamp in order."""
    last = float("-inf")
    position = 0.0  # OpenCV's CAP_PROP_POS_MSEC before the first read
    taken = 0
    index = -1
    stamps = iter(positions_ms)
    while taken < max_frames:
        while position < every_ms + last:
            ms = next(stamps, None)
            if ms is None:
                return
            index += 1
            position = ms
        last = position
        ms = next(stamps, None)
        if ms is None:
            return
        index += 1
        position = ms
        yield index
        taken += 1


def display_matrix(frame) -> np.ndarray | None:
    """The frame's display matrix (FFmpeg's 3x3, 16.16 fixed point, row by row), or ``None``."""
    from av.sidedata.sidedata import Type

    data = frame.side_data.get(Type.DISPLAYMATRIX)
    if data is None:
        return None
    values = np.frombuffer(bytes(data), dtype="<i4")
    return values[:9].reshape(3, 3) if values.size >= 9 else None


def _upright(image: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """The frame as a player shows it: the display matrix maps a stored pixel ``(x, y)`` to
    ``(a x + c y, b x + d y)`` (``a, b = matrix[0, :2]``, ``c, d = matrix[1, :2]``), to the nearest quarter
    turn, mirrors included."""
    if matrix is None:
        return image
    a, b = (float(v) for v in matrix[0, :2])
    c, d = (float(v) for v in matrix[1, :2])
    if abs(a) + abs(d) >= abs(b) + abs(c):  # no transposition: x' = a x, y' = d y
        out = image[:: -1 if d < 0 else 1, :: -1 if a < 0 else 1]
    else:  # transposed: x' = c y, y' = b x
        out = image.transpose(1, 0, *range(2, image.ndim))[:: -1 if b < 0 else 1, :: -1 if c < 0 else 1]
    return out if out is image else np.ascontiguousarray(out)


def decode_frames(
    path: str | os.PathLike, *, every_ms: float = 1000.0, max_frames: int = 300, max_pixels: int = 7680 * 4320
) -> Iterator[tuple[float, np.ndarray]]:
    """``(seconds, RGB uint8 [H, W, 3])`` of the frames Google's ``frame_iterator`` takes.

    Raises :class:`VideoError` for an unreadable file, no video stream, a resolution above ``max_pixels``,
    a decoding failure and a file cut short (frames ending before the duration it announces); yields
    nothing for a video without frames (the caller names that).
    """
    import av

    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(path, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise VideoError(
                path,
                f"resolution {width}x{height} is above the limit of {max_pixels} pixels per frame "
                f"(--max-pixels); scale the video down or raise the limit",
            )
        start = stream.start_time or 0
        time_base = float(stream.time_base) if stream.time_base else 0.0
        fallback = 1.0 / float(stream.average_rate) if stream.average_rate else 0.04
        pending: list[av.VideoFrame] = []
        state = {"previous": None}

        def stamps() -> Iterator[float]:
            try:
                for frame in container.decode(stream):
                    pts = frame.pts if frame.pts is not None else frame.dts
                    if pts is None or not time_base:
                        seconds = 0.0 if state["previous"] is None else state["previous"] + fallback
                    else:
                        seconds = (pts - start) * time_base
                    state["previous"] = seconds
                    base = frame.time_base or stream.time_base
                    state["lasts"] = float(frame.duration * base) if frame.duration and base else fallback
                    pending[:] = [frame]
                    yield seconds * 1000.0
                state["ended"] = True
            except av.FFmpegError as exc:
                raise VideoError(path, f"decoding failed ({_reason(exc)})") from None

        for _ in select_positions(stamps(), every_ms, max_frames):
            frame = pending[0]
            if frame.width * frame.height > max_pixels:
                raise VideoError(path, f"a frame of {frame.width}x{frame.height} is above --max-pixels")
            image = frame.to_ndarray(format="rgb24")
            yield state["previous"], _upright(image, display_matrix(frame))
        if state.get("ended") and state["previous"] is not None:
            check_complete(path, container, stream, state["previous"] + state["lasts"])


TRUNCATION_TOLERANCE = 1.0  # seconds: less than this missing at the end changes at most one frame taken


def announced_seconds(container, stream) -> float | None:
    """How long the video stream says it is: its own duration, else Matroska's per-track ``DURATION`` tag,
    else the file's duration when the video is its only stream (another stream may be longer)."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        except ValueError:
            pass
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / 1_000_000
    return None


def check_complete(path: str | os.PathLike, container, stream, decoded_until: float) -> None:
    """A file whose frames end well before the duration it announces was cut short (a download or a copy
    that stopped): an error, not a silently shorter record."""
    announced = announced_seconds(container, stream)
    if announced is not None and decoded_until + TRUNCATION_TOLERANCE < announced:
        raise VideoError(
            path,
            f"truncated: its frames end at {decoded_until:.1f} s of the {announced:.1f} s it announces "
            f"(an interrupted download or copy?)",
        )


def decode_audio(path: str | os.PathLike, seconds: float) -> np.ndarray | None:
    """The first ``seconds`` of the first audio stream as 16 kHz mono float32 in [-1, 1) (16-bit steps, as
    VGGish reads a WAV file); ``None`` when the file has no audio stream."""
    import av

    with _open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        limit = int(seconds * SAMPLE_RATE) if seconds > 0 else None
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                if limit is not None and total >= limit:
                    break
            else:
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise VideoError(path, f"decoding the audio failed ({_reason(exc)})") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    if limit is not None:
        samples = samples[:limit]
    return samples.astype(np.float32) / 32768.0
