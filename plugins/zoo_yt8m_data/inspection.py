"""``zoo data inspect``: what is in a set of files, and whether every record in them is sound.

Reads every record (frames are decoded but not dequantized) and reports per file: records, damaged records
(checksum, truncation, wrong feature size, label outside [0, num_classes)), frame lengths, the record layout
found (yt8m, mediapipe or custom: which keys held the id, the labels and each feature, and whether frames
are quantized uint8 or float32); and overall: a frame-length histogram and label statistics (labels per
video, distinct classes, the long tail).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from zoo.config import DatasetSpec
from zoo.errors import UsageError

# Histogram bins of frames per video: [low, high] inclusive; YouTube-8M videos have 120-300 seconds.
BINS = [
    (0, 0),
    (1, 9),
    (10, 29),
    (30, 59),
    (60, 119),
    (120, 179),
    (180, 239),
    (240, 299),
    (300, 300),
    (301, 2**62),
]


def _bin_label(low: int, high: int) -> str:
    if low == high:
        return str(low)
    return f">{low - 1}" if high >= 2**62 else f"{low}-{high}"


def _reader(name: str, paths: list[str], features: dict[str, int], options: dict[str, Any]) -> Any:
    import dataclasses

    from zoo_yt8m_data import readers

    classes = {r.name: r for r in readers.READERS}
    if name not in classes:
        raise UsageError(f"--reader {name!r}: expected one of {', '.join(classes)}")
    cls = classes[name]
    # Count labels outside the range ourselves instead of having the reader reject them.
    spec = DatasetSpec(num_classes=2**62, features=dict(features), max_frames=2**31 - 1)
    fields = {"paths": list(paths), "skip_corrupt": True}
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"--reader {name}: no record layout options ({', '.join(unknown)}) for this reader")
    return cls(cls.Config(**fields, **options), spec)


def _layouts(seen: Any) -> list[dict[str, Any]]:
    """The reader's ``layouts_seen`` counts as JSON: most common first."""
    out = []
    for (layout, id_key, label_key, features), records in seen.most_common():
        out.append(
            {
                "layout": layout,
                "records": records,
                "id_key": id_key,
                "label_key": label_key,
                "features": {name: {"key": key, "dtype": dtype or "empty"} for name, key, dtype in features},
            }
        )
    return out


def _layout_line(entry: dict[str, Any]) -> str:
    features = ", ".join(f"{name} {f['key']!r} {f['dtype']}" for name, f in entry["features"].items())
    if entry["layout"] == "packed":
        return f"packed ({features})"
    labels = repr(entry["label_key"]) if entry["label_key"] else "none"
    return f"{entry['layout']} (id {entry['id_key']!r}, labels {labels}, {features})"


def inspect_sources(
    inputs: list[str],
    *,
    reader: str = "yt8m-frame",
    features: dict[str, int] | None = None,
    num_classes: int = 3862,
    max_frames: int = 300,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-ready report (see the module docstring); ``damaged_files`` > 0 means something is wrong.

    ``options``: record layout options of the reader (layout, feature_keys, id_key, label_key, dtype).
    """
    from collections import Counter

    from zoo_yt8m_data import packed

    r = _reader(reader, inputs, dict(features or {"rgb": 1024, "audio": 128}), dict(options or {}))
    layouts_all: Counter[str] = Counter()
    files = []
    lengths_all: list[int] = []
    label_counts: Counter[int] = Counter()
    labels_per_video: list[int] = []
    out_of_range = 0
    first_file: dict[str, str] = {}
    duplicates = 0
    duplicate_examples: list[str] = []
    for source in r.sources():
        before = len(r.skipped)
        lengths = []
        records = 0
        file_out_of_range = 0
        r.layouts_seen = Counter()
        for record in r.read_part(source, 0, 1):
            records += 1
            vid = str(record["id"])
            if vid in first_file:
                duplicates += 1
                if len(duplicate_examples) < 10:
                    duplicate_examples.append(f"{vid!r} in {first_file[vid]} and {source}")
            else:
                first_file[vid] = source
            lengths.append(int(record["num_frames"]))
            labels = record["labels"]
            labels_per_video.append(len(labels))
            for label in labels:
                if 0 <= label < num_classes:
                    label_counts[label] += 1
                else:
                    file_out_of_range += 1
        skipped = r.skipped[before:]
        entry: dict[str, Any] = {
            "path": source,
            "records": records,
            "damaged": len(skipped),
            "problems": [f"record {s.index}: {s.problem}" for s in skipped[:10]],
        }
        layouts = _layouts(r.layouts_seen)
        if packed.is_shard(source):
            meta = packed.read_json(f"{source}/{packed.META}", "packed shard")
            dtypes = meta.get("dtypes", {})
            layouts = [
                {
                    "layout": "packed",
                    "records": records,
                    "features": {
                        name: {
                            "key": f"{name}.{packed.SUFFIX.get(dtypes.get(name, 'uint8'), '?')}",
                            "dtype": dtypes.get(name, "uint8"),
                        }
                        for name in r.features
                    },
                }
            ]
        if layouts:
            entry["layouts"] = layouts
            for layout in layouts:
                layouts_all[_layout_line(layout)] += layout["records"]
        if packed.is_shard(source):
            problems = packed.verify_shard(source)
            entry["checksums"] = "ok" if not problems else "mismatch"
            entry["problems"].extend(problems)
            entry["damaged"] += len(problems)
        elif reader == "paddlevideo-pkl":
            entry["checksums"] = "none in format"
        else:
            entry["checksums"] = "mismatch" if any("checksum" in s.problem for s in skipped) else "ok"
        if file_out_of_range:
            entry["labels_out_of_range"] = file_out_of_range
            entry["damaged"] += file_out_of_range
            entry["problems"].append(f"{file_out_of_range} label(s) outside [0, {num_classes})")
        if lengths:
            entry["frames"] = {
                "min": min(lengths),
                "max": max(lengths),
                "mean": round(float(np.mean(lengths)), 2),
            }
        files.append(entry)
        lengths_all.extend(lengths)
        out_of_range += file_out_of_range
    total_labels = sum(label_counts.values())
    ranked = [count for _, count in label_counts.most_common()]
    head = max(1, len(ranked) // 10)
    result: dict[str, Any] = {
        "reader": reader,
        "files": files,
        "records": len(lengths_all),
        "damaged_files": sum(1 for f in files if f["damaged"]),
        "damaged_records": sum(f["damaged"] for f in files),
        "duplicate_ids": {"count": duplicates, "examples": duplicate_examples},
        "layouts": [{"layout": line, "records": n} for line, n in layouts_all.most_common()],
        "frames": {
            "total": int(sum(lengths_all)),
            "mean": round(float(np.mean(lengths_all)), 2) if lengths_all else 0.0,
            "over_max_frames": sum(1 for n in lengths_all if n > max_frames),
            "max_frames": max_frames,
            "histogram": {
                _bin_label(lo, hi): sum(1 for n in lengths_all if lo <= n <= hi) for lo, hi in BINS
            },
        },
        "labels": {
            "num_classes": num_classes,
            "per_video_mean": round(float(np.mean(labels_per_video)), 3) if labels_per_video else 0.0,
            "per_video_max": max(labels_per_video, default=0),
            "videos_without_labels": sum(1 for k in labels_per_video if k == 0),
            "distinct_classes": len(label_counts),
            "classes_never_seen": num_classes - len(label_counts),
            "out_of_range": out_of_range,
            "top_classes": [[c, n] for c, n in label_counts.most_common(10)],
            "head_share": round(sum(ranked[:head]) / total_labels, 3) if total_labels else 0.0,
            "classes_with_one_video": sum(1 for n in ranked if n == 1),
        },
    }
    return result


def format_report(result: dict[str, Any]) -> str:
    """The human-readable form of :func:`inspect_sources`."""
    from tabulate import tabulate

    rows = []
    for f in result["files"]:
        frames = f.get("frames", {})
        rows.append(
            [
                f["path"],
                f["records"],
                f"{frames.get('min', '-')}/{frames.get('mean', '-')}/{frames.get('max', '-')}",
                f["checksums"],
                f["damaged"] or "",
            ]
        )
    lines = [
        tabulate(
            rows, headers=["file", "videos", "frames min/mean/max", "checksums", "damaged"], tablefmt="simple"
        )
    ]
    for f in result["files"]:
        for problem in f["problems"]:
            lines.append(f"  {f['path']}: {problem}")
    fr = result["frames"]
    lines.append(
        f"\n{result['records']} videos, {fr['total']} frames (mean {fr['mean']}); "
        f"{fr['over_max_frames']} longer than {fr['max_frames']} (truncated when read)"
    )
    lines.append("frames per video: " + ", ".join(f"{k}: {v}" for k, v in fr["histogram"].items() if v))
    for layout in result.get("layouts", []):
        lines.append(f"layout: {layout['layout']}: {layout['records']} videos")
    lb = result["labels"]
    lines.append(
        f"labels: {lb['per_video_mean']} per video (max {lb['per_video_max']}, {lb['videos_without_labels']} videos "
        f"without), {lb['distinct_classes']} of {lb['num_classes']} classes seen, {lb['classes_with_one_video']} "
        f"seen once; the top 10% of classes hold {100 * lb['head_share']:.0f}% of the labels"
    )
    if lb["top_classes"]:
        lines.append("most frequent: " + ", ".join(f"{c} ({n})" for c, n in lb["top_classes"]))
    if lb["out_of_range"]:
        lines.append(f"{lb['out_of_range']} label(s) outside [0, {lb['num_classes']}): check --num-classes")
    lines.append(f"damaged: {result['damaged_records']} record(s) in {result['damaged_files']} file(s)")
    dup = result.get("duplicate_ids", {})
    if dup.get("count"):
        lines.append(f"duplicate video ids: {dup['count']} (each would be counted twice by eval and score)")
        lines.extend(f"  {e}" for e in dup["examples"])
    return "\n".join(lines)
