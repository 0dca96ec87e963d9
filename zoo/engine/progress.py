"""A progress line on stderr: redrawn in place on a terminal, one line every few seconds in a log."""

from __future__ import annotations

import sys
import time


def _fmt_seconds(s: float) -> str:
    s = int(max(0, s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class Progress:
    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        unit: str = "step",
        enabled: bool = True,
        interval: float = 0.25,
        log_interval: float = 10.0,
    ) -> None:
        self.desc = desc
        self.total = total
        self.unit = unit
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.interval = interval if self.tty else log_interval
        self.count = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self._width = 0

    def update(self, n: int = 1, *, force: bool = False, **fields: object) -> None:
        self.count += n
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < self.interval):
            return
        self._last = now
        elapsed = now - self.start
        parts = [f"{self.desc}: {self.count}" + (f"/{self.total}" if self.total else "") + f" {self.unit}s"]
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items()]
        if self.total and self.count:
            parts.append(f"ETA {_fmt_seconds(elapsed / self.count * (self.total - self.count))}")
        parts.append(f"elapsed {_fmt_seconds(elapsed)}")
        line = " | ".join(parts)
        if self.tty:
            sys.stderr.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self, **fields: object) -> None:
        self.update(0, force=True, **fields)
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
