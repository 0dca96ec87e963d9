"""The docs name only modules and objects that exist: every dotted ``zoo....`` (or built-in plugin) name in
README.md and docs/ imports, down to its last attribute."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"(?<![\w/.-])((?:zoo|zoo_[a-z0-9_]+)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?![\w*])")
BUILT_IN = ("zoo", "zoo_yt8m_data", "zoo_yt8m_metrics", "zoo_yt8m_segments", "zoo_nextvlad", "zoo_baselines")


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_docs_name_only_modules_and_objects_that_exist():
    missing = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in NAME.finditer(path.read_text(encoding="utf-8")):
            name = match.group(1)
            if name.split(".")[0] in BUILT_IN and not _resolves(name):
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert not missing, "names that do not exist:\n" + "\n".join(sorted(set(missing)))
