"""A deterministic generator of YouTube-8M-format frame-level data: the built-in sample dataset.

The files are real frame-level TFRecords (SequenceExample, quantized uint8 rgb [n, 1024] and audio [n, 128],
one bytes feature per frame), so everything downstream runs exactly as on the real data. The labels are
learnable from the frames, but not trivially:

- classes have long-tailed (Zipf) frequencies and belong to "verticals"; a video has about 3 labels,
  mostly from one vertical, like YouTube-8M's label co-occurrence;
- each class has a few prototype directions; a video shows its classes' evidence in a random subset of its
  frames only (10-35%), on top of a strong video-level background topic and per-frame noise;
- for a third of the classes the evidence comes with a random sign per frame, so it cancels in the mean of
  the frames: mean pooling cannot see those classes, a frame-aggregation model (NetVLAD-like) can;
- some classes are mostly audible (weak visual evidence, strong audio evidence), and distractor frames
  briefly show a class the video is not labelled with.

Everything derives from one seed: the same arguments give byte-identical files.
"""

from __future__ import annotations

import bisect
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
from zoo_yt8m_data.tfrecord import frame
from zoo_yt8m_data.wire import encode_sequence_example

SAMPLE_VERSION = 2
RGB, AUDIO = 1024, 128
_SCALE = 4.0 / 255.0
_BIAS = 4.0 / 512.0 - 2.0
VERTICALS = [
    "Games",
    "Arts & Entertainment",
    "Autos & Vehicles",
    "Sports",
    "Food & Drink",
    "Music",
    "Science",
    "Pets & Animals",
    "Beauty & Fitness",
    "Travel",
]
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
SPLITS = ("train", "valid", "test")
FILE_PREFIX = {"train": "train", "valid": "validate", "test": "test"}


@dataclass(frozen=True)
class SynthSpec:
    """What to generate (the defaults make the built-in sample dataset)."""

    train_videos: int = 4000
    valid_videos: int = 1000
    test_videos: int = 1000
    classes: int = 200
    min_frames: int = 10
    max_frames: int = 60
    train_shards: int = 8
    valid_shards: int = 4
    test_shards: int = 4
    seed: int = 0

    def videos(self, split: str) -> int:
        return getattr(self, f"{split}_videos")

    def shards(self, split: str) -> int:
        return max(1, min(getattr(self, f"{split}_shards"), max(1, self.videos(split))))

    def check(self) -> None:
        from zoo.errors import UsageError

        if self.classes < 2:
            raise UsageError("--classes must be at least 2")
        if not 1 <= self.min_frames <= self.max_frames:
            raise UsageError("frames: need 1 <= --min-frames <= --max-frames")
        if min(self.train_videos, self.valid_videos, self.test_videos) < 0:
            raise UsageError("video counts must not be negative")


FRAME_BYTES = RGB + AUDIO + 12
"""A framed, encoded frame: its two quantized vectors and their protobuf framing."""
VIDEO_BYTES = 120
"""A video's id, labels, context and TFRecord framing."""


def check_fits(
    output: str | os.PathLike,
    classes: int,
    splits: list[tuple[int, int]],
    min_frames: int,
    max_frames: int,
) -> tuple[int, int]:
    """Estimate the disk and memory a synth run needs (``splits``: (videos, shards) each) and refuse, before
    anything is written, one that cannot fit the free space of ``output``'s file system or the available
    memory. Returns ``(disk bytes, memory bytes)``."""
    import shutil

    from zoo.atomic import check_output_dir
    from zoo.errors import UsageError

    check_output_dir(output)
    mean_video = (min_frames + max_frames) / 2 * FRAME_BYTES + VIDEO_BYTES
    disk = sum(videos * mean_video for videos, _ in splits) + classes * 200
    largest_shard = max(
        (videos / max(1, min(shards, videos or 1)) * mean_video for videos, shards in splits), default=0
    )
    world = classes * (2 * RGB + AUDIO + 64) * 4 * 2  # prototypes and their temporaries
    memory = world + 2 * largest_shard + max_frames * (RGB + AUDIO) * 4 * 6
    probe = Path(output).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    available = _available_memory()
    problems = []
    if disk > free:
        problems.append(f"about {disk / 1e9:.3g} GB on disk ({free / 1e9:.3g} GB free at {probe})")
    if available is not None and memory > available:
        problems.append(f"about {memory / 1e9:.3g} GB of memory ({available / 1e9:.3g} GB available)")
    if problems:
        raise UsageError(
            f"zoo data synth: these sizes need {' and '.join(problems)}; nothing was written. Lower the "
            f"video counts, --max-frames or --classes (or use more --*-shards)"
        )
    return int(disk), int(memory)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class World:
    """The hidden structure shared by all splits: class frequencies, verticals, prototypes, topics."""

    def __init__(self, spec: SynthSpec) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x5EED]))
        c = spec.classes
        self.classes = c
        # Long tail: Zipf-like frequencies (rank 1 is ~20x more frequent than rank 20, ~200x rank 200).
        self.freq = 1.0 / np.arange(1, c + 1) ** 1.0
        self.freq /= self.freq.sum()
        self.vertical = rng.integers(0, len(VERTICALS), c)
        self.vertical[: len(VERTICALS)] = np.arange(min(c, len(VERTICALS)))  # every vertical has a head class
        # Prototypes: 2 per class; energy concentrated in the leading (high-variance PCA) dimensions.
        decay = np.exp(-np.arange(RGB) / 96.0).astype(np.float32)
        protos = rng.standard_normal((c, 2, RGB)).astype(np.float32) * decay
        self.rgb_proto = protos / np.linalg.norm(protos, axis=-1, keepdims=True)
        audio = rng.standard_normal((c, AUDIO)).astype(np.float32)
        self.audio_proto = audio / np.linalg.norm(audio, axis=-1, keepdims=True)
        # A third of the classes show signed evidence (cancels in a mean over frames).
        self.signed = rng.random(c) < 0.25
        # Visual strength; ~15% of classes are mostly audible.
        self.audible = rng.random(c) < 0.15
        self.visual = np.where(self.audible, 0.35, 1.0).astype(np.float32)
        self.hearing = np.where(self.audible, 1.0, np.where(rng.random(c) < 0.4, 0.5, 0.0)).astype(np.float32)
        # Background topics: large video-level offsets unrelated to labels (weakly tied to verticals).
        topics = rng.standard_normal((32, RGB)).astype(np.float32) * decay
        self.topics = topics / np.linalg.norm(topics, axis=-1, keepdims=True)
        audio_topics = rng.standard_normal((16, AUDIO)).astype(np.float32)
        self.audio_topics = audio_topics / np.linalg.norm(audio_topics, axis=-1, keepdims=True)
        self.by_vertical = [np.flatnonzero(self.vertical == v) for v in range(len(VERTICALS))]
        # cumulative frequencies for sampling by bisection (rng.choice with p= is slow per call)
        self.cum = np.cumsum(self.freq).tolist()
        self.cum_vertical = [np.cumsum(self.freq[m] / self.freq[m].sum()).tolist() for m in self.by_vertical]

    def draw_labels(self, rng: np.random.Generator) -> np.ndarray:
        k = int(min(1 + rng.poisson(2.0), 8, self.classes))
        first = min(bisect.bisect(self.cum, rng.random()), self.classes - 1)
        labels = [first]
        vertical = int(self.vertical[first])
        same = self.by_vertical[vertical]
        tries = 0
        while len(labels) < k and tries < 50:
            tries += 1
            if rng.random() < 0.7 and len(same) > 1:
                c = int(same[min(bisect.bisect(self.cum_vertical[vertical], rng.random()), len(same) - 1)])
            else:
                c = min(bisect.bisect(self.cum, rng.random()), self.classes - 1)
            if c not in labels:
                labels.append(c)
        return np.array(sorted(labels), np.int64)

    def draw_video(
        self, rng: np.random.Generator, n: int, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Quantized rgb [n, 1024] and audio [n, 128] of one video (few, large random draws: fast)."""
        rgb = _noise(rng, (n, RGB), 0.45)
        audio = _noise(rng, (n, AUDIO), 0.45)
        u = rng.random(6)
        drift = np.float32(1.0) + np.float32(0.5) * (rng.random((n, 1), dtype=np.float32) - np.float32(0.5))
        rgb += np.float32(2.0 + 2.0 * u[0]) * drift * self.topics[int(u[1] * len(self.topics))]
        audio += np.float32(1.0 + 1.5 * u[2]) * self.audio_topics[int(u[3] * len(self.audio_topics))]
        for c in labels:
            r = rng.random((5, n), dtype=np.float32)
            v = rng.random(2)
            share = 0.15 + 0.25 * v[0]  # the class shows in 15-40% of the frames
            shown = r[1] < share
            if not shown.any():
                shown[int(r[1].argmin())] = True
            idx = np.flatnonzero(shown)
            amp = np.float32(2.5) + np.float32(1.5) * r[2, idx]
            if self.signed[c]:
                amp = np.where(r[3, idx] < 0.5, -amp, amp)
            which = (r[4, idx] < 0.5).astype(np.intp)
            rgb[idx] += (amp * self.visual[c])[:, None] * self.rgb_proto[c, which]
            if self.hearing[c] > 0:
                # heard in the same frames half of the time, else in another random subset
                heard = idx if v[1] < 0.5 else np.flatnonzero(r[0] < share)
                if len(heard):
                    amp_a = np.float32(1.2 * self.hearing[c]) * (
                        np.float32(2.5) + np.float32(1.5) * r[2, heard]
                    )
                    if self.signed[c]:
                        amp_a = np.where(r[3, heard] < 0.5, -amp_a, amp_a)
                    audio[heard] += amp_a[:, None] * self.audio_proto[c]
        if u[4] < 0.5:  # a distractor: a class the video is not labelled with, briefly
            d = min(bisect.bisect(self.cum, u[5]), self.classes - 1)
            if d not in labels:
                t = int(u[5] * 7919) % n
                rgb[t] += np.float32(1.0 + u[4] * 2.0) * self.rgb_proto[d, t % 2]
        return quantize(rgb), quantize(audio)


def _noise(rng: np.random.Generator, shape: tuple[int, int], std: float) -> np.ndarray:
    """Zero-mean noise with standard deviation ``std``: the sum of two uniform bytes (a triangular
    distribution), several times cheaper to draw than Gaussian noise and just as good for this purpose."""
    size = shape[0] * shape[1]
    raw = np.frombuffer(rng.bytes(2 * size), np.uint8)
    x = raw[:size].astype(np.float32)
    x += raw[size:]
    x -= np.float32(255.0)
    x *= np.float32(std / 104.51)  # std of the sum of two uniform bytes: sqrt(2 * (256**2 - 1) / 12)
    return x.reshape(shape)


def quantize(x: np.ndarray) -> np.ndarray:
    """float -> uint8 with the YouTube-8M quantization (the inverse of the starter code's dequantization)."""
    q = (x - np.float32(_BIAS)) * np.float32(1.0 / _SCALE)
    np.rint(q, out=q)
    np.clip(q, 0, 255, out=q)
    return q.astype(np.uint8)


def video_id(seed: int, index: int) -> str:
    """A unique 4-character YouTube-8M-style id for the ``index``-th video (a bijection of 64**4 values)."""
    v = (index * 0x9E3779 + seed * 0x2545F5) % (1 << 24)
    v = (v * 0xB5297) % (1 << 24)  # odd multiplier: still a bijection
    return "".join(_ID_ALPHABET[(v >> s) & 63] for s in (18, 12, 6, 0))


def _shard_records(
    world: World, spec: SynthSpec, split: str, shard: int, first: int, count: int
) -> tuple[bytes, list]:
    split_no = SPLITS.index(split)
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 1 + split_no, shard]))
    chunks = []
    label_sets = []
    offset = {"train": 0, "valid": spec.train_videos, "test": spec.train_videos + spec.valid_videos}[split]
    for i in range(count):
        labels = world.draw_labels(rng)
        n = int(rng.integers(spec.min_frames, spec.max_frames + 1))
        rgb, audio = world.draw_video(rng, n, labels)
        vid = video_id(spec.seed, offset + first + i)
        payload = encode_sequence_example(
            {"id": vid.encode(), "labels": labels}, {"rgb": rgb, "audio": audio}
        )
        chunks.append(frame(payload))
        label_sets.append(labels.tolist())
    return b"".join(chunks), label_sets


def generate(
    output: str | os.PathLike, spec: SynthSpec = SynthSpec(), *, progress: bool = False
) -> dict[str, Any]:
    """Write the dataset into ``output`` (train/, validate/, test/, vocabulary.csv, manifest.json)."""
    from zoo.atomic import atomic_write_bytes, atomic_write_text

    spec.check()
    check_fits(
        output,
        spec.classes,
        [(spec.videos(split), spec.shards(split)) for split in SPLITS],
        spec.min_frames,
        spec.max_frames,
    )
    out = Path(output)
    world = World(spec)
    manifest: dict[str, Any] = {
        "format": "yt8m-zoo-synth",
        "version": SAMPLE_VERSION,
        "spec": asdict(spec),
        "num_classes": spec.classes,
        "files": {},
        "splits": {},
    }
    train_counts = np.zeros(spec.classes, np.int64)
    for split in SPLITS:
        total = spec.videos(split)
        if total == 0:
            manifest["splits"][split] = []
            continue
        shards = spec.shards(split)
        bounds = np.linspace(0, total, shards + 1).astype(int)
        paths = []
        bar = Progress(f"synth {split}", shards, unit="shard", enabled=progress)
        for s in range(shards):
            data, label_sets = _shard_records(
                world, spec, split, s, int(bounds[s]), int(bounds[s + 1] - bounds[s])
            )
            rel = f"{FILE_PREFIX[split]}/{FILE_PREFIX[split]}{s:04d}.tfrecord"
            atomic_write_bytes(out / rel, data)
            manifest["files"][rel] = {
                "bytes": len(data),
                "md5": hashlib.md5(data).hexdigest(),
                "videos": len(label_sets),
            }
            paths.append(rel)
            if split == "train":
                for labels in label_sets:
                    train_counts[labels] += 1
            bar.update(1)
        bar.close()
        manifest["splits"][split] = paths
    atomic_write_text(out / "vocabulary.csv", vocabulary_csv(world, train_counts))
    manifest["vocabulary"] = "vocabulary.csv"
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def vocabulary_csv(world: World, train_counts: np.ndarray) -> str:
    """The class names in the official ``vocabulary.csv`` columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "Index",
            "TrainVideoCount",
            "KnowledgeGraphId",
            "Name",
            "WikiUrl",
            "Vertical1",
            "Vertical2",
            "Vertical3",
            "WikiDescription",
        ]
    )
    seen: dict[int, int] = {}
    for c in range(world.classes):
        v = int(world.vertical[c])
        seen[v] = seen.get(v, 0) + 1
        kind = "signed" if world.signed[c] else "plain"
        kind += ", mostly audible" if world.audible[c] else ""
        writer.writerow(
            [
                c,
                int(train_counts[c]),
                f"/m/zoo{c:05d}",
                f"{VERTICALS[v]} #{seen[v]}",
                "",
                VERTICALS[v],
                "",
                "",
                f"Synthetic class {c} ({kind} evidence)",
            ]
        )
    return buf.getvalue()


def _complete(root: Path) -> dict[str, Any] | None:
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("version") != SAMPLE_VERSION or manifest.get("spec") != asdict(SynthSpec()):
        return None
    for rel, info in manifest.get("files", {}).items():
        path = root / rel
        if not path.is_file() or path.stat().st_size != info["bytes"]:
            return None
    if not (root / "vocabulary.csv").is_file():
        return None
    return manifest


def ensure_sample_data(root: str | os.PathLike) -> dict[str, Any]:
    """The built-in sample dataset under ``root``: generated once (under a lock, atomically), then reused."""
    from zoo.atomic import atomic_dir

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "yt8m-sample"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent ranks: one generates, the others wait and reuse
        manifest = _complete(data)
        if manifest is None:
            print(f"generating the built-in sample dataset in {data} (once) ...", file=sys.stderr)
            with atomic_dir(data) as tmp:
                manifest = generate(tmp, SynthSpec())
    return {
        "train": [str(data / p) for p in manifest["splits"]["train"]],
        "valid": [str(data / p) for p in manifest["splits"]["valid"]],
        "test": [str(data / p) for p in manifest["splits"]["test"]],
        "num_classes": int(manifest["num_classes"]),
        "vocabulary": str(data / manifest["vocabulary"]),
    }
