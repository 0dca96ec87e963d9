"""The videos ``zoo extract`` is given: files, folders (searched recursively), globs, and Google's input CSV
(``<video_file>,<labels joined by ;>``, labels optional). The id of a video is its file name, written as
UTF-8 (Google wrote the whole path as code points, which mangles non-ASCII names)."""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import UsageError

VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .mpe .ts .mts .m2ts .flv .wmv .3gp .ogv .gif".split()
)


@dataclass
class Video:
    path: Path
    id: str
    labels: list[int] = field(default_factory=list)
    problem: str | None = None  # a bad CSV row: the video fails with this reason, the others go on

    @property
    def key(self) -> str:
        """What a resumed run recognises a finished video by."""
        return f"{os.path.abspath(self.path)}\0{self.id}"


def _labels(text: str, where: str, num_classes: int | None) -> tuple[list[int], str | None]:
    labels = []
    for part in text.replace(" ", "").split(";"):
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            return [], f"{where}: label {part!r} is not an integer (labels are class indices joined by ';')"
        if value < 0 or (num_classes is not None and value >= num_classes):
            top = f"{num_classes - 1}" if num_classes is not None else "..."
            return [], f"{where}: label {value} is outside 0 .. {top}"
        labels.append(value)
    return sorted(set(labels)), None


def read_csv(path: Path, num_classes: int | None) -> list[Video]:
    videos = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read the video list ({exc})") from None
    for line, row in enumerate(rows, 1):
        if not row or not row[0].strip() or row[0].startswith("#"):
            continue
        name = row[0].strip()
        if line == 1 and name.lower() in ("video", "video_file", "path", "file"):
            continue  # a header
        video_path = Path(name)
        missing = None
        if not video_path.exists():
            missing = f"no such file ({path} line {line})"
            if not video_path.is_absolute():
                beside = path.parent / video_path
                if beside.exists():
                    video_path, missing = beside, None
                else:
                    missing = f"no such file, from the current folder or beside {path} (line {line})"
        labels, problem = _labels(row[1] if len(row) > 1 else "", f"{path} line {line}", num_classes)
        problem = problem or missing
        videos.append(Video(video_path, video_path.name, labels, problem))
    return videos


def expand(inputs: list[str], *, num_classes: int | None = None) -> list[Video]:
    """The videos named by ``inputs`` in order; a folder contributes its video files sorted by path."""
    videos: list[Video] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise UsageError(
                    f"{path}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in this folder"
                )
            videos.extend(Video(p, p.name) for p in found)
        elif path.suffix.lower() == ".csv" and path.is_file():
            videos.extend(read_csv(path, num_classes))
        elif path.exists() or not glob.has_magic(item):
            videos.append(Video(path, path.name))  # a missing file fails as that video, the others go on
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise UsageError(f"{item}: the pattern matches no file")
            videos.extend(Video(Path(m), Path(m).name) for m in matches if Path(m).is_file())
    return videos
