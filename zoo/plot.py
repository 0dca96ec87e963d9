"""PNG line charts with numpy alone: training curves and benchmark results without matplotlib.

The project's dependencies stay small (paddle, numpy, pyyaml, pluggy, tabulate), yet a training run should
leave a picture of its loss and GAP behind and a benchmark a picture of throughput against devices. So this
module draws the few things those need: linear axes with 1-2-5 ticks, grid, title, axis labels, a legend,
2.5 px anti-aliased lines (NaN breaks a line, a lone point gets a marker) and text in a built-in 5x7 font.

    from zoo.plot import Panel, charts, line_chart
    line_chart("bench.png", {"nextvlad": ([1, 2, 4], [410.0, 790.0, 1500.0])},
               title="Throughput", xlabel="devices", ylabel="videos/s")
    charts("history.png", [Panel(title="Loss", xlabel="step", ylabel="loss", series={...}),
                           Panel(title="GAP@20", xlabel="epoch", ylabel="GAP", series={...})])
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.atomic import atomic_path

__all__ = [
    "PALETTE",
    "Panel",
    "charts",
    "encode_png",
    "format_ticks",
    "line_chart",
    "nice_ticks",
    "render",
    "text_width",
    "write_png",
]

# ---------------------------------------------------------------------------------------------------------
# PNG

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(rgb: np.ndarray) -> bytes:
    """The bytes of an 8-bit RGB PNG of ``rgb [H, W, 3] uint8`` (every row uses filter type 0)."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"a PNG image must be an [H, W, 3] array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(
            f"a PNG image must have dtype uint8, got {arr.dtype}; convert with .astype(np.uint8)"
        )
    height, width = arr.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"a PNG image needs at least one pixel, got shape {arr.shape}")
    rows = np.zeros((height, 1 + 3 * width), dtype=np.uint8)  # leading 0 = filter type "None"
    rows[:, 1:] = arr.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bit, truecolour, no interlace
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write ``rgb [H, W, 3] uint8`` as a PNG; the file appears only when complete."""
    data = encode_png(rgb)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------------------
# Bitmap font: 5 columns, 7 rows above the baseline and up to 2 below. Each glyph is one hex byte per row
# (bit 4 = leftmost column), top row first; glyphs with a descender have 8 or 9 rows.

_FONT_SOURCE = {
    "0": "0E11131519110E", "1": "040C040404040E", "2": "0E11010204081F", "3": "1F02040201110E",
    "4": "02060A121F0202", "5": "1F101E0101110E", "6": "0608101E11110E", "7": "1F010204080808",
    "8": "0E11110E11110E", "9": "0E11110F01020C",
    "A": "0E11111F111111", "B": "1E11111E11111E", "C": "0E11101010110E", "D": "1C12111111121C",
    "E": "1F10101E10101F", "F": "1F10101E101010", "G": "0E11101711110F", "H": "1111111F111111",
    "I": "0E04040404040E", "J": "0702020202120C", "K": "11121418141211", "L": "1010101010101F",
    "M": "111B1515111111", "N": "11111915131111", "O": "0E11111111110E", "P": "1E11111E101010",
    "Q": "0E11111115120D", "R": "1E11111E141211", "S": "0F10100E01011E", "T": "1F040404040404",
    "U": "1111111111110E", "V": "11111111110A04", "W": "1111111515150A", "X": "11110A040A1111",
    "Y": "11110A04040404", "Z": "1F01020408101F",
    "a": "00000E010F110F", "b": "1010161911111E", "c": "00000E1010110E", "d": "01010D1311110F",
    "e": "00000E111F100E", "f": "0609081C080808", "g": "00000F1111110F010E", "h": "10101619111111",
    "i": "04000C0404040E", "j": "02000602020202120C", "k": "10101214181412", "l": "0C04040404040E",
    "m": "00001A15151515", "n": "00001619111111", "o": "00000E1111110E", "p": "00001E1111111E1010",
    "q": "00000F1111110F0101", "r": "00001619101010", "s": "00000F100E011E", "t": "08081C08080906",
    "u": "0000111111130D", "v": "00001111110A04", "w": "0000111115150A", "x": "0000110A040A11",
    "y": "0000111111110F010E", "z": "00001F0204081F",
    " ": "00000000000000", ".": "00000000000C0C", ",": "00000000000C0408", "-": "0000001F000000",
    "_": "000000000000001F", "/": "01010204081010", "%": "18190204081303", ":": "000C0C000C0C00",
    ";": "000C0C000C0408", "(": "02040808080402", ")": "08040202020408", "@": "0E11171517100F",
    "+": "0004041F040400", "=": "00001F001F0000", "[": "0E08080808080E", "]": "0E02020202020E",
    "<": "02040810080402", ">": "08040201020408", "?": "0E110102040004", "!": "04040404040004",
    "#": "0A0A1F0A1F0A0A", "'": "04040800000000", '"': "0A0A0000000000", "*": "0004150E150400",
    "|": "04040404040404",
}  # fmt: skip

_GLYPH_ROWS = 9  # 7 above the baseline + 2 for descenders
_GLYPH_COLS = 5
_ADVANCE = _GLYPH_COLS + 1


def _parse_font(source: Mapping[str, str]) -> dict[str, np.ndarray]:
    font = {}
    bits = np.array([16, 8, 4, 2, 1], dtype=np.uint8)
    for char, code in source.items():
        rows = [int(code[i : i + 2], 16) for i in range(0, len(code), 2)]
        glyph = np.zeros((_GLYPH_ROWS, _GLYPH_COLS), dtype=bool)
        glyph[: len(rows)] = (np.array(rows, dtype=np.uint8)[:, None] & bits) != 0
        font[char] = glyph
    return font


_FONT = _parse_font(_FONT_SOURCE)
_TEXT_SCALE = 2


def text_width(text: str, scale: int = _TEXT_SCALE) -> int:
    """Width in pixels of ``text`` drawn in the built-in font at ``scale``."""
    return max(0, (_ADVANCE * len(text) - 1) * scale)


def _text_mask(text: str, scale: int = _TEXT_SCALE, bold: bool = False) -> np.ndarray:
    """Boolean bitmap ``[9 * scale, width]`` of ``text``; characters outside the font show as ``?``."""
    mask = np.zeros((_GLYPH_ROWS, max(1, _ADVANCE * len(text) - 1)), dtype=bool)
    for i, char in enumerate(text):
        mask[:, i * _ADVANCE : i * _ADVANCE + _GLYPH_COLS] = _FONT.get(char, _FONT["?"])
    mask = np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)
    if bold:  # thicken strokes by one screen pixel to the right
        mask = np.pad(mask, ((0, 0), (0, 1)))
        mask[:, 1:] |= mask[:, :-1].copy()
    return mask


def _fit_text(text: str, width: int) -> str:
    """``text``, shortened with ``..`` so that it is at most ``width`` pixels wide."""
    if text_width(text) <= width:
        return text
    keep = max(0, (width // _TEXT_SCALE + 1) // _ADVANCE - 2)
    return text[:keep] + ".."


# ---------------------------------------------------------------------------------------------------------
# Ticks


def nice_ticks(
    lo: float, hi: float, max_ticks: int = 6, *, integer: bool = False
) -> tuple[list[float], float]:
    """Tick values inside ``[lo, hi]`` spaced by 1, 2 or 5 times a power of ten, and that spacing.

    At most about ``max_ticks`` ticks; ``integer`` keeps the spacing at 1 or more (device counts, epochs).
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"tick range must be finite with lo < hi, got [{lo}, {hi}]")
    raw = (hi - lo) / max(1, max_ticks - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = 10 * power
    for mult in (1, 2, 5, 10):
        if mult * power >= raw * (1 - 1e-9):
            step = mult * power
            break
    if integer and step < 1:
        step = 1.0
    while True:
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        if last > first or (integer and step <= 1):
            return [float(f"{k * step:.12g}") for k in range(first, last + 1)], step
        step = _smaller_step(step)  # a range like [0.1, 0.9] needs two ticks to be readable


def _smaller_step(step: float) -> float:
    """The next 1-2-5 step below ``step``."""
    power = 10.0 ** math.floor(math.log10(step) + 1e-9)
    mult = round(step / power)
    return {1: 0.5, 2: 1.0, 5: 2.0}.get(mult, 0.5) * power


def format_ticks(ticks: Sequence[float], step: float) -> list[str]:
    """Labels for evenly spaced ``ticks``: as few decimals as the step needs, k/M/G for large values."""
    if not ticks:
        return []
    biggest = max(abs(t) for t in ticks)
    for unit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if biggest >= 10 * unit and step >= unit / 1000:
            decimals = max(0, -math.floor(math.log10(step / unit) + 1e-9))
            return [_fixed(t / unit, decimals) + (suffix if abs(t) > step * 1e-6 else "") for t in ticks]
    if step < 1e-5:  # scientific: enough significant digits to tell neighbours apart
        digits = min(6, max(1, math.floor(math.log10(biggest)) - math.floor(math.log10(step) + 1e-9) + 1))
        return [_scientific(t, digits) if abs(t) > step * 1e-6 else "0" for t in ticks]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [_fixed(t, decimals) for t in ticks]


def _scientific(value: float, digits: int) -> str:
    mantissa, _, exponent = f"{value:.{digits - 1}e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def _fixed(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


# ---------------------------------------------------------------------------------------------------------
# Charts

PALETTE: list[tuple[int, int, int]] = [
    (31, 119, 180),  # blue
    (255, 127, 14),  # orange
    (44, 160, 44),  # green
    (214, 39, 40),  # red
    (148, 103, 189),  # purple
    (140, 86, 75),  # brown
    (227, 119, 194),  # pink
    (127, 127, 127),  # grey
    (188, 189, 34),  # olive
    (23, 190, 207),  # cyan
]
"""Series colours in order of first appearance (a name keeps its colour in every panel of a figure)."""

BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
FRAME_COLOR = (90, 90, 90)
GRID_COLOR = (228, 228, 228)
LEGEND_BORDER = (170, 170, 170)

_SUPERSAMPLE = 3  # lines are drawn on a 3x finer grid and averaged down: cheap anti-aliasing
_LINE_WIDTH = 2.5
_MARKER_RADIUS = 4.0
_AUTO_MARKERS_MAX_POINTS = 30
_MIN_PANEL = (240, 160)

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]
Limits = tuple[float | None, float | None]


@dataclass(frozen=True, kw_only=True)
class Panel:
    """One chart: named ``(xs, ys)`` series on linear axes."""

    series: Series
    """Legend label -> (x values, y values) of equal length; NaN or inf in either breaks the line."""
    title: str = ""
    """Shown above the plot area."""
    xlabel: str = ""
    """Label under the x axis."""
    ylabel: str = ""
    """Label beside the y axis (reads bottom to top)."""
    xlim: Limits | None = None
    """Fixed x range ``(lo, hi)``; either end may be None (fit to the data)."""
    ylim: Limits | None = None
    """Fixed y range, e.g. ``(0, None)`` to start a throughput axis at zero."""
    markers: bool | None = None
    """Draw a dot at every point; None: only for series of at most 30 points (single points always get one)."""
    legend: bool = True
    """Draw the legend, in the plot corner that hides the least of the lines."""


@dataclass
class _Line:
    name: str
    x: np.ndarray
    y: np.ndarray
    finite: np.ndarray


def _prepare(panel: Panel) -> list[_Line]:
    """Check a panel's series and turn them into float arrays; errors name the chart and the series."""
    where = f"chart {panel.title!r}" if panel.title else "chart"
    if not isinstance(panel.series, Mapping) or not panel.series:
        raise ValueError(f"{where} has no series; pass a dict of label -> (xs, ys) with at least one entry")
    lines = []
    for name, pair in panel.series.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{where}: series {name!r} must be a pair (xs, ys), got {type(pair).__name__}")
        arrays = []
        for axis, values in zip("xy", pair):
            try:
                arr = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: series {name!r} has non-numeric {axis} values ({err})") from None
            if arr.ndim != 1:
                raise ValueError(
                    f"{where}: series {name!r} {axis} values must be a flat list, got shape {arr.shape}"
                )
            arrays.append(arr)
        x, y = arrays
        if len(x) != len(y):
            raise ValueError(
                f"{where}: series {name!r} has {len(x)} x values but {len(y)} y values; give one y per x"
            )
        if len(x) == 0:
            raise ValueError(f"{where}: series {name!r} is empty; give it at least one point or leave it out")
        lines.append(_Line(str(name), x, y, np.isfinite(x) & np.isfinite(y)))
    for axis, lim in (("xlim", panel.xlim), ("ylim", panel.ylim)):
        if lim is None:
            continue
        if len(lim) != 2 or any(v is not None and not math.isfinite(v) for v in lim):
            raise ValueError(f"{where}: {axis} must be (lo, hi) with finite numbers or None, got {lim!r}")
        if lim[0] is not None and lim[1] is not None and lim[0] >= lim[1]:
            raise ValueError(f"{where}: {axis} = {lim!r} is empty; the low end must be below the high end")
    return lines


def _axis_range(values: np.ndarray, lim: Limits | None, pad: float) -> tuple[float, float]:
    """Data range widened by ``pad`` (a fraction) on each side; a constant gets a band around it."""
    if values.size:
        lo, hi = float(values.min()), float(values.max())
    else:
        lo, hi = 0.0, 1.0
    if hi == lo:
        half = abs(lo) * 0.1 or 1.0
        lo, hi = lo - half, hi + half
    span = hi - lo
    lo, hi = lo - pad * span, hi + pad * span
    if lim is not None:
        lo = lo if lim[0] is None else float(lim[0])
        hi = hi if lim[1] is None else float(lim[1])
        if hi <= lo:  # one fixed end beyond all the data
            hi, lo = (lo + span, lo) if lim[1] is None else (hi, hi - span)
    return lo, hi


def render(
    panels: Sequence[Panel],
    *,
    columns: int | None = None,
    panel_width: int = 800,
    panel_height: int = 500,
) -> np.ndarray:
    """The figure as an ``[H, W, 3] uint8`` array: panels laid out in a grid, left to right, top to bottom.

    ``columns`` defaults to all panels in one row; ``columns=1`` stacks them.
    """
    panels = list(panels)
    if not panels:
        raise ValueError("no panels to draw; pass at least one Panel")
    for i, panel in enumerate(panels):
        if not isinstance(panel, Panel):
            raise ValueError(f"panel {i} is a {type(panel).__name__}, not a zoo.plot.Panel")
    columns = len(panels) if columns is None else columns
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if panel_width < _MIN_PANEL[0] or panel_height < _MIN_PANEL[1]:
        raise ValueError(
            f"panel size {panel_width}x{panel_height} is too small to draw axes and labels; "
            f"use at least {_MIN_PANEL[0]}x{_MIN_PANEL[1]}"
        )
    prepared = [_prepare(panel) for panel in panels]
    colors = _assign_colors(prepared)
    rows = math.ceil(len(panels) / columns)
    used_columns = min(columns, len(panels))
    canvas = np.empty((rows * panel_height, used_columns * panel_width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    for i, (panel, lines) in enumerate(zip(panels, prepared)):
        r, c = divmod(i, columns)
        view = canvas[r * panel_height : (r + 1) * panel_height, c * panel_width : (c + 1) * panel_width]
        _draw_panel(view, panel, lines, colors)
    return canvas


def _assign_colors(prepared: list[list[_Line]]) -> dict[str, tuple[int, int, int]]:
    """One colour per label for the whole figure: unused colours first, never a repeat within a panel
    while the palette lasts."""
    colors: dict[str, tuple[int, int, int]] = {}
    for lines in prepared:
        in_panel = [colors[line.name] for line in lines if line.name in colors]
        for line in lines:
            if line.name in colors:
                continue
            fresh = [c for c in PALETTE if c not in colors.values() and c not in in_panel]
            free = [c for c in PALETTE if c not in in_panel]
            color = (fresh or free or [PALETTE[len(in_panel) % len(PALETTE)]])[0]
            colors[line.name] = color
            in_panel.append(color)
    return colors


def charts(
    path: str | os.PathLike,
    panels: Sequence[Panel],
    *,
    columns: int | None = None,
    panel_width: int = 800,
    panel_height: int = 500,
) -> Path:
    """Write several charts into one PNG (side by side by default, ``columns=1`` to stack them)."""
    image = render(panels, columns=columns, panel_width=panel_width, panel_height=panel_height)
    return write_png(path, image)


def line_chart(
    path: str | os.PathLike,
    series: Series,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 800,
    height: int = 500,
    xlim: Limits | None = None,
    ylim: Limits | None = None,
    markers: bool | None = None,
) -> Path:
    """Write one line chart of ``series`` (label -> (xs, ys)) as a ``width`` x ``height`` PNG."""
    panel = Panel(
        series=series, title=title, xlabel=xlabel, ylabel=ylabel, xlim=xlim, ylim=ylim, markers=markers
    )
    return charts(path, [panel], panel_width=width, panel_height=height)


# ---------------------------------------------------------------------------------------------------------
# Drawing


def _paint(view: np.ndarray, mask: np.ndarray, x: int, y: int, color: tuple[int, int, int]) -> None:
    """Set the pixels of ``view`` under ``mask`` (top-left corner at ``x, y``) to ``color``, clipped."""
    h, w = view.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + mask.shape[1], w), min(y + mask.shape[0], h)
    if x0 >= x1 or y0 >= y1:
        return
    sub = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    view[y0:y1, x0:x1][sub] = color


def _fill(view: np.ndarray, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
    h, w = view.shape[:2]
    view[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = color


def _text(
    view: np.ndarray,
    text: str,
    x: float,
    y: float,
    *,
    anchor: str = "left",
    rotate: bool = False,
    bold: bool = False,
    color: tuple[int, int, int] = TEXT_COLOR,
) -> None:
    """Draw ``text`` with its top at ``y``; ``anchor`` says whether ``x`` is its left, centre or right."""
    if not text:
        return
    mask = _text_mask(text, bold=bold)
    if rotate:
        mask = np.rot90(mask)  # reads bottom to top; then ``x`` is the left, ``y`` the vertical centre
        _paint(view, mask, int(x), int(round(y - mask.shape[0] / 2)), color)
        return
    width = mask.shape[1]
    left = {"left": x, "center": x - width / 2, "right": x - width}[anchor]
    _paint(view, mask, int(round(left)), int(y), color)


def _clip_segment(
    ax: float, ay: float, bx: float, by: float, xmax: float, ymax: float, margin: float
) -> tuple[float, float, float, float] | None:
    """Liang-Barsky: the part of segment a-b inside ``[-margin, xmax + margin] x [-margin, ymax + margin]``."""
    dx, dy = bx - ax, by - ay
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, ax + margin), (dx, xmax + margin - ax), (-dy, ay + margin), (dy, ymax + margin - ay)):
        if p == 0:
            if q < 0:
                return None
        elif p < 0:
            t0 = max(t0, q / p)
        else:
            t1 = min(t1, q / p)
    if t0 > t1:
        return None
    return ax + t0 * dx, ay + t0 * dy, ax + t1 * dx, ay + t1 * dy


def _stroke(mask: np.ndarray, ax: float, ay: float, bx: float, by: float, radius: float) -> None:
    """Set the cells of ``mask`` whose centres lie within ``radius`` of segment a-b (a dot if a == b)."""
    dx, dy = bx - ax, by - ay
    # Long diagonal segments are cut in pieces so that each piece's bounding box stays small.
    pieces = max(1, int(min(abs(dx), abs(dy)) // 32))
    h, w = mask.shape
    length2 = dx * dx + dy * dy
    for k in range(pieces):
        sx, sy = ax + dx * k / pieces, ay + dy * k / pieces
        ex, ey = ax + dx * (k + 1) / pieces, ay + dy * (k + 1) / pieces
        x0, x1 = max(int(math.floor(min(sx, ex) - radius)), 0), min(int(math.ceil(max(sx, ex) + radius)), w)
        y0, y1 = max(int(math.floor(min(sy, ey) - radius)), 0), min(int(math.ceil(max(sy, ey) + radius)), h)
        if x0 >= x1 or y0 >= y1:
            continue
        px = np.arange(x0, x1) + 0.5 - ax
        py = (np.arange(y0, y1) + 0.5 - ay)[:, None]
        if length2 > 0:
            t = np.clip((px * dx + py * dy) / length2, k / pieces, (k + 1) / pieces)
            qx, qy = px - t * dx, py - t * dy
        else:
            qx, qy = px + 0 * py, py
        mask[y0:y1, x0:x1] |= qx * qx + qy * qy <= radius * radius


def _thin(px: np.ndarray, py: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep, per pixel column, the first, last, lowest and highest point: the drawn shape is unchanged."""
    if len(px) <= 4 * columns or np.any(np.diff(px) < 0):
        return px, py
    col = np.floor(px / _SUPERSAMPLE).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    ends = np.r_[starts[1:], len(px)] - 1
    order = np.lexsort((py, col))  # within a column (contiguous, as x is sorted): by y
    keep = np.unique(np.concatenate([starts, ends, order[starts], order[ends]]))
    return px[keep], py[keep]


def _line_coverage(
    line: _Line, markers: bool, xr: tuple[float, float], yr: tuple[float, float], pw: int, ph: int
) -> np.ndarray:
    """Fraction ``[ph, pw]`` of each plot pixel covered by the line (and its markers)."""
    s = _SUPERSAMPLE
    mask = np.zeros((ph * s, pw * s), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        sx = np.clip((line.x - xr[0]) / (xr[1] - xr[0]) * (pw * s), -1e7, 1e7)
        sy = np.clip((yr[1] - line.y) / (yr[1] - yr[0]) * (ph * s), -1e7, 1e7)
    radius = _LINE_WIDTH / 2 * s
    dot = _MARKER_RADIUS * s
    # Runs of consecutive finite points; a NaN/inf ends a run.
    idx = np.flatnonzero(line.finite)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1) if idx.size else []
    for run in runs:
        rx, ry = _thin(sx[run], sy[run], pw)
        if len(rx) == 1 or markers:
            for x, y in zip(rx.tolist(), ry.tolist()):
                if -dot <= x <= pw * s + dot and -dot <= y <= ph * s + dot:
                    _stroke(mask, x, y, x, y, dot)
        pts = list(zip(rx.tolist(), ry.tolist()))
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            seg = _clip_segment(ax, ay, bx, by, pw * s, ph * s, radius + 1)
            if seg is not None:
                _stroke(mask, *seg, radius)
    return mask.reshape(ph, s, pw, s).mean(axis=(1, 3))


def _draw_panel(view: np.ndarray, panel: Panel, lines: list[_Line], colors: dict) -> None:
    height, width = view.shape[:2]
    char_h = _GLYPH_ROWS * _TEXT_SCALE
    cap_h = 7 * _TEXT_SCALE

    xs = np.concatenate([line.x[line.finite] for line in lines])
    ys = np.concatenate([line.y[line.finite] for line in lines])
    xr = _axis_range(xs, panel.xlim, 0.02)
    yr = _axis_range(ys, panel.ylim, 0.05)
    integer_x = bool(xs.size) and bool(np.all(xs == np.round(xs)))

    # Vertical layout: title, plot, x tick labels, x label.
    top = 14 + char_h + 10 if panel.title else 14
    bottom = 6 + char_h + (8 + char_h if panel.xlabel else 0) + 10
    ph = height - top - bottom

    yticks, ystep = nice_ticks(*yr, max(2, ph // 40))
    ylabels = format_ticks(yticks, ystep)
    left = 12 + (char_h + 10 if panel.ylabel else 0) + max((text_width(t) for t in ylabels), default=0) + 10
    right = 24
    pw = width - left - right
    if ph < 40 or pw < 40:
        raise ValueError(
            f"chart {panel.title!r}: {width}x{height} leaves no room for the plot; make it larger"
        )

    xticks, xstep, xlabels = [], 1.0, []
    for target in range(max(2, pw // 50), 1, -1):  # densest 1-2-5 ticks whose labels do not touch
        xticks, xstep = nice_ticks(*xr, target, integer=integer_x)
        xlabels = format_ticks(xticks, xstep)
        spacing = xstep / (xr[1] - xr[0]) * pw
        if max((text_width(t) for t in xlabels), default=0) + 16 <= spacing:
            break
    else:  # even the sparsest ticks crowd: label every k-th one
        every = math.ceil((max((text_width(t) for t in xlabels), default=0) + 16) / spacing)
        xlabels = [t if i % every == 0 else "" for i, t in enumerate(xlabels)]

    def col(x: float) -> int:
        return left + min(pw - 1, max(0, int((x - xr[0]) / (xr[1] - xr[0]) * pw)))

    def row(y: float) -> int:
        return top + min(ph - 1, max(0, int((yr[1] - y) / (yr[1] - yr[0]) * ph)))

    # Grid, then lines, then frame, ticks and labels on top.
    for t in xticks:
        _fill(view, col(t), top, col(t) + 1, top + ph, GRID_COLOR)
    for t in yticks:
        _fill(view, left, row(t), left + pw, row(t) + 1, GRID_COLOR)

    plot = view[top : top + ph, left : left + pw]
    covered = np.zeros((ph, pw))
    for line in lines:
        n_finite = int(line.finite.sum())
        markers = panel.markers if panel.markers is not None else n_finite <= _AUTO_MARKERS_MAX_POINTS
        alpha = _line_coverage(line, markers, xr, yr, pw, ph)[..., None]
        color = np.array(colors[line.name], dtype=np.float64)
        plot[:] = (plot * (1 - alpha) + color * alpha + 0.5).astype(np.uint8)
        covered += alpha[..., 0]

    _fill(view, left - 1, top - 1, left + pw + 1, top, FRAME_COLOR)
    _fill(view, left - 1, top + ph, left + pw + 1, top + ph + 1, FRAME_COLOR)
    _fill(view, left - 1, top - 1, left, top + ph + 1, FRAME_COLOR)
    _fill(view, left + pw, top - 1, left + pw + 1, top + ph + 1, FRAME_COLOR)
    for t, label in zip(yticks, ylabels):
        _fill(view, left - 6, row(t), left - 1, row(t) + 1, FRAME_COLOR)
        _text(view, label, left - 10, row(t) - cap_h // 2, anchor="right")
    for t, label in zip(xticks, xlabels):
        _fill(view, col(t), top + ph + 1, col(t) + 1, top + ph + 6, FRAME_COLOR)
        half = text_width(label) / 2
        centre = min(max(col(t), half + 2), width - half - 2)  # keep end labels inside the panel
        _text(view, label, centre, top + ph + 10, anchor="center")

    if panel.title:
        title = _fit_text(panel.title, width - 16)
        centre = min(max(left + pw / 2, text_width(title) / 2 + 8), width - text_width(title) / 2 - 8)
        _text(view, title, centre, 14, anchor="center", bold=True)
    if panel.xlabel:
        _text(view, _fit_text(panel.xlabel, pw), left + pw / 2, top + ph + 10 + char_h + 8, anchor="center")
    if panel.ylabel:
        _text(view, _fit_text(panel.ylabel, ph), 12, top + ph / 2, rotate=True)
    if panel.legend:
        _draw_legend(plot, lines, colors, covered, panel.markers)


def _draw_legend(plot: np.ndarray, lines: list[_Line], colors: dict, covered: np.ndarray, markers) -> None:
    """A boxed legend in the corner of the plot area where it covers the least of the lines."""
    ph, pw = plot.shape[:2]
    labels = [line.name if line.finite.any() else f"{line.name} (no data)" for line in lines]
    row_h, pad, swatch = 22, 8, 28
    box_w = min(pw - 4, pad + swatch + 8 + max(text_width(t) for t in labels) + pad)
    box_h = min(ph - 4, 2 * pad + row_h * len(lines) - 6)
    inset = 8
    corners = [
        (pw - inset - box_w, inset),  # top right first: the usual place
        (inset, inset),
        (pw - inset - box_w, ph - inset - box_h),
        (inset, ph - inset - box_h),
    ]
    corners = [(max(0, x), max(0, y)) for x, y in corners]
    # min() keeps the first of equal scores, so an empty plot puts the legend top right.
    bx, by = min(corners, key=lambda c: covered[c[1] : c[1] + box_h, c[0] : c[0] + box_w].sum())
    _fill(plot, bx, by, bx + box_w, by + box_h, LEGEND_BORDER)
    _fill(plot, bx + 1, by + 1, bx + box_w - 1, by + box_h - 1, BACKGROUND)
    for i, (line, label) in enumerate(zip(lines, labels)):
        y = by + pad + i * row_h
        if y + 14 > by + box_h:
            break
        color = colors[line.name]
        mid = y + 7
        _fill(plot, bx + pad, mid - 1, bx + pad + swatch, mid + 2, color)
        n_finite = int(line.finite.sum())
        if markers or (markers is None and n_finite <= _AUTO_MARKERS_MAX_POINTS):
            yy, xx = np.mgrid[-4:5, -4:5]
            _paint(plot, xx * xx + yy * yy <= 16, bx + pad + swatch // 2 - 4, mid - 4, color)
        text = _fit_text(label, box_w - (pad + swatch + 8 + pad))
        _paint(plot, _text_mask(text), bx + pad + swatch + 8, y, TEXT_COLOR)
