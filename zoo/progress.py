"""The one progress renderer (tqdm on stderr): training steps, evaluation videos, download bytes.

On a terminal the line is redrawn in place; in a log a line is written every ``log_interval`` seconds.
"""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        unit: str = "step",
        enabled: bool = True,
        initial: int = 0,
        byte_sizes: bool = False,
        interval: float = 0.25,
        log_interval: float = 10.0,
    ) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            desc=desc,
            total=total or None,
            initial=initial,
            unit="B" if byte_sizes else unit,
            unit_scale=byte_sizes,
            unit_divisor=1024 if byte_sizes else 1000,
            disable=not enabled,
            file=sys.stderr if sys.stderr.isatty() else _LogLines(sys.stderr),
            mininterval=interval if sys.stderr.isatty() else log_interval,
            dynamic_ncols=True,
        )

    @property
    def count(self) -> int:
        return int(self._bar.n)

    def update(self, n: int = 1, *, force: bool = False, **fields: Any) -> None:
        if fields:
            self._bar.set_postfix(_postfix(fields), refresh=False)
        self._bar.update(n)
        if force:
            self._bar.refresh()

    def close(self, **fields: Any) -> None:
        if fields:
            self._bar.set_postfix(_postfix(fields), refresh=False)
        self._bar.close()


class _LogLines:
    """Where stderr is a log, not a terminal: each of tqdm's redraws becomes a line of its own."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _postfix(fields: dict[str, Any]) -> dict[str, str]:
    return {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in fields.items()}
