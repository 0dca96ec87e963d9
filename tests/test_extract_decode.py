"""Decoding only the frames taken and the frames they refer to (the frames taken found first from the packets'
timestamps): the same frames, pixel for pixel, as decoding every frame, and every frame decoded whenever the
plan cannot be trusted."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from test_extract_support import write_frames, write_video  # noqa: E402
from zoo_yt8m_extract.frames import (  # noqa: E402
    NotAsPlanned,
    VideoError,
    decode_frames,
    plan_frames,
    planned_frames,
    select_positions,
)

B_FRAMES = {"x264-params": "bframes=3:b-pyramid=normal:keyint=40"}
NO_B_FRAMES = {"x264-params": "bframes=0:keyint=40"}


def _moving(n: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    return [
        np.stack([(xx * 4 + i * 7) % 256, (yy * 5 + i * 3) % 256, ((xx + yy) * 2 + i * 11) % 256], -1).astype(
            np.uint8
        )
        for i in range(n)
    ]


def _plan(path, every_ms: float = 1000.0, max_frames: int = 300):
    with av.open(str(path)) as container:
        return plan_frames(container, container.streams.video[0], every_ms, max_frames)


def _as_planned(path, plan) -> list[int]:
    """The pts of the frames the planned decoding gives (no falling back to every frame)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return [frame.pts for frame in planned_frames(path, container, stream, plan)]


def _non_reference(path) -> tuple[set[int], int]:
    """The pts of the frames no frame refers to (what there is to skip in this video), and how many frames."""
    decoded = []
    for skip in ("DEFAULT", "NONREF"):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = skip
            decoded.append({frame.pts for frame in container.decode(stream)})
    return decoded[0] - decoded[1], len(decoded[0])


def _same_frames(path, **kwargs) -> list[tuple[float, np.ndarray]]:
    every = list(decode_frames(path, skip_untaken=False, **kwargs))
    skipping = list(decode_frames(path, **kwargs))
    assert [t for t, _ in skipping] == [t for t, _ in every]
    for (_, mine), (_, reference) in zip(skipping, every):
        assert mine.shape == reference.shape and np.array_equal(mine, reference)
    return every


@pytest.mark.parametrize("fps", [10, 24, 25, 29.97, 30, 60])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_b_frames_are_skipped_and_the_frames_taken_are_the_same(tmp_path, fps, suffix):
    path = write_frames(
        tmp_path / f"b frames {fps}{suffix}", _moving(int(4.5 * fps)), fps=fps, options=B_FRAMES
    )
    _check_skipping(path)


@pytest.mark.parametrize("fps", [25, 29.97])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_hevc_b_frames_are_skipped_and_the_frames_taken_are_the_same(tmp_path, fps, suffix):
    if "libx265" not in av.codecs_available:
        pytest.skip("this PyAV has no HEVC encoder (libx265)")
    path = write_frames(
        tmp_path / f"hevc {fps}{suffix}",
        _moving(int(4.5 * fps)),
        fps=fps,
        codec="libx265",
        options={"x265-params": "log-level=error:keyint=40"},
    )
    _check_skipping(path)


def _check_skipping(path) -> None:
    skipped, total = _non_reference(path)
    assert len(skipped) >= total // 4  # the video has frames to skip
    taken = set()
    for kwargs in ({}, {"every_ms": 500.0}, {"max_frames": 2}):
        plan = _plan(path, **kwargs)
        assert plan is not None
        assert _as_planned(path, plan) == list(plan.taken)  # decoded as planned, no falling back
        frames = _same_frames(path, **kwargs)
        assert len(frames) == len(plan.taken)
        taken.update(plan.taken)
    # max_frames reached: the packets after the second frame taken (and its reordering) are not read
    assert len(plan.taken) == 2 and plan.last is None and len(plan.known) < total // 2
    # a frame taken that no frame refers to is decoded: skip_frame changes packet by packet (frame threads too)
    assert skipped & taken


def test_without_b_frames_nothing_is_skipped_and_the_plan_holds(tmp_path):
    path = write_frames(tmp_path / "p frames.mp4", _moving(45), fps=10, options=NO_B_FRAMES)
    assert _non_reference(path) == (set(), 45)
    plan = _plan(path)
    assert plan is not None and _as_planned(path, plan) == list(plan.taken)
    assert [round(t, 1) for t, _ in _same_frames(path)] == [0.0, 1.1, 2.1, 3.1, 4.1]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_with_b_frames(tmp_path, suffix):
    rng = np.random.default_rng(1)
    stamps = [0, *np.cumsum(rng.integers(30, 400, 60)).tolist()]
    path = write_frames(
        tmp_path / f"variable{suffix}", _moving(len(stamps)), stamps_ms=stamps, options=B_FRAMES
    )
    assert _non_reference(path)[0]
    plan = _plan(path)
    assert plan is not None and _as_planned(path, plan) == list(plan.taken)
    frames = _same_frames(path)
    assert [round(t * 1000) for t, _ in frames] == [stamps[i] for i in select_positions(stamps, 1000.0, 300)]


def test_rotation_with_b_frames(tmp_path):
    images = _moving(40, size=(64, 48))
    path = write_frames(tmp_path / "phone.mp4", images, fps=10, rotation=90, options=B_FRAMES)
    assert _plan(path) is not None
    frames = _same_frames(path)
    assert frames[0][1].shape == (64, 48, 3)  # upright: portrait


def test_a_stream_ending_first_is_decoded_to_its_last_frame(tmp_path):
    """A stream that ends before max_frames are taken is checked against the duration it announces, from its
    last frame (shown last): the plan decodes it."""
    for suffix in (".mp4", ".mkv"):
        path = write_frames(tmp_path / f"whole{suffix}", _moving(37), fps=10, options=B_FRAMES)
        with av.open(str(path)) as container:
            last = max(p.pts for p in container.demux(container.streams.video[0]) if p.size)
        assert _plan(path).last == last and _plan(path, max_frames=4).last is None


def _same_error(path, pattern: str) -> None:
    errors = []
    for skip in (False, True):
        with pytest.raises(VideoError, match=pattern) as caught:
            list(decode_frames(path, skip_untaken=skip))
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


def test_cut_files_give_the_same_errors(tmp_path):
    for suffix in (".mkv", ".mp4"):
        good = write_frames(tmp_path / f"whole{suffix}", _moving(40), fps=10, options=B_FRAMES)
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        _same_error(cut, f"cut{suffix}: ")
    # an MP4 whose index comes first decodes its first half, then is found cut short by either way
    with av.open(str(tmp_path / "faststart.mp4"), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=10, options=B_FRAMES)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for image in _moving(40):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    whole = (tmp_path / "faststart.mp4").read_bytes()
    with av.open(str(tmp_path / "faststart.mp4")) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
        boundary = packets[20].pos + packets[20].size
    # cut inside a packet (which the demuxer marks damaged: every frame decoded), and between two packets
    for name, size in (("inside a packet", len(whole) // 2), ("between packets", boundary)):
        cut = tmp_path / f"faststart cut {name}.mp4"
        cut.write_bytes(whole[:size])
        assert (_plan(cut) is None) == (name == "inside a packet")
        _same_error(cut, f"{cut.name}: truncated: .* of the 4.0 s")


def test_every_frame_is_decoded_when_the_plan_cannot_be_trusted(tmp_path):
    # a decoder without reference information here (MPEG-4 part 2 is not among the skipping ones)
    mpeg4 = write_video(tmp_path / "mpeg4.mp4", seconds=3, fps=10)
    assert _plan(mpeg4) is None
    _same_frames(mpeg4)
    # a raw H.264 stream: packets without timestamps (its frames are read at 25 fps: 1.2 s)
    raw = write_frames(tmp_path / "raw.h264", _moving(30), fps=10, options=B_FRAMES)
    with av.open(str(raw)) as container:
        assert all(p.pts is None for p in container.demux(container.streams.video[0]))
    assert _plan(raw) is None
    assert len(_same_frames(raw)) == 2


def test_a_stream_not_decoded_in_the_order_of_its_timestamps_is_decoded_again(tmp_path):
    """Two frames' timestamps swapped (a reference frame and a frame shown before it): the plan (from the
    timestamps) holds until the decoder gives them in the other order; from there every frame is decoded
    from the start, and the frames given already are not given twice."""
    source = write_frames(tmp_path / "source.mp4", _moving(40), fps=10, options=B_FRAMES)
    plan = _plan(source)
    third = plan.taken[2]
    with av.open(str(source)) as container:
        packets = [(p.pts, p.dts) for p in container.demux(container.streams.video[0]) if p.size]
    # the frame taken third is decoded before the frame shown after it: give each the other's timestamp
    (index,) = [i for i, (pts, _) in enumerate(packets) if pts == third]
    after = min(pts for pts, dts in packets if pts > third and dts < packets[index][1])
    swapped = tmp_path / "swapped.mp4"
    with av.open(str(source)) as src, av.open(str(swapped), "w") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in src.demux(video):
            if not packet.size:
                continue
            if packet.pts in (third, after):
                packet.pts = after if packet.pts == third else third
            packet.stream = stream
            out.mux(packet)
    plan = _plan(swapped)
    assert plan is not None
    given = []
    with av.open(str(swapped)) as container, pytest.raises(NotAsPlanned):
        stream = container.streams.video[0]
        for frame in planned_frames(swapped, container, stream, plan):
            given.append(frame.pts)
    assert given == list(plan.taken[:2])
    _same_frames(swapped)
