"""Frames and sound from a video file through PyAV (FFmpeg's libraries come in its wheel).

Frames are taken exactly as Google's ``frame_iterator`` takes them through OpenCV: the decoder's position is
the timestamp of the last frame decoded (0 before the first); starting from ``last = -inf`` it decodes on
while the position is below ``last + every_ms``, then sets ``last`` to the position and takes the *next*
frame. So the first frame is taken, then, each time, the frame after the first one whose timestamp is at
least ``every_ms`` past the previous position (at 25 fps: frames 0, 26, 51, 76, ..., at 0 s, 1.04 s, 2.04 s, ...). Timestamps are the frames'
own (variable frame rate is followed as it is), relative to the stream's start. Rotation metadata is applied
(the frames are upright as a player shows them; Google's 2017 OpenCV did not rotate).

About one frame a second is taken out of 25-30: for H.264 and HEVC the choice is made first on the packets'
timestamps (:func:`plan_frames`), and only the frames taken and the frames they refer to are decoded
(:func:`planned_frames`); whenever that cannot be trusted, every frame is decoded (:func:`_every_frame`).
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

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
    path: str | os.PathLike,
    *,
    every_ms: float = 1000.0,
    max_frames: int = 300,
    max_pixels: int = 7680 * 4320,
    skip_untaken: bool = True,
) -> Iterator[tuple[float, np.ndarray]]:
    """``(seconds, RGB uint8 [H, W, 3])`` of the frames Google's ``frame_iterator`` takes.

    With ``skip_untaken`` (the default), the frames to take are found from the packets' timestamps first
    (:func:`plan_frames`), and only they and the frames other frames refer to are decoded; whenever that
    cannot be trusted, every frame is decoded, as with ``skip_untaken=False``. Both give the same frames,
    pixel for pixel.

    Raises :class:`VideoError` for an unreadable file, no video stream, a resolution above ``max_pixels``,
    a decoding failure and a file cut short (frames ending before the duration it announces); yields
    nothing for a video without frames (the caller names that).
    """
    import av

    with _open(path) as container:
        stream = _video_stream(path, container, max_pixels)
        plan = plan_frames(container, stream, every_ms, max_frames) if skip_untaken else None
    done = 0
    if plan is not None:
        with _open(path) as container:
            stream = _video_stream(path, container, max_pixels)
            clock = _Clock(stream)
            try:
                for frame in planned_frames(path, container, stream, plan):
                    yield clock.seconds(frame.pts), _rgb(path, frame, max_pixels)
                    done += 1
                return
            except (NotAsPlanned, av.FFmpegError):
                pass  # decoded again, every frame, from the start; the frames given already are not given again
    with _open(path) as container:
        stream = _video_stream(path, container, max_pixels)
        frames = _every_frame(path, container, stream, every_ms, max_frames)
        for seconds, frame in itertools.islice(frames, done, None):
            yield seconds, _rgb(path, frame, max_pixels)


def _video_stream(path: str | os.PathLike, container, max_pixels: int):
    """The first video stream, set to decode in threads; an error for none or one above ``max_pixels``."""
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
    return stream


def _rgb(path: str | os.PathLike, frame, max_pixels: int) -> np.ndarray:
    if frame.width * frame.height > max_pixels:
        raise VideoError(path, f"a frame of {frame.width}x{frame.height} is above --max-pixels")
    return _upright(frame.to_ndarray(format="rgb24"), display_matrix(frame))


class _Clock:
    """A stream's timestamps in seconds from its start, and how long a frame lasts."""

    def __init__(self, stream) -> None:
        self.start = stream.start_time or 0
        self.time_base = float(stream.time_base) if stream.time_base else 0.0
        self.fallback = 1.0 / float(stream.average_rate) if stream.average_rate else 0.04
        self.stream_base = stream.time_base

    def seconds(self, pts: int) -> float:
        return (pts - self.start) * self.time_base

    def lasts(self, duration: int | None, time_base) -> float:
        base = time_base or self.stream_base
        return float(duration * base) if duration and base else self.fallback


def _every_frame(path: str | os.PathLike, container, stream, every_ms: float, max_frames: int):
    """``(seconds, frame)`` of the frames taken, every frame decoded."""
    import av

    clock = _Clock(stream)
    pending: list[av.VideoFrame] = []
    state = {"previous": None}

    def stamps() -> Iterator[float]:
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None or not clock.time_base:
                    seconds = 0.0 if state["previous"] is None else state["previous"] + clock.fallback
                else:
                    seconds = clock.seconds(pts)
                state["previous"] = seconds
                state["lasts"] = clock.lasts(frame.duration, frame.time_base)
                pending[:] = [frame]
                yield seconds * 1000.0
            state["ended"] = True
        except av.FFmpegError as exc:
            raise VideoError(path, f"decoding failed ({_reason(exc)})") from None

    for _ in select_positions(stamps(), every_ms, max_frames):
        yield state["previous"], pending[0]
    if state.get("ended") and state["previous"] is not None:
        check_complete(path, container, stream, state["previous"] + state["lasts"])


SKIPPING_DECODERS = frozenset({"h264", "hevc"})
"""FFmpeg's decoders whose ``skip_frame = NONREF`` leaves out exactly the frames no other frame refers to
(H.264's ``nal_ref_idc`` 0, HEVC's sub-layer non-reference pictures), packet by packet: a frame thread takes
``skip_frame`` from the caller's context with each packet it is given. One packet holds one frame."""


class NotAsPlanned(Exception):
    """The frames planned from the packets are not the frames decoded: every frame is decoded instead."""


@dataclass(frozen=True)
class FramePlan:
    """The frames ``frame_iterator`` takes, known from the packets before any is decoded."""

    taken: tuple[int, ...]  # their pts, in presentation order
    known: frozenset[int]  # the pts of every packet read (a frame decoded must have one of them)
    last: int | None  # the last frame's pts when the stream ends before max_frames are taken, else None


def plan_frames(container, stream, every_ms: float, max_frames: int) -> FramePlan | None:
    """The frames to take, from the packets' timestamps (read, not decoded): a decoder gives the frames of a
    stream in the order of their timestamps, one per packet, so Google's choice is known beforehand.
    ``None`` (decode every frame) when that cannot be trusted: a decoder not in :data:`SKIPPING_DECODERS`, a
    packet without a timestamp or with one seen before, a packet the demuxer marks damaged or to be dropped
    (an edit list), a stream not starting with a key frame shown first, timestamps that contradict the
    decoding order, a reading error. Packets are read only as far as the frames taken need: a packet is not
    shown before it is decoded (pts >= dts) and decoding times only grow, so every frame shown before the
    latest packet's dts is known (checked: a later packet shown earlier makes the plan untrusted)."""
    import av

    if stream.codec_context.name not in SKIPPING_DECODERS or not stream.time_base:
        return None
    clock = _Clock(stream)
    order: list[int] = []
    seen: set[int] = set()

    def stamps() -> Iterator[float]:
        waiting: list[int] = []  # a heap of the pts read and not yet placed in ``order``
        first = None
        for packet in container.demux(stream):
            pts = packet.pts
            if pts is None and not packet.size:
                continue  # the empty packet that ends the stream
            if pts is None or pts in seen or packet.is_discard or packet.is_corrupt:
                raise NotAsPlanned
            if first is None:
                if not packet.is_keyframe:
                    raise NotAsPlanned
                first = pts
            if pts < first or (order and pts <= order[-1]):
                raise NotAsPlanned  # shown before the first key frame, or before a frame already placed
            seen.add(pts)
            heapq.heappush(waiting, pts)
            while waiting and packet.dts is not None and waiting[0] < packet.dts:
                order.append(heapq.heappop(waiting))
                yield clock.seconds(order[-1]) * 1000.0
        while waiting:
            order.append(heapq.heappop(waiting))
            yield clock.seconds(order[-1]) * 1000.0

    try:
        taken = tuple(order[index] for index in select_positions(stamps(), every_ms, max_frames))
    except (NotAsPlanned, av.FFmpegError):
        return None
    if not taken:
        return None
    return FramePlan(taken, frozenset(seen), order[-1] if len(taken) < max_frames else None)


def planned_frames(path: str | os.PathLike, container, stream, plan: FramePlan):
    """The frames of ``plan.taken``, decoding only them, the last frame and the frames other frames refer to
    (``skip_frame`` NONREF for the others); raises :class:`NotAsPlanned` when a frame decoded is not one of the
    packets', comes out of order, or a frame planned is missing. A stream that ends before ``max_frames`` are
    taken is decoded to its end and checked as :func:`check_complete` says, from its last frame."""
    context = stream.codec_context
    decoded = {*plan.taken, plan.last}
    taken = iter(plan.taken)
    expected = next(taken)
    last = None
    for packet in container.demux(stream):
        context.skip_frame = "DEFAULT" if packet.pts in decoded else "NONREF"
        for frame in packet.decode():
            pts = frame.pts
            if (
                pts is None
                or pts not in plan.known
                or (last is not None and pts <= last.pts)
                or (expected is not None and pts > expected)
            ):
                raise NotAsPlanned
            last = frame
            if pts == expected:
                yield frame
                expected = next(taken, None)
                if expected is None and plan.last is None:
                    return  # max_frames taken
    if expected is not None or last is None or last.pts != plan.last:
        raise NotAsPlanned  # the stream ended before every frame planned was decoded
    clock = _Clock(stream)
    check_complete(
        path, container, stream, clock.seconds(last.pts) + clock.lasts(last.duration, last.time_base)
    )


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
