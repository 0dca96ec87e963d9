"""Where yt8m-zoo keeps downloads, converted weights and the built-in sample data."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "ZOO_CACHE_DIR"


def cache_dir(*parts: str) -> Path:
    """``$ZOO_CACHE_DIR``, else ``$XDG_CACHE_HOME/yt8m-zoo``, else ``~/.cache/yt8m-zoo`` (joined with parts)."""
    root = os.environ.get(ENV_CACHE)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "yt8m-zoo")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
