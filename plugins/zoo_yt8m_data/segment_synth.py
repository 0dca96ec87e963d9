"""Segment-rated sample data in the 2019 layout (``3/frame/validate``, ``3/frame/test``).

The videos come from the same hidden :class:`~zoo_yt8m_data.synth.World` as the video-level sample data (same
seed and classes), so a model trained on the video-level sample transfers. What changes is where the evidence
sits: a class is *shown* (rgb prototypes) only in some 5-frame segments, while an audible class is *heard*
through the whole video (a soundtrack). Ratings are about the shown segments, so a video-level model, which
learned to trust the soundtrack, ranks the unshown segments of a labelled video too high; fine-tuning on the
rated segments (rated-absent segments of labelled videos are hard negatives) teaches it to look at the frames.

Layout written by :func:`generate_segments` (what ``zoo data synth --segments`` makes):

- ``validate/validateNNNN.tfrecord``: frame-level records plus the context lists ``segment_start_times``,
  ``segment_end_times``, ``segment_labels`` (int64) and ``segment_scores`` (float, 1 present / 0 absent);
  about 5 rated segments per video, each on a 5-frame boundary, classes from the rated subset only.
- ``test/testNNNN.tfrecord``: the same videos' kind, without ratings (no ``segment_*`` lists).
- ``segment_label_ids.csv``: the rated classes (column ``Index``), like the official file.
- ``vocabulary.csv``, ``manifest.json``.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.progress import Progress
from zoo_yt8m_data.synth import (
    AUDIO,
    RGB,
    SynthSpec,
    World,
    _noise,
    check_fits,
    quantize,
    video_id,
    vocabulary_csv,
)
from zoo_yt8m_data.tfrecord import frame
from zoo_yt8m_data.wire import encode_sequence_example

SEGMENT_FRAMES = 5
SEGMENT_SAMPLE_VERSION = 1
SEGMENT_SPLITS = {"valid": "validate", "test": "test"}
LABEL_IDS_FILE = "segment_label_ids.csv"


@dataclass(frozen=True)
class SegmentSynthSpec:
    """What to generate; ``classes`` and ``seed`` must match the video-level data for the models to transfer."""

    valid_videos: int = 1200
    test_videos: int = 300
    classes: int = 200
    rated_fraction: float = 0.4
    ratings_per_video: int = 5
    min_frames: int = 20
    max_frames: int = 60
    valid_shards: int = 4
    test_shards: int = 2
    seed: int = 0

    def check(self) -> None:
        from zoo.errors import UsageError

        if self.classes < 2:
            raise UsageError("--classes must be at least 2")
        if not SEGMENT_FRAMES <= self.min_frames <= self.max_frames:
            raise UsageError(
                f"frames: need {SEGMENT_FRAMES} <= --min-frames <= --max-frames for 5-frame segments"
            )
        if not 0 < self.rated_fraction <= 1:
            raise UsageError("the rated class fraction must be in (0, 1]")
        if min(self.valid_videos, self.test_videos) < 0 or self.ratings_per_video < 1:
            raise UsageError("video counts must not be negative and ratings per video must be >= 1")

    def world_spec(self) -> SynthSpec:
        return SynthSpec(classes=self.classes, seed=self.seed)


def rated_classes(world: World, spec: SegmentSynthSpec) -> np.ndarray:
    """The rated class subset (like the 1000 of 3862): frequent classes more likely, sorted."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x5E6]))
    count = max(2, int(round(spec.classes * spec.rated_fraction)))
    p = np.sqrt(world.freq)
    p /= p.sum()
    return np.sort(rng.choice(spec.classes, size=min(count, spec.classes), replace=False, p=p))


def draw_segment_video(
    world: World, rng: np.random.Generator, n: int, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Quantized rgb [n, 1024], audio [n, 128] and, per label, the 5-frame segments where it is shown."""
    rgb = _noise(rng, (n, RGB), 0.45)
    audio = _noise(rng, (n, AUDIO), 0.45)
    u = rng.random(4)
    rgb += np.float32(2.0 + 2.0 * u[0]) * world.topics[int(u[1] * len(world.topics))]
    audio += np.float32(1.0 + 1.5 * u[2]) * world.audio_topics[int(u[3] * len(world.audio_topics))]
    segments = n // SEGMENT_FRAMES
    shown_in: dict[int, np.ndarray] = {}
    for c in labels:
        c = int(c)
        share = 0.25 + 0.35 * rng.random()
        shown = rng.random(segments) < share
        if not shown.any():
            shown[int(rng.integers(segments))] = True
        shown_in[c] = np.flatnonzero(shown)
        for s in shown_in[c]:
            idx = s * SEGMENT_FRAMES + np.flatnonzero(rng.random(SEGMENT_FRAMES) < 0.8)
            if idx.size == 0:
                idx = np.array([s * SEGMENT_FRAMES + int(rng.integers(SEGMENT_FRAMES))])
            amp = np.float32(2.5) + np.float32(1.5) * rng.random(idx.size, dtype=np.float32)
            if world.signed[c]:
                amp = np.where(rng.random(idx.size) < 0.5, -amp, amp)
            which = (rng.random(idx.size) < 0.5).astype(np.intp)
            rgb[idx] += (amp * world.visual[c])[:, None] * world.rgb_proto[c, which]
        if world.hearing[c] > 0:  # the soundtrack: heard all through the video, shown or not
            heard = np.flatnonzero(rng.random(n) < 0.5)
            amp_a = np.float32(1.5 * world.hearing[c]) * (
                np.float32(2.5) + np.float32(1.5) * rng.random(heard.size, dtype=np.float32)
            )
            audio[heard] += amp_a[:, None] * world.audio_proto[c]
    return quantize(rgb), quantize(audio), shown_in


def draw_ratings(
    rng: np.random.Generator,
    labels: np.ndarray,
    shown_in: dict[int, np.ndarray],
    segments: int,
    rated: np.ndarray,
    count: int,
) -> tuple[list[int], list[int], list[float]]:
    """About ``count`` rated (segment, class) pairs: shown segments (1), unshown segments of a label (0, hard
    negatives) and segments for a rated class the video is not labelled with (0)."""
    rated_set = set(int(c) for c in rated)
    mine = [int(c) for c in labels if int(c) in rated_set]
    pairs: dict[tuple[int, int], float] = {}
    for _ in range(count * 4):
        if len(pairs) >= count:
            break
        r = rng.random()
        s = int(rng.integers(segments))
        if mine and r < 0.8:
            c = mine[int(rng.integers(len(mine)))]
            if r < 0.45:  # a shown segment
                s = int(shown_in[c][int(rng.integers(len(shown_in[c])))])
            pairs.setdefault((s, c), 1.0 if s in set(shown_in[c].tolist()) else 0.0)
        else:
            c = int(rated[int(rng.integers(len(rated)))])
            if c in shown_in:
                continue
            pairs.setdefault((s, c), 0.0)
    keys = sorted(pairs)
    return [s * SEGMENT_FRAMES for s, _ in keys], [c for _, c in keys], [pairs[k] for k in keys]


def _shard(
    world: World, spec: SegmentSynthSpec, rated: np.ndarray, split: str, shard: int, first: int, count: int
) -> tuple[bytes, int, int]:
    rng = np.random.default_rng(
        np.random.SeedSequence([spec.seed, 0x5E6, 1 + list(SEGMENT_SPLITS).index(split), shard])
    )
    offset = 10_000_000 + (0 if split == "valid" else spec.valid_videos)
    chunks = []
    pairs = positives = 0
    for i in range(count):
        labels = world.draw_labels(rng)
        if split == "valid" and not any(int(c) in set(rated.tolist()) for c in labels):
            # most rated videos show a rated class (the raters were asked about the video's own classes)
            labels = np.unique(np.append(labels, rated[int(rng.integers(len(rated)))]))
        n = int(rng.integers(spec.min_frames, spec.max_frames + 1))
        rgb, audio, shown_in = draw_segment_video(world, rng, n, labels)
        vid = video_id(spec.seed, offset + first + i)
        context: dict[str, Any] = {"id": vid.encode(), "labels": labels}
        if split == "valid":
            starts, classes, scores = draw_ratings(
                rng, labels, shown_in, n // SEGMENT_FRAMES, rated, spec.ratings_per_video
            )
            context["segment_start_times"] = np.asarray(starts, np.int64)
            context["segment_end_times"] = np.asarray(starts, np.int64) + SEGMENT_FRAMES
            context["segment_labels"] = np.asarray(classes, np.int64)
            context["segment_scores"] = np.asarray(scores, np.float32)
            pairs += len(classes)
            positives += int(sum(scores))
        payload = encode_sequence_example(context, {"rgb": rgb, "audio": audio})
        chunks.append(frame(payload))
    return b"".join(chunks), pairs, positives


def label_ids_csv(world: World, rated: np.ndarray) -> str:
    """``segment_label_ids.csv``: one rated class index per line under the header ``Index``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Index"])
    for c in rated:
        writer.writerow([int(c)])
    return buf.getvalue()


def generate_segments(
    output: str | os.PathLike, spec: SegmentSynthSpec = SegmentSynthSpec(), *, progress: bool = False
) -> dict[str, Any]:
    """Write the segment-rated dataset into ``output`` (see the module docstring); returns the manifest."""
    from zoo.atomic import atomic_write_bytes, atomic_write_text

    spec.check()
    check_fits(
        output,
        spec.classes,
        [(spec.valid_videos, spec.valid_shards), (spec.test_videos, spec.test_shards)],
        spec.min_frames,
        spec.max_frames,
    )
    out = Path(output)
    world = World(spec.world_spec())
    rated = rated_classes(world, spec)
    manifest: dict[str, Any] = {
        "format": "yt8m-zoo-synth-segments",
        "version": SEGMENT_SAMPLE_VERSION,
        "spec": asdict(spec),
        "num_classes": spec.classes,
        "rated_classes": [int(c) for c in rated],
        "files": {},
        "splits": {},
    }
    for split, prefix in SEGMENT_SPLITS.items():
        total = getattr(spec, f"{split}_videos")
        shards = max(1, min(getattr(spec, f"{split}_shards"), max(1, total)))
        bounds = np.linspace(0, total, shards + 1).astype(int)
        paths = []
        bar = Progress(f"synth segments {prefix}", shards, unit="shard", enabled=progress)
        for s in range(shards if total else 0):
            data, pairs, positives = _shard(
                world, spec, rated, split, s, int(bounds[s]), int(bounds[s + 1] - bounds[s])
            )
            rel = f"{prefix}/{prefix}{s:04d}.tfrecord"
            atomic_write_bytes(out / rel, data)
            manifest["files"][rel] = {
                "bytes": len(data),
                "md5": hashlib.md5(data).hexdigest(),
                "videos": int(bounds[s + 1] - bounds[s]),
                "rated_pairs": pairs,
                "rated_positives": positives,
            }
            paths.append(rel)
            bar.update(1)
        bar.close()
        manifest["splits"][split] = paths
    atomic_write_text(out / LABEL_IDS_FILE, label_ids_csv(world, rated))
    atomic_write_text(out / "vocabulary.csv", vocabulary_csv(world, np.zeros(spec.classes, np.int64)))
    manifest["label_ids"] = LABEL_IDS_FILE
    manifest["vocabulary"] = "vocabulary.csv"
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def _complete(root: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("version") != SEGMENT_SAMPLE_VERSION or manifest.get("spec") != asdict(
        SegmentSynthSpec()
    ):
        return None
    for rel, info in manifest.get("files", {}).items():
        path = root / rel
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            return None
    return manifest if (root / LABEL_IDS_FILE).is_file() else None


def ensure_sample_segments(root: str | os.PathLike) -> dict[str, Any]:
    """The built-in segment sample under ``root`` (made once, under a lock, atomically): paths and facts."""
    from zoo.atomic import atomic_dir

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "yt8m-sample-segments"
    with open(root / ".segments.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = _complete(data)
        if manifest is None:
            print(f"generating the built-in segment sample in {data} (once) ...", file=sys.stderr)
            with atomic_dir(data) as tmp:
                manifest = generate_segments(tmp, SegmentSynthSpec())
    return {
        "valid": [str(data / p) for p in manifest["splits"]["valid"]],
        "test": [str(data / p) for p in manifest["splits"]["test"]],
        "num_classes": int(manifest["num_classes"]),
        "label_ids": str(data / manifest["label_ids"]),
        "vocabulary": str(data / manifest["vocabulary"]),
        "root": str(data),
    }


def read_label_ids(path: str | os.PathLike, num_classes: int | None = None) -> np.ndarray:
    """The class indices of a ``segment_label_ids.csv`` (header ``Index``, one class per line), sorted."""
    from zoo.errors import DataError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the rated classes: {exc.strerror or exc}") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0][:1]] != ["Index"]:
        raise DataError(f"{path}: line 1: expected the header 'Index' (one rated class index per line)")
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        try:
            c = int(row[0])
        except ValueError:
            raise DataError(f"{path}: line {line_no}: {row[0]!r} is not a class index") from None
        if c < 0 or (num_classes is not None and c >= num_classes):
            raise DataError(f"{path}: line {line_no}: class {c} is outside 0 .. {(num_classes or 1) - 1}")
        out.append(c)
    if not out:
        raise DataError(f"{path}: no class listed")
    return np.unique(np.asarray(out, np.int64))
