"""zoo.plot: the PNG is valid (decoded here by a tiny independent decoder) and the chart shows the data."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest

from zoo.plot import _FONT as FONT
from zoo.plot import (
    BACKGROUND,
    FRAME_COLOR,
    PALETTE,
    Panel,
    charts,
    encode_png,
    format_ticks,
    line_chart,
    nice_ticks,
    render,
    text_width,
    write_png,
)

BLUE, ORANGE = PALETTE[0], PALETTE[1]


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB, non-interlaced PNG whose rows all use filter 0, checking every chunk CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "bad PNG signature"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"CRC mismatch in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert np.all(rows[:, 0] == 0), "only filter type 0 is expected"
    return rows[:, 1:].reshape(height, width, 3)


def pixels(img: np.ndarray, color) -> np.ndarray:
    return np.all(img == np.array(color, dtype=np.uint8), axis=-1)


def plot_box(img: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the plot area inside the frame (bottom/right exclusive)."""
    frame = pixels(img, FRAME_COLOR)
    rows = np.flatnonzero(frame.sum(axis=1) > img.shape[1] * 0.5)
    cols = np.flatnonzero(frame.sum(axis=0) > img.shape[0] * 0.5)
    return rows[0] + 1, rows[-1], cols[0] + 1, cols[-1]


def test_png_round_trip_is_exact_and_atomic(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(7, 13, 3), dtype=np.uint8)
    out = write_png(tmp_path / "sub" / "img.png", rgb)
    assert out == tmp_path / "sub" / "img.png"
    np.testing.assert_array_equal(decode_png(out.read_bytes()), rgb)
    assert [p.name for p in out.parent.iterdir()] == ["img.png"]  # no temporary file left behind
    assert encode_png(rgb) == out.read_bytes()


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((4, 4), np.uint8), "[H, W, 3]"),
        (np.zeros((4, 4, 4), np.uint8), "[H, W, 3]"),
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((0, 5, 3), np.uint8), "at least one pixel"),
    ],
)
def test_write_png_rejects_bad_arrays_and_keeps_the_old_file(tmp_path, bad, words):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")
    with pytest.raises(ValueError) as info:
        write_png(target, bad)
    assert words in str(info.value)
    assert target.read_bytes() == b"old"


def test_line_chart_writes_a_png_of_the_requested_size(tmp_path):
    out = line_chart(
        tmp_path / "bench.png",
        {"nextvlad": ([1, 2, 4, 8], [400.0, 780.0, 1500.0, 2900.0])},
        title="Throughput",
        xlabel="devices",
        ylabel="videos/s",
        width=640,
        height=360,
        ylim=(0, None),
    )
    img = decode_png(out.read_bytes())
    assert img.shape == (360, 640, 3)
    assert pixels(img, BLUE).sum() > 200  # the line was drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.png"]


def test_increasing_series_runs_from_lower_left_to_upper_right():
    img = render(
        [
            Panel(
                series={
                    "up": ([0, 10], [0, 10]),
                },
                title="t",
                xlabel="x",
                ylabel="y",
                legend=False,
            )
        ]
    )
    top, bottom, left, right = plot_box(img)
    ys, xs = np.nonzero(pixels(img, BLUE))
    assert ys.size > 300
    assert ys.min() >= top and ys.max() < bottom and xs.min() >= left and xs.max() < right
    mid_row, mid_col = (top + bottom) / 2, (left + right) / 2
    quarter = (right - left) / 4
    left_part, right_part = xs < left + quarter, xs > right - quarter
    assert left_part.sum() > 50 and right_part.sum() > 50
    assert np.all(ys[left_part] > mid_row)  # lower left
    assert np.all(ys[right_part] < mid_row)  # upper right
    # Nothing in the upper-left or lower-right quadrants.
    assert not np.any((xs < mid_col - 20) & (ys < mid_row - 20))
    assert not np.any((xs > mid_col + 20) & (ys > mid_row + 20))


def test_constant_series_is_a_horizontal_line_at_least_two_pixels_thick():
    img = render([Panel(series={"flat": ([0, 1, 2, 3, 4], [0.5] * 5)}, markers=False, legend=False)])
    top, bottom, left, right = plot_box(img)
    blue = pixels(img, BLUE)
    for col in range(left + 20, right - 20, 37):
        rows = np.flatnonzero(blue[:, col])
        assert rows.size >= 2, f"column {col}: line thinner than 2 px"
        assert np.all(np.diff(rows) == 1)
        assert abs(rows.mean() - (top + bottom) / 2) < 3  # a constant sits in the middle of the axis


def test_single_point_gets_a_marker_in_the_middle():
    img = render([Panel(series={"one": ([5.0], [7.0])}, legend=False)])
    top, bottom, left, right = plot_box(img)
    ys, xs = np.nonzero(pixels(img, BLUE))
    assert xs.max() - xs.min() >= 6 and ys.max() - ys.min() >= 6
    assert abs(xs.mean() - (left + right) / 2) < 3 and abs(ys.mean() - (top + bottom) / 2) < 3


def test_nan_breaks_the_line_and_an_all_nan_series_stays_in_the_legend():
    nan = float("nan")
    series = {"gappy": ([0, 1, 2, 3, 4, 5, 6], [0, 1, 2, nan, 4, 5, 6]), "empty": ([0, 1], [nan, nan])}
    img = render([Panel(series=series, markers=False)])
    _, _, left, right = plot_box(img)
    cols = np.unique(np.nonzero(pixels(img, BLUE))[1])
    gaps = np.diff(cols)
    assert gaps.max() > 0.2 * (right - left)  # x = 2..4 is empty: a third of the axis
    assert pixels(img, ORANGE).sum() >= 28  # the all-NaN series still has its legend swatch


def test_legend_shows_each_series_in_a_distinct_colour():
    series = {name: ([0, 1, 2], [i, i + 1, i + 3]) for i, name in enumerate(["train", "valid", "test"])}
    with_legend = render([Panel(series=series, markers=False)])
    without = render([Panel(series=series, markers=False, legend=False)])
    for color in PALETTE[:3]:
        added = pixels(with_legend, color) & ~pixels(without, color)
        assert added.sum() >= 60, f"no legend swatch in {color}"
        assert added.sum(axis=1).max() >= 20  # a horizontal swatch line
    assert len(set(PALETTE)) == len(PALETTE)


def test_panels_side_by_side_stacked_and_shared_colours(tmp_path):
    loss = Panel(
        title="Loss", xlabel="step", ylabel="loss", series={"train": ([0, 1], [2, 1]), "valid": ([1], [1.5])}
    )
    gap = Panel(title="GAP", xlabel="epoch", ylabel="GAP", series={"valid": ([1, 2, 3], [0.5, 0.7, 0.8])})
    img = decode_png(charts(tmp_path / "h.png", [loss, gap], panel_width=400, panel_height=300).read_bytes())
    assert img.shape == (300, 800, 3)
    left_half, right_half = img[:, :400], img[:, 400:]
    assert pixels(left_half, BLUE).any() and pixels(left_half, ORANGE).any()
    assert (
        pixels(right_half, ORANGE).sum() > 100 and not pixels(right_half, BLUE).any()
    )  # "valid" keeps its colour

    stacked = render([loss, gap], columns=1, panel_width=400, panel_height=300)
    assert stacked.shape == (600, 400, 3)
    grid = render([loss, gap, gap], columns=2, panel_width=400, panel_height=300)
    assert grid.shape == (600, 800, 3)
    assert np.all(grid[300:, 400:] == BACKGROUND)  # the empty fourth cell


def test_fixed_limits_clip_lines_to_the_plot_area():
    img = render(
        [
            Panel(
                series={"s": (np.arange(11.0), np.arange(11.0) ** 2)}, xlim=(0, 5), ylim=(0, 20), legend=False
            )
        ]
    )
    top, bottom, left, right = plot_box(img)
    ys, xs = np.nonzero(pixels(img, BLUE))
    assert ys.min() >= top and ys.max() < bottom and xs.min() >= left and xs.max() < right
    assert ys.min() <= top + 2  # the curve leaves through the top edge


def test_long_noisy_series_keeps_its_full_envelope():
    n = 40_000
    y = np.tile([0.0, 1.0], n // 2)
    img = render([Panel(series={"noise": (np.arange(n), y)}, legend=False)])
    top, bottom, left, right = plot_box(img)
    blue = pixels(img, BLUE)[top:bottom, left + 5 : right - 5]
    band = (bottom - top) // 8
    assert blue[:band].any(axis=0).mean() > 0.95 and blue[-band:].any(axis=0).mean() > 0.95


@pytest.mark.parametrize(
    "panel, words",
    [
        (Panel(series={}), "no series"),
        (Panel(series={"a": ([], [])}, title="T"), "'a' is empty"),
        (Panel(series={"a": ([1, 2, 3], [1, 2])}), "3 x values but 2 y values"),
        (Panel(series={"a": ([1, 2], ["x", "y"])}), "non-numeric y"),
        (Panel(series={"a": [1, 2, 3]}), "pair (xs, ys)"),
        (Panel(series={"a": ([1, 2], [1, 2])}, ylim=(3, 1)), "ylim"),
        (Panel(series={"a": ([1, 2], [1, 2])}, xlim=(0, float("inf"))), "xlim"),
    ],
)
def test_bad_series_raise_clear_errors(panel, words):
    with pytest.raises(ValueError) as info:
        render([panel])
    assert words in str(info.value)


def test_bad_layouts_raise():
    panel = Panel(series={"a": ([1], [1])})
    with pytest.raises(ValueError, match="at least one Panel"):
        render([])
    with pytest.raises(ValueError, match="columns"):
        render([panel], columns=0)
    with pytest.raises(ValueError, match="too small"):
        render([panel], panel_width=50, panel_height=50)
    with pytest.raises(ValueError, match="no series"):
        line_chart("/nonexistent/never-written.png", {}, title="t", xlabel="x", ylabel="y")


@pytest.mark.parametrize(
    "lo, hi, max_ticks",
    [(0, 12000, 7), (0.6, 0.87, 6), (-3, 0, 5), (1e-6, 3e-6, 6), (1, 8, 8), (-0.004, 0.003, 5)],
)
def test_ticks_are_one_two_five_steps_inside_the_range(lo, hi, max_ticks):
    ticks, step = nice_ticks(lo, hi, max_ticks)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-9
    assert 2 <= len(ticks) <= max_ticks + 1
    assert all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
    labels = format_ticks(ticks, step)
    assert len(set(labels)) == len(labels)  # neighbours are told apart


def test_tick_labels_read_naturally():
    assert format_ticks(*nice_ticks(0, 12000, 7)) == ["0", "2k", "4k", "6k", "8k", "10k", "12k"]
    assert format_ticks(*nice_ticks(0.6, 0.87, 4)) == ["0.6", "0.7", "0.8"]
    assert format_ticks([-0.1, 0.0, 0.1], 0.1) == ["-0.1", "0", "0.1"]
    assert format_ticks([1e-6, 2e-6], 1e-6) == ["1e-6", "2e-6"]
    assert nice_ticks(1, 3, 10, integer=True)[1] == 1  # devices are counted in whole numbers


def test_font_covers_the_promised_characters_with_distinct_glyphs():
    promised = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_/%:()@x "
    assert set(promised) <= set(FONT)
    bitmaps = {glyph.tobytes() for glyph in FONT.values()}
    assert len(bitmaps) == len(FONT)
    assert text_width("loss") == (4 * 6 - 1) * 2


@pytest.mark.parametrize("lo, hi", [(0.1, 0.9), (0.31, 0.34), (101.0, 109.0), (-1.9, -1.1)])
def test_even_two_requested_ticks_give_two_labels(lo, hi):
    ticks, step = nice_ticks(lo, hi, 2)
    assert len(ticks) >= 2 and all(lo <= t <= hi for t in ticks)
